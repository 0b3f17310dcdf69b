// The daemon's signals from the first moment it says it is ready: SIGTERM then stops it cleanly (exit 0) and SIGHUP reloads it, never the default action that kills it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { AGENT_MAIN, tempDir, writeBaseline } from '../helpers/agent.js';

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** Starts the daemon and sends SIGNAL the moment its "agent ready" line arrives; then SIGTERM once `reloaded` shows (for SIGHUP). */
function signalAtReady(args: string[], signal: NodeJS.Signals): Promise<Ended> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [AGENT_MAIN, 'run', '--log-level', 'info', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let sent = false;
    let stopped = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!sent && stderr.includes('"agent ready"')) {
        sent = true;
        child.kill(signal);
      }
      // After a reload, the daemon must still be there to stop.
      if (signal === 'SIGHUP' && !stopped && stderr.includes('"reloading baselines"')) {
        stopped = true;
        child.kill('SIGTERM');
      }
    });
    child.on('error', reject);
    child.on('exit', (code, sig) => resolve({ code, signal: sig, stderr }));
  });
}

describe('daemon signals right at readiness', function () {
  this.timeout(120_000);
  let t: { dir: string; cleanup: () => void };
  let args: string[];
  before(() => {
    t = tempDir('hs-test-signals-');
    const b = writeBaseline(t.dir, 'b', `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: b }\nspec:\n  resources:\n    - file: ${path.join(t.dir, 'motd')}\n      content: "x\\n"\n`);
    args = ['--baseline', b, '--state-dir', path.join(t.dir, 'state')];
  });
  after(() => t.cleanup());

  // The window used to be open in about half of the starts (20 of 40, 24 of 40 measured); 12 in a row find it.
  it('SIGTERM the moment the daemon is ready stops it with exit 0, 12 times in a row', async () => {
    for (let i = 0; i < 12; i++) {
      const r = await signalAtReady(args, 'SIGTERM');
      assert.deepEqual({ code: r.code, signal: r.signal }, { code: 0, signal: null }, `start ${i + 1}:\n${r.stderr.slice(-1500)}`);
      assert.match(r.stderr, /"agent stopped"/);
    }
  });

  it('SIGHUP the moment the daemon is ready reloads it instead of ending it, 12 times in a row', async () => {
    for (let i = 0; i < 12; i++) {
      const r = await signalAtReady(args, 'SIGHUP');
      assert.deepEqual({ code: r.code, signal: r.signal }, { code: 0, signal: null }, `start ${i + 1}:\n${r.stderr.slice(-1500)}`);
      assert.match(r.stderr, /"reloading baselines"/);
    }
  });
});
