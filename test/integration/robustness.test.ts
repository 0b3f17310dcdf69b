// The daemon never stops enforcing, whatever the host does to its state dir: filled up under it or before it starts,
// its cache truncated, overwritten, damaged while it runs, or its write-ahead log deleted after a kill -9. Real daemons,
// real files, real tmpfs mounts; each time the host stays enforced and what was lost is recorded.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { AgentStore } from '../../agent/store/store.js';
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
    execFileSync('umount', [dir]);
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
      await expectRepaired(motd());
      await expectRepaired(extra());
      await waitFor(() => d.stderr.includes('"audit record not written"'), 10_000, 'a record not written');
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
});
