// homeostatctl against a real controller process over TLS, with a real agent enrolled: token create, baseline push and
// list, rollout start, agents, escalations, approve and reject, events; and the controller's operator token given as a
// file (or, warned, on the command line without staying visible in ps).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAgentDaemon, tempDir, waitFor, type DaemonProcess } from '../helpers/agent.js';
import { WireAgent, wireEvent } from '../helpers/wire-agent.js';

const content = (file: string): string | undefined => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
};

const CONTROLLER_MAIN = fileURLToPath(new URL('../../controller/main.js', import.meta.url));
const CTL_MAIN = fileURLToPath(new URL('../../controller/ctl/main.js', import.meta.url));

interface Controller {
  child: ChildProcess;
  url: string;
  stderr: () => string;
  stop(): Promise<void>;
}

async function startControllerProcess(args: string[]): Promise<Controller> {
  const child = spawn(process.execPath, [CONTROLLER_MAIN, 'run', '--listen', '127.0.0.1:0', '--log-level', 'info', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await waitFor(() => stderr.includes('"controller listening"') || child.exitCode !== null, 20_000, 'controller listening');
  if (child.exitCode !== null) throw new Error(`controller exited ${child.exitCode}: ${stderr}`);
  const line = stderr.split('\n').find((l) => l.includes('"controller listening"')) ?? '{}';
  const url = (JSON.parse(line) as { url: string }).url;
  return {
    child,
    url,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

describe('homeostatctl against a real controller', function () {
  this.timeout(90_000);
  const tmp = tempDir('hs-ctl-');
  const dataDir = path.join(tmp.dir, 'controller');
  const tokenFile = path.join(tmp.dir, 'operator.token');
  const managed = path.join(tmp.dir, 'managed');
  let ctl: Controller;
  let agent: DaemonProcess | undefined;

  const run = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [CTL_MAIN, '--server', ctl.url, '--token-file', tokenFile, '--ca', path.join(dataDir, 'tls.crt'), ...args], {
        env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'HOMEOSTAT_ADMIN_TOKEN')), ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  const ok = async <T = unknown>(args: string[]): Promise<T> => {
    const r = await run([...args, '--json']);
    assert.equal(r.code, 0, `homeostatctl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };

  before(async () => {
    mkdirSync(managed, { recursive: true });
    writeFileSync(tokenFile, 'ctl-test-operator-token\n', { mode: 0o600 });
    ctl = await startControllerProcess(['--data-dir', dataDir, '--admin-token-file', tokenFile]);
  });
  after(async () => {
    await agent?.stop();
    await ctl?.stop();
    tmp.cleanup();
  });

  it('refuses a wrong token and names the error', async () => {
    const r = await run(['agents'], {});
    assert.equal(r.code, 0, r.stderr);
    const bad = await new Promise<{ code: number; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [CTL_MAIN, '--server', ctl.url, '--token', 'wrong', '--ca', path.join(dataDir, 'tls.crt'), 'agents'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => resolve({ code: code ?? -1, stderr }));
    });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /401 HS_AUTH/);
  });

  it('creates a join token, pushes and rolls out a baseline, and lists the enrolled agent enforcing it', async () => {
    const { token, allowLabels } = await ok<{ token: string; allowLabels: string[] }>(['token', 'create', '--ttl', '1h', '--labels', 'role=web', '--allow-labels', 'zone=eu-*']);
    assert.match(token, /^hsj2\./);
    assert.deepEqual(allowLabels, ['zone=eu-*']);
    const file = path.join(tmp.dir, 'web.yaml');
    writeFileSync(
      file,
      `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: { role: web }\n  resources:\n    - file: ${managed}/motd\n      content: "hello\\n"\n    - file: ${managed}/sshd_config\n      source: files/sshd_config\n      risk: high\n    - file: ${managed}/limits.conf\n      content: "nofile 1024\\n"\n      risk: high\n`,
    );
    mkdirSync(path.join(tmp.dir, 'files'), { recursive: true });
    writeFileSync(path.join(tmp.dir, 'files', 'sshd_config'), 'PermitRootLogin no\n');
    const pushed = await ok<{ name: string; version: number; created: boolean }>(['baseline', 'push', file]);
    assert.deepEqual({ ...pushed, sha256: undefined }, { name: 'web', version: 1, created: true, sha256: undefined });
    const list = await ok<{ name: string; latest: number }[]>(['baseline', 'list']);
    assert.deepEqual(list.map((b) => [b.name, b.latest]), [['web', 1]]);
    const rollout = await ok<{ id: number; state: string }>(['rollout', 'start', 'web', '1', '--all-at-once']);
    assert.equal(rollout.state, 'completed');

    agent = startAgentDaemon(['--state-dir', path.join(tmp.dir, 'agent'), '--controller', ctl.url.replace('https:', 'wss:'), '--token', token, '--labels', 'zone=eu-west']);
    await waitFor(() => content(path.join(managed, 'motd')) === 'hello\n', 30_000, 'the agent enforcing the rolled-out version').catch(async (err: unknown) => {
      throw new Error(`${String(err)}\n${agent?.stderr ?? ''}`);
    });
    const agents = await ok<{ id: string; connected: boolean; labels: Record<string, string>; baselines: { name: string; version: number }[] }[]>(['agents']);
    assert.equal(agents.length, 1);
    assert.equal(agents[0]?.connected, true);
    assert.deepEqual(agents[0]?.labels, { role: 'web', zone: 'eu-west' }, 'the token\'s label and the one it allowed the agent to ask for');
    const human = await run(['agents']);
    assert.match(human.stdout, /^ID\s+HOST\s+STATE/m);
    assert.match(human.stdout, /connected/);
  });

  it('lists escalations from the agent, and approves one (repaired) and rejects another (left as an exception)', async () => {
    writeFileSync(path.join(managed, 'sshd_config'), 'PermitRootLogin yes\n');
    writeFileSync(path.join(managed, 'limits.conf'), 'nofile 65536\n');
    type Esc = { id: number; resource: string; status: string; outcome: string | null };
    let open: Esc[] = [];
    await waitFor(async () => (open = await ok<Esc[]>(['escalations'])).length === 2, 30_000, 'two escalations');
    const ssh = open.find((e) => e.resource.endsWith('sshd_config'));
    const limits = open.find((e) => e.resource.endsWith('limits.conf'));
    assert.ok(ssh && limits);
    const human = await run(['escalations']);
    assert.match(human.stdout, new RegExp(`^${ssh.id}\\s+\\S+\\s+file:${managed}/sshd_config\\s+escalated`, 'm'));

    assert.equal((await ok<Esc>(['approve', String(ssh.id)])).status, 'approved');
    assert.equal((await ok<Esc>(['reject', String(limits.id), '--reason', 'load test this week', '--expires', '2d'])).status, 'rejected');
    await waitFor(() => content(path.join(managed, 'sshd_config')) === 'PermitRootLogin no\n', 30_000, 'the approved drift repaired');
    await waitFor(async () => (await ok<Esc[]>(['escalations', '--status', 'all'])).every((e) => e.outcome === 'done'), 30_000, 'both decisions carried out');
    assert.equal(readFileSync(path.join(managed, 'limits.conf'), 'utf8'), 'nofile 65536\n', 'the rejected drift stays');
    const reject = await run(['reject', String(limits.id)]);
    assert.notEqual(reject.code, 0, 'a rejection needs a reason');
    const again = await run(['approve', String(limits.id), '--json']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /409 HS_CONFLICT/);
  });

  it('lists events, including one whose time no date can hold', async () => {
    const events = await ok<{ event: string; resource: string | null }[]>(['events', '--kind', 'escalated']);
    assert.ok(events.some((e) => e.resource?.endsWith('sshd_config')));
    const { token } = await ok<{ token: string }>(['token', 'create']);
    const odd = await WireAgent.enroll(ctl.url.replace('https:', 'wss:'), token);
    await odd.deliver([wireEvent(1, { time: 9e15, event: 'repaired' })]);
    odd.close();
    const human = await run(['events', '--agent', odd.id]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^TIME\s+AGENT\s+SEQ\s+EVENT/m);
    assert.match(human.stdout, /^9000000000000000\s/m);
  });

  it('warns about --admin-token on the command line and keeps it out of ps', async () => {
    const secret = 'visible-on-the-command-line-0123456789';
    const other = await startControllerProcess(['--data-dir', path.join(tmp.dir, 'second'), '--insecure-http', '--admin-token', secret]);
    try {
      assert.match(other.stderr(), /--admin-token puts the operator token where every local user can read it/);
      const cmdline = readFileSync(`/proc/${other.child.pid ?? 0}/cmdline`, 'utf8');
      assert.ok(!cmdline.includes(secret), `ps shows: ${cmdline.replace(/\0/g, ' ')}`);
      const r = await fetch(`${other.url}/api/v1/agents`, { headers: { authorization: `Bearer ${secret}` } });
      assert.equal(r.status, 200, 'the token still works');
    } finally {
      await other.stop();
    }
  });
});
