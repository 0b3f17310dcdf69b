// The name the daemons go by: `pgrep homeostat-agent` finds the agent (Node alone would call it MainThread), and neither
// daemon's command line shows a token once it runs.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DaemonProcess, startAgentDaemon, tempDir, waitFor, writeBaseline } from '../helpers/agent.js';

const CONTROLLER_MAIN = fileURLToPath(new URL('../../controller/main.js', import.meta.url));
const comm = (pid: number): string => readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
const cmdline = (pid: number): string => readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+/g, ' ').trim();

describe('process titles', function () {
  this.timeout(30_000);
  let t: { dir: string; cleanup: () => void };
  beforeEach(() => {
    t = tempDir('hs-title-');
  });
  afterEach(() => t.cleanup());

  it('the agent is homeostat-agent to pgrep and ps, its --token hidden', async () => {
    const b = writeBaseline(t.dir, 'title', `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: title\nspec:\n  resources:\n    - file: ${t.dir}/f\n      content: "x\\n"\n`);
    const secret = 'hsj2.not-a-real-token-but-secret';
    const daemon = startAgentDaemon(['--baseline', b, '--state-dir', path.join(t.dir, 'state'), '--config', '/dev/null', `--token=${secret}`]);
    try {
      await daemon.ready();
      assert.equal(comm(daemon.pid), 'homeostat-agent');
      const pids = execFileSync('pgrep', ['-x', 'homeostat-agent'], { encoding: 'utf8' }).trim().split('\n').map(Number);
      assert.ok(pids.includes(daemon.pid), `pgrep: ${pids.join(' ')}`);
      assert.match(cmdline(daemon.pid), /^homeostat-agent run .*--baseline \S+title\.yaml .*--token=\*\*\*$/);
      assert.ok(!cmdline(daemon.pid).includes(secret));
    } finally {
      await daemon.stop();
    }
  });

  it('the controller is homeostat-contr (comm keeps 15 bytes), its --admin-token hidden', async () => {
    const secret = 'operator-token-on-the-command-line';
    const child = spawn(process.execPath, [CONTROLLER_MAIN, 'run', '--data-dir', path.join(t.dir, 'c'), '--listen', '127.0.0.1:0', '--insecure-http', '--admin-token', secret], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const controller = new DaemonProcess(child);
    try {
      await waitFor(() => controller.stderr.includes('controller listening') || child.exitCode !== null, 20_000, 'controller listening');
      assert.equal(comm(controller.pid), 'homeostat-contr');
      assert.equal(cmdline(controller.pid).split(' ').slice(0, 2).join(' '), 'homeostat-controller run');
      assert.match(cmdline(controller.pid), /--admin-token \*\*\*/);
      assert.ok(!cmdline(controller.pid).includes(secret));
    } finally {
      await controller.stop();
    }
  });
});
