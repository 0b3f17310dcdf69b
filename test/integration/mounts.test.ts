// A filesystem that goes away under managed files: the daemon, in a mount namespace of its own with a tmpfs under its
// managed paths, refuses to write to the directory underneath once the tmpfs is unmounted, repairs into a fresh one at once
// when it is mounted back, and watches the new one rather than the directory it covers; a FUSE mount, whose files are read
// through the thread pool, is held to the same.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Engine } from '../../agent/engine/engine.js';
import { MOUNT_CHANGED } from '../../agent/host/fswatch.js';
import { makedev, MountHome, MountTable } from '../../agent/host/mounts.js';
import { registry } from '../../agent/resources/registry.js';
import type { Change, Resource, ResourceKind } from '../../agent/resources/resource.js';
import type { AuditEntry } from '../../agent/store/types.js';
import { ManualClock } from '../../lib/clock.js';
import { HsError } from '../../lib/errors.js';
import { silentLogger } from '../../lib/log.js';
import { auditOf, startAgentDaemon, tempDir, waitFor, writeBaseline, type AuditLine, type DaemonProcess } from '../helpers/agent.js';
import { testDecl, testHost } from '../helpers/resource-runner.js';

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 20_000 }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }));
  });
}

describe('mounts: the mount table (agent/host/mounts.ts)', () => {
  const text = [
    '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
    '30 22 0:45 / /srv/app rw shared:9 - tmpfs tmpfs rw,size=1024k',
    '31 22 0:46 / /srv/with\\040space rw - tmpfs my\\040src rw',
    '32 30 0:47 / /srv/app rw - tmpfs second rw',
    '33 22 259:65537 / /data rw - xfs /dev/nvme0n1p1 rw',
    'garbage line',
    '',
  ].join('\n');

  it('parses mountpoints (with their escapes) and devices as st_dev packs them; a stacked mount hides the one below', () => {
    const t = new MountTable(text);
    assert.equal(t.size, 4);
    assert.ok(t.has('/srv/with space'));
    assert.equal(t.covering('/srv/with space/x')?.source, 'my src');
    assert.deepEqual([t.covering('/srv/app/conf/x')?.id, t.covering('/srv/app/conf/x')?.dev], [32, makedev(0, 47)]);
    assert.equal(t.covering('/srv/other')?.mountpoint, '/');
    assert.equal(t.covering('/srv/app')?.mountpoint, '/srv/app');
    assert.equal(t.covering('/srv/apple')?.mountpoint, '/', 'a prefix of the name is not an ancestor');
    assert.equal(makedev(254, 0), 254n << 8n);
    assert.equal(makedev(259, 65537), (259n << 8n) | (0x10000n << 12n) | 1n, 'a large minor keeps its high bits above the major');
  });

  it("reads this process's own table, whose devices are the ones stat reports", () => {
    const t = MountTable.read();
    for (const p of ['/', '/proc', '/etc', tmpdir()]) assert.equal(t.covering(p)?.dev, statSync(p, { bigint: true }).dev, p);
  });

  it('reads a mountpoint named in UTF-8 as the same path Node gives, also in a real table', async () => {
    const line = Buffer.from('40 22 0:50 / /srv/d\u00e4ta\\040x rw - tmpfs src\u00e9 rw\n', 'utf8').toString('latin1'); // as read() reads it
    const parsed = new MountTable(line).covering('/srv/d\u00e4ta x/conf');
    assert.deepEqual([parsed?.mountpoint, parsed?.source], ['/srv/d\u00e4ta x', 'src\u00e9']);

    const t = tempDir('hs-mounts-utf8-');
    try {
      const dir = path.join(t.dir, 'd\u00e4ta');
      mkdirSync(dir);
      const script = `import { MountTable } from ${JSON.stringify(path.resolve('dist/agent/host/mounts.js'))};
        const m = MountTable.read().covering(process.argv[1] + '/x'); console.log(JSON.stringify([m?.mountpoint, m?.fstype]));`;
      const r = await run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs hs-utf8 "$0" && exec "$@"', dir, process.execPath, '--input-type=module', '-e', script, dir]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), [dir, 'tmpfs']);
    } finally {
      t.cleanup();
    }
  });

  it('keeps one home per folder, shared by the paths in it', () => {
    const t = tempDir('hs-mounts-home-');
    try {
      const a = MountHome.of(t.dir);
      assert.equal(MountHome.of(t.dir), a);
      assert.notEqual(MountHome.of(path.join(t.dir, 'sub')), a);
      a.learn(statSync(t.dir, { bigint: true }).dev);
      assert.equal(MountHome.of(t.dir).mountpoint, MountTable.read().covering(t.dir)?.mountpoint, 'what one path learned holds for the others');
    } finally {
      t.cleanup();
    }
  });

  it('lets a repair through where nothing was learned or the parent is on /', () => {
    const home = new MountHome('/etc');
    home.check('file:/etc/x');
    home.learn(0n);
    assert.equal(home.mountpoint, '/');
    home.check('file:/etc/x');
  });
});

describe('mounts: a mount change ends the wait of a failed repair (engine)', () => {
  // A kind whose repair fails while its filesystem is away, as HS_HOST_MOUNT_GONE does, and whose watch the test drives:
  // the mount table itself is exercised by the daemon tests below; here the engine's clock stands still.
  let mounted = false;
  let notify: (reason: string) => void = () => undefined;
  let repaired = 0;
  class AwayResource implements Resource<{ ok: boolean }> {
    constructor(readonly id: string) {}
    async observe(): Promise<{ ok: boolean }> {
      return { ok: repaired > 0 };
    }
    diff(o: { ok: boolean }): Change[] {
      return o.ok ? [] : [{ field: 'exists', observed: false, desired: true }];
    }
    async apply(): Promise<void> {
      if (!mounted) throw new HsError('HS_HOST_MOUNT_GONE', '/srv/away is no longer mounted', { resource: this.id, retryable: true });
      repaired++;
    }
    summarize(o: { ok: boolean }): Record<string, unknown> {
      return o;
    }
    desired(): Record<string, unknown> {
      return { ok: true };
    }
    async watch(n: (reason: string) => void): Promise<() => void> {
      notify = n;
      return () => undefined;
    }
  }
  const kind: ResourceKind = { type: 'away', create: (decl) => new AwayResource(decl.id) };
  before(() => (registry as Map<string, ResourceKind>).set('away', kind));
  after(() => (registry as Map<string, ResourceKind>).delete('away'));

  it('repairs at once when the mount table changes, and only then: other events wait out the backoff', async () => {
    const clock = new ManualClock(Date.now());
    const records: AuditEntry[] = [];
    const e = new Engine({ host: testHost(), clock, log: silentLogger });
    e.onAudit((r) => records.push(r));
    const failures = (): number => records.filter((r) => r.event === 'repair_failed').length;
    try {
      await e.setResources([{ decl: testDecl('away', '/srv/away/x', {}), baseline: { name: 'b', version: 1 } }]);
      await e.start(3_600_000);
      assert.equal(failures(), 1);
      // Two retries: the next one waits about 4 s of the engine's clock.
      for (const step of [1200, 2400]) {
        clock.advance(step);
        await e.idle();
      }
      assert.equal(failures(), 3);

      mounted = true;
      notify('change');
      await e.idle();
      assert.equal(repaired, 0, 'an ordinary event waits for the retry');
      notify(MOUNT_CHANGED);
      await e.idle();
      assert.equal(repaired, 1, 'the mount change repaired it without the clock moving');
      assert.equal(records.at(-1)?.event, 'repaired');
    } finally {
      await e.stop();
    }
  });
});

describe('mounts: a filesystem that disappears under managed files (daemon)', function () {
  this.timeout(90_000);
  let t: { dir: string; cleanup: () => void };
  let daemon: DaemonProcess | undefined;
  let mnt: string;
  let stateDir: string;

  /** Runs a command in the daemon's mount namespace. */
  const inside = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => run('nsenter', ['-t', String(daemon?.pid ?? 0), '-m', ...args]);
  const readInside = async (p: string): Promise<string | undefined> => {
    const r = await inside(['cat', p]);
    return r.code === 0 ? r.stdout : undefined;
  };
  /** umount, again while the agent still holds a directory on it open (it lets go within about a second). */
  async function unmount(): Promise<void> {
    let last = '';
    for (let i = 0; i < 100; i++) {
      const r = await inside(['umount', mnt]);
      if (r.code === 0) return;
      last = r.stderr;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error(`umount ${mnt}: ${last}`);
  }
  const events = async (id: string): Promise<AuditLine[]> => auditOf(stateDir, id);

  beforeEach(() => {
    t = tempDir('hs-mounts-');
    mnt = path.join(t.dir, 'mnt');
    stateDir = path.join(t.dir, 'state');
    mkdirSync(mnt);
  });

  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    t.cleanup();
  });

  it('refuses to write under a mountpoint that has gone, repairs into a fresh mount at once, and watches the new one', async () => {
    const motd = path.join(mnt, 'motd');
    const conf = path.join(mnt, 'conf/app.conf');
    const baseline = writeBaseline(
      t.dir,
      'mounted',
      `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: mounted
spec:
  policy:
    flap: { maxRepairs: 50, window: 10m }
  resources:
    - file: ${motd}
      content: "on the tmpfs\\n"
    - file: ${conf}
      content: "listen = 80\\n"
`,
    );
    // The daemon gets a mount namespace of its own with a tmpfs on mnt; this process keeps seeing the directory underneath.
    daemon = startAgentDaemon(['--baseline', baseline, '--state-dir', stateDir, '--config', '/dev/null'], {
      prefix: ['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs hs-first "$0" && exec "$@"', mnt],
    });
    await daemon.ready();
    assert.equal(await readInside(motd), 'on the tmpfs\n');
    assert.equal(await readInside(conf), 'listen = 80\n');
    assert.deepEqual(readdirSync(mnt), [], 'nothing on the directory underneath');

    await unmount();
    // The watch on the tmpfs reports its unmount: the files are missing now, and a repair would write underneath.
    for (const id of [`file:${motd}`, `file:${conf}`]) {
      await waitFor(async () => (await events(id)).some((e) => e.event === 'repair_failed' && /HS_HOST_MOUNT_GONE/.test(e.detail ?? '')), 15_000, `${id} refused`);
    }
    const failed = (await events(`file:${conf}`)).find((e) => e.event === 'repair_failed');
    assert.match(failed?.detail ?? '', new RegExp(`${mnt} is no longer mounted`));
    assert.deepEqual(readdirSync(mnt), [], 'nothing written on the filesystem underneath');
    assert.deepEqual(
      (await events(`file:${motd}`)).filter((e) => e.event === 'repaired').length,
      1,
      'only the start-up creation: the unmount was not repaired as ordinary drift',
    );

    // A fresh tmpfs mounted back: repaired well before any resync (5 min) or backoff would get to it.
    const mounted = Date.now();
    const back = await inside(['mount', '-t', 'tmpfs', 'hs-second', mnt]);
    assert.equal(back.code, 0, back.stderr);
    await waitFor(async () => (await readInside(motd)) === 'on the tmpfs\n' && (await readInside(conf)) === 'listen = 80\n', 15_000, 'the fresh tmpfs repaired');
    assert.ok(Date.now() - mounted < 10_000, `repaired ${Date.now() - mounted} ms after the mount`);
    assert.deepEqual(readdirSync(mnt), []);

    // Tampering inside the new filesystem is seen: the watch moved to it.
    const tamper = await inside(['sh', '-c', `printf tampered > ${motd}`]);
    assert.equal(tamper.code, 0, tamper.stderr);
    await waitFor(async () => (await readInside(motd)) === 'on the tmpfs\n', 10_000, 'tampering in the new tmpfs repaired');
  });

  it('refuses to write under a FUSE mountpoint that has gone, though its files were read through the thread pool', async () => {
    // Paths on filesystems that can hang are observed off the event loop (host/fsguard.ts); the filesystem they were seen
    // on must be learned there too, or a repair after the unmount writes into the directory underneath.
    const src = path.join(t.dir, 'src');
    mkdirSync(src);
    const motd = path.join(mnt, 'motd');
    const confd = path.join(mnt, 'conf.d');
    const baseline = writeBaseline(
      t.dir,
      'fused',
      `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: fused\nspec:\n  resources:\n    - file: ${motd}\n      content: "on the fuse mount\\n"\n    - directory: ${confd}\n`,
    );
    // bindfs mirrors src at mnt through FUSE, in the daemon's own mount namespace (this process sees the directory underneath).
    daemon = startAgentDaemon(['--baseline', baseline, '--state-dir', stateDir, '--config', '/dev/null'], {
      prefix: ['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'bindfs "$0" "$1" && shift && exec "$@"', src, mnt],
    });
    try {
      await daemon.ready();
      assert.match((await inside(['findmnt', '-n', '-o', 'FSTYPE', mnt])).stdout, /^fuse/);
      assert.deepEqual(readdirSync(src).sort(), ['conf.d', 'motd'], 'created through the FUSE mount');
      assert.deepEqual(readdirSync(mnt), []);

      await unmount();
      for (const id of [`file:${motd}`, `directory:${confd}`]) {
        await waitFor(async () => (await events(id)).some((e) => e.event === 'repair_failed' && /HS_HOST_MOUNT_GONE/.test(e.detail ?? '')), 15_000, `${id} refused`);
      }
      assert.deepEqual(readdirSync(mnt), [], 'nothing written on the filesystem underneath');
    } finally {
      await inside(['umount', mnt]); // ends bindfs when the test failed before its unmount
    }
  });

  it('repairs into a filesystem mounted over a watched directory, and watches it', async () => {
    const motd = path.join(mnt, 'motd');
    const baseline = writeBaseline(
      t.dir,
      'covered',
      `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: covered
spec:
  resources:
    - file: ${motd}
      content: "wanted\\n"
      mode: "0644"
`,
    );
    daemon = startAgentDaemon(['--baseline', baseline, '--state-dir', stateDir, '--config', '/dev/null'], { prefix: ['unshare', '-m', '--propagation', 'private'] });
    await daemon.ready();
    assert.equal(await readInside(motd), 'wanted\n');
    // Mounted over the watched directory: no inotify event tells of it; only the mount table does.
    const over = await inside(['mount', '-t', 'tmpfs', 'hs-over', mnt]);
    assert.equal(over.code, 0, over.stderr);
    await waitFor(async () => (await readInside(motd)) === 'wanted\n', 15_000, 'the file made on the new filesystem');
    const tamper = await inside(['sh', '-c', `chmod 0600 ${motd}`]);
    assert.equal(tamper.code, 0, tamper.stderr);
    await waitFor(async () => (await inside(['stat', '-c', '%a', motd])).stdout.trim() === '644', 10_000, 'a chmod on the new filesystem repaired');
  });
});
