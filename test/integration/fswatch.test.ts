// The path watcher against a real filesystem: a parent made in the gap between looking for it and watching from above is
// still seen, and a directory the agent may not read (the daemon as uid 65534) is logged once and never loops.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DirWatchHub } from '../../agent/host/fswatch.js';
import { silentLogger } from '../../lib/log.js';
import { AGENT_MAIN, DaemonProcess, tempDir, waitFor, writeBaseline } from '../helpers/agent.js';

const NOBODY = 65534;

describe('path watcher (agent/host/fswatch.ts)', function () {
  this.timeout(60_000);
  let t: { dir: string; cleanup: () => void };
  beforeEach(() => {
    t = tempDir('hs-fswatch-');
  });
  afterEach(() => t.cleanup());

  it('sees a parent made between finding it missing and watching from its ancestor', async () => {
    const a = path.join(t.dir, 'a');
    const b = path.join(a, 'b');
    const file = path.join(b, 'app.conf');
    let made = 0;
    // The hub found `a` missing and is about to watch t.dir instead: `a` appears right then, before that watch exists,
    // so no event will ever tell of it. Only a look after arming can.
    const hub = new DirWatchHub(silentLogger, () => undefined, {
      missing: (dir) => {
        if (dir === a && made++ === 0) mkdirSync(a);
      },
    });
    const reasons: string[] = [];
    try {
      hub.watchPath(file, (reason) => reasons.push(reason));
      assert.equal(made, 1, 'the gap was hit');
      mkdirSync(b);
      await waitFor(() => reasons.length > 0, 5_000, 'an event for b, made inside the folder that appeared in the gap');
      reasons.length = 0;
      writeFileSync(file, 'x\n');
      await waitFor(() => reasons.length > 0, 5_000, 'an event for the file');
      assert.deepEqual(hub.state().watched, [b]);
    } finally {
      await hub.close();
    }
  });

  it('follows folders made in every gap, ten deep, in bounded steps, and ends up watching the parent', async () => {
    const levels = Array.from({ length: 10 }, (_, i) => `a${i + 1}`);
    const target = path.join(t.dir, ...levels);
    let made = 0;
    let lost = 0;
    // Each time the hub finds a folder on the way missing, the one below the deepest existing folder appears: the hub
    // has to look again, level after level, more often than it does in one go.
    const hub = new DirWatchHub(silentLogger, () => lost++, {
      missing: (dir) => {
        if (dir !== target && existsSync(path.dirname(dir)) && !existsSync(dir)) {
          mkdirSync(dir);
          made++;
        }
      },
    });
    const reasons: string[] = [];
    try {
      hub.watchPath(path.join(target, 'f'), (reason) => reasons.push(reason));
      await waitFor(() => made === 9 && Object.keys(hub.state().anchors).join() === path.dirname(target), 5_000, 'every folder but the last made, waited for from a9');
      assert.ok(lost >= 1, 'the paths were left to a resync while the hub caught up');
      mkdirSync(target);
      await waitFor(() => hub.state().watched.includes(target), 5_000, 'the parent watched');
      writeFileSync(path.join(target, 'f'), 'x\n');
      await waitFor(() => reasons.includes('rename') || reasons.includes('change'), 5_000, 'an event for the file');
    } finally {
      await hub.close();
    }
  });

  it('waits from the nearest ancestor and moves down as folders appear, with nothing left over', async () => {
    const file = path.join(t.dir, 'x/y/z/f');
    const hub = new DirWatchHub(silentLogger, () => undefined);
    const reasons: string[] = [];
    try {
      hub.watchPath(file, (reason) => reasons.push(reason));
      assert.deepEqual(hub.state().anchors, { [t.dir]: [path.dirname(file)] });
      mkdirSync(path.dirname(file), { recursive: true });
      await waitFor(() => hub.state().watched.length === 1, 5_000, 'the parent watched');
      assert.deepEqual(hub.state().anchors, {});
      writeFileSync(file, 'x\n');
      await waitFor(() => reasons.includes('rename') || reasons.includes('change'), 5_000, 'an event for the file');
    } finally {
      await hub.close();
    }
  });

  it('run as uid 65534 against a 0700 directory: logged once with its cause, no loop, everything else watched', async () => {
    const state = path.join(t.dir, 'state');
    const open = path.join(t.dir, 'open');
    const locked = path.join(t.dir, 'locked');
    mkdirSync(state);
    mkdirSync(open);
    mkdirSync(locked, { mode: 0o700 });
    chmodSync(locked, 0o700);
    writeFileSync(path.join(locked, 'secret.conf'), 'root only\n');
    chmodSync(t.dir, 0o755);
    for (const d of [state, open]) chownSync(d, NOBODY, NOBODY);
    const motd = path.join(open, 'motd');
    const baseline = writeBaseline(
      t.dir,
      'nobody',
      `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: nobody
spec:
  resources:
    - file: ${motd}
      content: "hello\\n"
      owner: "${NOBODY}"
      group: "${NOBODY}"
    - file: ${path.join(locked, 'secret.conf')}
      content: "root only\\n"
`,
    );
    const child = spawn(process.execPath, [AGENT_MAIN, 'run', '--log-level', 'info', '--baseline', baseline, '--state-dir', state, '--config', '/dev/null'], {
      uid: NOBODY,
      gid: NOBODY,
      env: { ...process.env, HOME: state },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const daemon = new DaemonProcess(child);
    try {
      await daemon.ready();
      assert.equal(readFileSync(motd, 'utf8'), 'hello\n');
      writeFileSync(motd, 'tampered\n');
      await waitFor(() => readFileSync(motd, 'utf8') === 'hello\n', 10_000, 'the readable file repaired under its watch');
      const lines = daemon.stderr.split('\n');
      const cannot = lines.filter((l) => l.includes('"cannot watch directory'));
      assert.equal(cannot.length, 1, cannot.join('\n'));
      const logged = JSON.parse(cannot[0] ?? '{}') as { dir?: string; code?: string };
      assert.deepEqual([logged.dir, logged.code], [locked, 'EACCES']);
      assert.doesNotMatch(daemon.stderr, /Maximum call stack|RangeError|watch_limit|inotify watches/);
    } finally {
      await daemon.stop();
    }
  });
});
