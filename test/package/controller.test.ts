// The controller executable with the agent executable: start, enroll, push, roll out, stop — both single binaries, no Node.js from the repository.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AGENT_BIN, CONTROLLER_BIN, cleanEnv, sh } from './artifacts.js';
import { CONTENT, Daemon, aborted, compliant } from './workload.js';

const ADMIN = 'package-test-admin-token';
const FILES = 500;

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('package: the controller executable with an agent executable', function () {
  this.timeout(180_000);
  let dir: string;
  let controller: Daemon | undefined;
  let agent: Daemon | undefined;
  let server = '';
  const env = (): NodeJS.ProcessEnv => cleanEnv({ HOMEOSTAT_CACHE_DIR: path.join(dir, 'cache') });
  const ctl = async <T>(args: string[]): Promise<T> => {
    const r = await sh(CONTROLLER_BIN, ['ctl', '--server', server, '--token', ADMIN, '--json', ...args], { env: env() });
    assert.equal(r.code, 0, `homeostatctl ${args.join(' ')}: ${r.stderr}${controller?.running ? '' : `\nthe controller is gone:\n${controller?.log().slice(-3000)}`}`);
    return JSON.parse(r.stdout) as T;
  };

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-pkg-ctl-'));
  });
  after(async () => {
    await agent?.stop();
    await controller?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts, enrolls an agent, takes a baseline, rolls it out to the agent, and both stop cleanly', async () => {
    // The controller's run is not a `homeostat-agent run`; Daemon only needs a binary whose first argument is `run`.
    controller = new Daemon(CONTROLLER_BIN, ['--insecure-http', '--listen', '127.0.0.1:0', '--data-dir', path.join(dir, 'controller'), '--admin-token', ADMIN], path.join(dir, 'controller.log'), env());
    server = await waitFor('controller listening', 30_000, () => {
      if (!controller?.running) throw new Error(`controller exited:\n${controller?.log()}`);
      return /"controller listening"/.test(controller.log()) ? /"url":"(http:\/\/[^"]+)"/.exec(controller.log())?.[1] : undefined;
    });

    const { token } = await ctl<{ token: string }>(['token', 'create', '--ttl', '10m', '--labels', 'role=pkg']);
    const stateDir = path.join(dir, 'agent-state');
    // Plain ws:// (the controller runs with --insecure-http): the agent must be told so too.
    agent = new Daemon(AGENT_BIN, ['--controller', server.replace(/^http/, 'ws'), '--insecure-http', '--token', token, '--state-dir', stateDir, '--config', '/dev/null', '--log-level', 'info'], path.join(dir, 'agent.log'), env());
    await agent.ready(60_000);
    const enrolled = await waitFor('the agent connected', 30_000, async () => {
      const rows = await ctl<{ id: string; connected: boolean; labels: Record<string, string> }[]>(['agents']);
      return rows.find((a) => a.connected);
    });
    assert.equal(enrolled.labels.role, 'pkg', 'labels come from the join token');

    const root = path.join(dir, 'managed');
    mkdirSync(root);
    const paths = Array.from({ length: FILES }, (_, i) => path.join(root, `f${i}.conf`));
    const file = path.join(dir, 'fleet.yaml');
    writeFileSync(
      file,
      `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: fleet\nspec:\n  selector: { matchLabels: { role: pkg } }\n  resources:\n${paths.map((p) => `    - file: ${p}\n      content: ${JSON.stringify(CONTENT)}\n      mode: "0644"\n`).join('')}`,
    );
    const pushed = await ctl<{ name: string; version: number }>(['baseline', 'push', file]);
    assert.equal(pushed.version, 1);
    // One host: the default waves would soak it for minutes; all at once is the operator's quick path.
    const rollout = await ctl<{ id: number }>(['rollout', 'start', 'fleet', '1', '--all-at-once']);
    await waitFor('the rollout completed', 60_000, async () => {
      const r = await ctl<{ state: string; converged: number; targeted: number }>(['rollout', 'status', String(rollout.id)]);
      if (r.state === 'failed' || r.state === 'rolled_back') throw new Error(`rollout ${r.state}: ${JSON.stringify(r)}`);
      return r.state === 'completed' ? r : undefined;
    });
    assert.deepEqual(paths.filter((p) => !compliant(p)), [], 'every file of the rollout is in place');
    assert.equal(readFileSync(paths[0] ?? '', 'utf8'), CONTENT);

    const agentEnded = await agent.stop();
    assert.ok(!aborted(agentEnded) && agentEnded.code === 0, `agent ended ${JSON.stringify(agentEnded)}:\n${agent.log().slice(-3000)}`);
    const controllerEnded = await controller.stop();
    assert.ok(!aborted(controllerEnded) && controllerEnded.code === 0, `controller ended ${JSON.stringify(controllerEnded)}:\n${controller.log().slice(-3000)}`);
    assert.match(controller.log(), /"controller stopped"/);
  });
});
