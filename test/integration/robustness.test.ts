// The daemon never stops enforcing, whatever the host does to its state dir: filled up under it or before it starts,
// its cache truncated, overwritten, damaged while it runs, or its write-ahead log deleted after a kill -9. Real daemons,
// real files, real tmpfs mounts; each time the host stays enforced and what was lost is recorded.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { composeAgent } from '../../agent/compose.js';
import { ControllerLink } from '../../agent/link/link.js';
import { DEFAULT_SETTINGS } from '../../agent/settings.js';
import { AgentStore } from '../../agent/store/store.js';
import { silentLogger } from '../../lib/log.js';
import type { HostFacts } from '../../proto/codec.js';
import { controller } from '../helpers/trust.js';
import type { AuditEntry } from '../../agent/store/types.js';
import { runAgent, startAgentDaemon, tempDir, waitFor, writeBaseline, type DaemonProcess } from '../helpers/agent.js';

const DESIRED = 'Authorized use only\n';
/** Same length as DESIRED: one write(2) in place, so one inotify event and one drift. */
const TAMPERED = 'Unauthorised use ok\n';

function mountTmpfs(dir: string, size: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
}

function unmount(dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'ignore' });
  } catch {
    // not mounted
  }
}

/** Fills the filesystem of `dir` to the last byte. */
function fill(dir: string): void {
  const fd = openSync(path.join(dir, 'filler'), 'w');
  try {
    for (const size of [1 << 20, 64 << 10, 4096, 512, 1]) {
      const buf = Buffer.alloc(size);
      for (;;) {
        try {
          writeSync(fd, buf);
        } catch {
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** Rewrites a file in place with one write (no truncation): one event, one drift. */
function tamper(file: string, text = TAMPERED): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, text, 0);
  } finally {
    closeSync(fd);
  }
}

function audit(stateDir: string): AuditEntry[] {
  const store = AgentStore.open(stateDir, { readonly: true });
  try {
    return store.queryAudit({});
  } finally {
    store.close();
  }
}

describe('the daemon never stops enforcing', function () {
  this.timeout(90_000);
  let t: { dir: string; cleanup: () => void };
  let root: string;
  let stateDir: string;
  let daemon: DaemonProcess | undefined;
  const motd = (): string => path.join(root, 'motd');
  const extra = (): string => path.join(root, 'extra.conf');

  beforeEach(() => {
    t = tempDir('hs-robust-');
    root = path.join(t.dir, 'root');
    stateDir = path.join(t.dir, 'state');
    mkdirSync(root);
  });

  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    unmount(stateDir);
    t.cleanup();
  });

  /** The baseline: motd, and with `more` that many files more (extra.conf, more/0, more/1, ...). */
  function baseline(more = 0): string {
    const files = more > 0 ? [extra(), ...Array.from({ length: more - 1 }, (_, i) => path.join(root, 'more', String(i)))] : [];
    return writeBaseline(
      t.dir,
      'b',
      `apiVersion: homeostat/v1
kind: Baseline
metadata: { name: b }
spec:
  policy: { flap: { maxRepairs: 100, window: 1m } }
  resources:
${[motd(), ...files].map((f) => `    - file: ${f}\n      content: "${DESIRED.trimEnd()}\\n"\n`).join('')}`,
    );
  }

  async function start(file = baseline()): Promise<DaemonProcess> {
    const d = startAgentDaemon(['--baseline', file, '--state-dir', stateDir]);
    daemon = d;
    await d.ready(30_000);
    await waitFor(() => existsSync(motd()) && readFileSync(motd(), 'utf8') === DESIRED, 10_000, 'enforced');
    return d;
  }

  async function expectRepaired(file: string): Promise<void> {
    tamper(file);
    await waitFor(() => readFileSync(file, 'utf8') === DESIRED, 10_000, `${file} repaired`);
  }

  const alive = (d: DaemonProcess): void => assert.equal(d.child.exitCode, null, `the daemon exited:\n${d.stderr.slice(-3000)}`);

  describe('a full disk', () => {
    /** 2,000 files already compliant besides motd: the agent remembers each one it verified (its path journal). */
    function compliantFiles(): void {
      mkdirSync(path.join(root, 'more'));
      writeFileSync(extra(), DESIRED);
      for (let i = 0; i < 1999; i++) writeFileSync(path.join(root, 'more', String(i)), DESIRED);
    }

    it('fills right after start, before the agent saves what it verified: repairs go on, and once there is room records are written again', async () => {
      mountTmpfs(stateDir, '4m');
      compliantFiles();
      writeFileSync(motd(), DESIRED);
      const d = await start(baseline(2000));
      // The journal of 2,000 verified files is saved a second after the start-up pass: the disk is full by then.
      fill(stateDir);
      await waitFor(() => d.stderr.includes('"path journal not saved; trying again later"') || d.child.exitCode !== null, 15_000, 'the journal flush to fail');
      alive(d);
      // Room left in the write-ahead log may still take a few records: repairs go on until one cannot be written, and after.
      for (let i = 0; i < 200 && !d.stderr.includes('"audit record not written"'); i++) await expectRepaired(i % 2 === 0 ? motd() : extra());
      assert.ok(d.stderr.includes('"audit record not written"'), 'a record not written on the full disk');
      await expectRepaired(motd());
      await expectRepaired(extra());
      alive(d);
      const status = await runAgent(['status', '--json', '--state-dir', stateDir]);
      assert.equal(status.code, 0, status.stderr);

      rmSync(path.join(stateDir, 'filler'));
      const before = audit(stateDir).length;
      await expectRepaired(motd());
      await waitFor(() => audit(stateDir).slice(before).some((e) => e.resource === `file:${motd()}` && e.event === 'repaired'), 10_000, 'records written again');
      await waitFor(() => d.stderr.includes('"path journal saved again"'), 40_000, 'the journal saved once there is room');
      const verify = await runAgent(['audit', '--verify', '--state-dir', stateDir]);
      assert.equal(verify.code, 0, verify.stdout);
    });

    it('fills under the running daemon: a new baseline version still takes effect, though it cannot be stored', async () => {
      mountTmpfs(stateDir, '4m');
      const d = await start();
      compliantFiles();
      fill(stateDir);
      baseline(2000);
      d.child.kill('SIGHUP');
      await waitFor(() => d.stderr.includes('"path journal not saved; trying again later"') || d.child.exitCode !== null, 15_000, 'the new version enforced');
      alive(d);
      assert.ok(!d.stderr.includes('"baseline rejected, keeping the last good one"'), 'a full disk is no reason to refuse a baseline');
      await expectRepaired(extra());
      await expectRepaired(path.join(root, 'more', '1998'));
      alive(d);
    });

    it('starts on a full disk over the cache of an earlier run, and enforces', async () => {
      mountTmpfs(stateDir, '4m');
      const first = await start();
      assert.equal(await first.stop(), 0);
      daemon = undefined;
      tamper(motd());
      fill(stateDir);
      const d = await start();
      await expectRepaired(motd());
      alive(d);
    });

    it('starts on a state dir with no room for a cache at all, and enforces with the cache in memory', async () => {
      mountTmpfs(stateDir, '64k');
      fill(stateDir);
      const d = await start();
      assert.match(d.stderr, /"the state dir cannot be used: enforcing with the cache in memory only"/);
      await expectRepaired(motd());
      alive(d);
    });
  });

  describe('a damaged cache', () => {
    const db = (): string => path.join(stateDir, 'agent.db');

    /** A first run that leaves records behind (a start-up repair and three more), stopped cleanly. Returns its last seq. */
    async function earlierRun(): Promise<number> {
      const d = await start();
      for (let i = 0; i < 3; i++) await expectRepaired(motd());
      assert.equal(await d.stop(), 0);
      daemon = undefined;
      return Math.max(...audit(stateDir).map((e) => e.seq));
    }

    /** Starts again over the damage: enforced at once, the damage recorded, the chain whole with the loss named. */
    async function expectRebuilt(lastSeq: number, why: RegExp): Promise<AuditEntry[]> {
      const d = await start();
      await expectRepaired(motd());
      alive(d);
      const quarantined = readdirSync(stateDir).filter((n) => n.startsWith('agent.db.damaged-') && !n.endsWith('-wal') && !n.endsWith('-shm'));
      assert.equal(quarantined.length, 1, `the damaged file is kept aside: ${readdirSync(stateDir).join(', ')}`);
      const entries = audit(stateDir);
      const lost = entries.find((e) => e.event === 'records_lost');
      assert.ok(lost, `records_lost: ${entries.map((e) => e.event).join(', ')}`);
      assert.equal(lost.seq, lastSeq + 1, 'the new log starts after the last record the old one reached');
      assert.deepEqual(lost.observed, { firstLost: 1, lastLost: lastSeq });
      assert.ok(entries.every((e) => e.seq > lastSeq), 'no seq of the old log is used again');
      const recovered = entries.find((e) => e.event === 'store_recovered');
      assert.match(recovered?.detail ?? '', why);
      assert.ok((recovered?.detail ?? '').includes(quarantined[0] as string));
      const verify = await runAgent(['audit', '--verify', '--json', '--state-dir', stateDir]);
      assert.equal(verify.code, 0, verify.stdout);
      assert.deepEqual((JSON.parse(verify.stdout) as { lost: unknown }).lost, [{ from: 1, to: lastSeq, recordedAt: lastSeq + 1 }]);
      const text = await runAgent(['audit', '--verify', '--state-dir', stateDir]);
      assert.match(text.stdout, new RegExp(`records 1 to ${lastSeq} lost \\(recorded at #${lastSeq + 1}\\)`));
      return entries;
    }

    it('truncated: moved aside and rebuilt from the baseline files; the loss is recorded and no seq is used twice', async () => {
      const last = await earlierRun();
      truncateSync(db(), Math.floor(statSync(db()).size / 2));
      await expectRebuilt(last, /agent\.db was damaged \(.*database disk image is malformed/);
    });

    it('overwritten with something else: the same', async () => {
      const last = await earlierRun();
      const size = statSync(db()).size;
      writeFileSync(db(), Buffer.alloc(size, 0x5a));
      await expectRebuilt(last, /agent\.db was damaged \(.*file is not a database/);
    });

    it('damaged under the running daemon (the audit pages overwritten): moved aside and rebuilt in place, records go on', async () => {
      const d = await start();
      for (let i = 0; i < 3; i++) await expectRepaired(motd());
      const last = Math.max(...audit(stateDir).map((e) => e.seq));
      // Everything into the database file and the write-ahead log emptied, so the daemon reads pages from the file again;
      // then every page of the audit table overwritten.
      const side = new Database(db());
      let pages: number[];
      try {
        side.pragma('wal_checkpoint(TRUNCATE)');
        pages = (side.prepare("SELECT pageno FROM dbstat WHERE name = 'audit'").all() as { pageno: number }[]).map((p) => p.pageno);
      } finally {
        side.close();
      }
      const fd = openSync(db(), 'r+');
      try {
        for (const p of pages) writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, (p - 1) * 4096);
      } finally {
        closeSync(fd);
      }
      await expectRepaired(motd());
      await waitFor(() => {
        try {
          return audit(stateDir).some((e) => e.event === 'store_recovered');
        } catch {
          return false;
        }
      }, 10_000, 'the rebuild recorded').catch((e: unknown) => assert.fail(`${String(e)}\n${d.stderr.slice(-2500)}`));
      alive(d);
      await expectRepaired(motd());
      const entries = audit(stateDir);
      assert.match(entries.find((e) => e.event === 'store_recovered')?.detail ?? '', /turned out damaged while running .*moved to .*agent\.db\.damaged-/);
      assert.deepEqual(entries.find((e) => e.event === 'records_lost')?.observed, { firstLost: 1, lastLost: last });
      assert.ok(entries.filter((e) => e.resource === `file:${motd()}` && e.event === 'repaired').length >= 2, 'the repairs after the damage are recorded');
      assert.deepEqual(
        (await runAgent(['status', '--json', '--state-dir', stateDir]).then((r) => JSON.parse(r.stdout) as { baselines: { name: string }[] })).baselines.map((b) => b.name),
        ['b'],
        'the active baseline was put back',
      );
      const verify = await runAgent(['audit', '--verify', '--state-dir', stateDir]);
      assert.equal(verify.code, 0, verify.stdout);
    });

    it('write-ahead log deleted after a kill -9: the committed records it held are recorded as lost, and their seqs are not used again', async () => {
      await earlierRun();
      // A writer killed right after committing: its last records live only in the write-ahead log.
      const script = `
        const { AgentStore } = await import(process.argv[1]);
        const s = AgentStore.open(process.argv[2]);
        for (let i = 0; i < 136; i++) s.appendAudit({ time: Date.now(), resource: 'file:/x', event: 'drift_detected', trigger: 'watch', baseline: 'b', version: 1, observed: null, desired: null, diff: null, detail: String(i) });
        process.kill(process.pid, 'SIGKILL');`;
      const storeModule = path.resolve('dist/agent/store/store.js');
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, storeModule, stateDir]);
      assert.equal(r.signal, 'SIGKILL', r.stderr.toString());
      const reached = Math.max(...audit(stateDir).map((e) => e.seq));
      rmSync(`${db()}-wal`);
      rmSync(`${db()}-shm`, { force: true });
      const survived = Math.max(...audit(stateDir).map((e) => e.seq));
      assert.ok(survived < reached, `the write-ahead log held records: ${survived} of ${reached} left`);
      const d = await start();
      await expectRepaired(motd());
      alive(d);
      const entries = audit(stateDir);
      const lost = entries.find((e) => e.event === 'records_lost');
      assert.deepEqual(lost?.observed, { firstLost: survived + 1, lastLost: reached });
      assert.equal(lost?.seq, reached + 1);
      assert.ok(entries.filter((e) => e.seq > survived).every((e) => e.seq > reached), 'no lost seq is used again');
      const verify = await runAgent(['audit', '--verify', '--json', '--state-dir', stateDir]);
      assert.equal(verify.code, 0, verify.stdout);
      assert.deepEqual((JSON.parse(verify.stdout) as { lost: unknown }).lost, [{ from: survived + 1, to: reached, recordedAt: reached + 1 }]);
    });

    it('write-ahead log deleted while the daemon is down: audit --verify says records are missing before any start', async () => {
      await earlierRun();
      const script = `
        const { AgentStore } = await import(process.argv[1]);
        const s = AgentStore.open(process.argv[2]);
        for (let i = 0; i < 20; i++) s.appendAudit({ time: Date.now(), resource: 'file:/x', event: 'drift_detected', trigger: 'watch', baseline: 'b', version: 1, observed: null, desired: null, diff: null, detail: String(i) });
        process.kill(process.pid, 'SIGKILL');`;
      spawnSync(process.execPath, ['--input-type=module', '-e', script, path.resolve('dist/agent/store/store.js'), stateDir]);
      rmSync(`${db()}-wal`);
      rmSync(`${db()}-shm`, { force: true });
      const verify = await runAgent(['audit', '--verify', '--state-dir', stateDir]);
      assert.equal(verify.code, 1, verify.stdout);
      assert.match(verify.stdout, /BROKEN .*missing \(the head kept beside the database says the log reached it\)/);
    });
  });

  describe('a filesystem that hangs', () => {
    let bindfs: ChildProcess | undefined;
    let mnt: string;

    afterEach(async () => {
      // Answer again before anything (the daemon, the cleanup) touches the mount.
      if (bindfs?.pid) process.kill(bindfs.pid, 'SIGCONT');
      await daemon?.stop();
      daemon = undefined;
      try {
        execFileSync('fusermount', ['-u', mnt], { stdio: 'ignore' });
      } catch {
        // already gone
      }
      if (bindfs && bindfs.exitCode === null) {
        bindfs.kill('SIGKILL');
        await new Promise((r) => bindfs?.once('exit', r));
      }
      bindfs = undefined;
    });

    it('(a FUSE daemon stopped) costs its own resources a timeout; everything else is still repaired at once', async () => {
      const src = path.join(t.dir, 'src');
      mnt = path.join(t.dir, 'mnt');
      mkdirSync(src);
      mkdirSync(mnt);
      // bindfs mirrors `src` at `mnt` through FUSE; SIGSTOP makes every call on `mnt` wait, as a dead NFS server does.
      bindfs = spawn('bindfs', ['-f', src, mnt], { stdio: 'ignore' });
      await waitFor(() => readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${mnt} `), 10_000, 'the FUSE mount');
      const remote = path.join(mnt, 'remote.conf');
      const config = path.join(t.dir, 'agent.yaml');
      writeFileSync(config, 'resyncInterval: 1s\n');
      const file = writeBaseline(
        t.dir,
        'b',
        `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: b }\nspec:\n  policy: { flap: { maxRepairs: 100, window: 1m } }\n  resources:\n` +
          `    - file: ${motd()}\n      content: "${DESIRED.trimEnd()}\\n"\n    - file: ${remote}\n      content: "${DESIRED.trimEnd()}\\n"\n`,
      );
      const d = startAgentDaemon(['--baseline', file, '--state-dir', stateDir, '--config', config]);
      daemon = d;
      await d.ready(30_000);
      await waitFor(() => existsSync(path.join(src, 'remote.conf')), 10_000, 'the file on the FUSE mount created');

      assert.ok(bindfs.pid);
      process.kill(bindfs.pid, 'SIGSTOP');
      // The resync (every second) looks at the file on the stopped filesystem: that reconcile fails at the guard's deadline.
      const remoteFailures = (): AuditEntry[] => audit(stateDir).filter((e) => e.resource === `file:${remote}` && e.event === 'repair_failed');
      await expectRepaired(motd());
      await waitFor(() => remoteFailures().length > 0, 20_000, 'the hung filesystem recorded');
      assert.match(remoteFailures()[0]?.detail ?? '', new RegExp(`HS_HOST_TIMEOUT: reading ${remote}: the fuse filesystem at ${mnt} has not answered for \\d+ s`));
      // Meanwhile, and while it stays hung, the rest of the host is repaired as fast as ever.
      for (let i = 0; i < 3; i++) await expectRepaired(motd());
      alive(d);

      // Answering again: the calls it held return, the breaker closes, and the next resync finds the drift made meanwhile.
      process.kill(bindfs.pid, 'SIGCONT');
      const before = audit(stateDir).filter((e) => e.resource === `file:${remote}` && e.event === 'repaired').length;
      tamper(path.join(src, 'remote.conf'));
      await waitFor(() => audit(stateDir).filter((e) => e.resource === `file:${remote}` && e.event === 'repaired').length > before, 15_000, 'the file on the mount repaired again');
      assert.equal(readFileSync(path.join(src, 'remote.conf'), 'utf8'), DESIRED);
    });
  });

  describe('a killed run', () => {
    it("leaves no drift without an outcome: the next start closes the repair it was in the middle of", async () => {
      writeFileSync(motd(), 'old\n');
      const pidFile = path.join(t.dir, 'validator.pid');
      // A validator that never returns: the repair is in flight, its drift recorded, when the agent is killed.
      const slow = writeBaseline(
        t.dir,
        'slow',
        `apiVersion: homeostat/v1
kind: Baseline
metadata: { name: b }
spec:
  resources:
    - file: ${motd()}
      content: "${DESIRED.trimEnd()}\\n"
      validate: "/bin/sh -c 'echo $$ > ${pidFile}; exec sleep 600' sh %s"
`,
      );
      const killed = startAgentDaemon(['--baseline', slow, '--state-dir', stateDir]);
      await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 10_000, 'validator running');
      const open = audit(stateDir).filter((e) => e.resource === `file:${motd()}`);
      assert.deepEqual(open.map((e) => e.event), ['drift_detected']);
      await killed.kill9();
      process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 'SIGKILL');

      const d = await start();
      const entries = audit(stateDir).filter((e) => e.resource === `file:${motd()}`);
      assert.deepEqual(entries.map((e) => `${e.event}/${e.trigger}`).slice(0, 4), ['drift_detected/startup', 'repair_interrupted/startup', 'drift_detected/startup', 'repaired/startup']);
      assert.match(entries[1]?.detail ?? '', new RegExp(`repair begun at record ${open[0]?.seq}`));
      assert.equal(entries[1]?.baseline, 'b');
      // A clean stop leaves nothing to close: the start after it adds no such record.
      assert.equal(await d.stop(), 0);
      daemon = undefined;
      await start();
      assert.equal(audit(stateDir).filter((e) => e.event === 'repair_interrupted').length, 1);
    });
  });

  describe('the controller link', () => {
    const FACTS: HostFacts = { hostname: 'h', os: 'Debian', osRelease: '12', kernel: '6', arch: 'x64', cpu: '', cpuCores: 1, memoryBytes: 1 };

    async function freePort(): Promise<number> {
      const srv = createServer();
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
      const port = (srv.address() as AddressInfo).port;
      await new Promise<void>((r) => srv.close(() => r()));
      return port;
    }

    it('goes on when the store fails under it: heartbeats, delivery and its own state, through a controller restart', async () => {
      const dataDir = path.join(t.dir, 'controller');
      const port = await freePort();
      let c = await controller(dataDir, { listen: `127.0.0.1:${port}` });
      const token = (await c.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h' })).token;
      const store = AgentStore.open(stateDir);
      const agent = composeAgent({ settings: { ...DEFAULT_SETTINGS, stateDir }, log: silentLogger, store });
      const link = new ControllerLink(agent, { url: `wss://127.0.0.1:${port}`, token, stateDir, labels: {}, log: silentLogger, facts: FACTS, probeIntervalMs: 100 });
      try {
        await link.start();
        await waitFor(() => link.state === 'connected', 10_000, 'connected');
        // Every read and write of the store fails from now on (a closed store refuses them all).
        store.close();
        const lastSeen = async (): Promise<number> => (await c.api<{ lastSeen: number }[]>('GET', '/api/v1/agents'))[0]?.lastSeen ?? 0;
        const before = await lastSeen();
        await waitFor(async () => (await lastSeen()) > before, 10_000, 'a heartbeat after the store failed');
        await c.stop();
        await waitFor(() => link.state === 'offline', 10_000, 'offline once the controller is gone');
        c = await controller(dataDir, { listen: `127.0.0.1:${port}` });
        await waitFor(() => link.state === 'connected', 15_000, 'connected again');
      } finally {
        await link.stop();
        await agent.stop();
        await c.stop();
      }
    });
  });
});
