// Policies and human decisions on a fleet of three test hosts (network namespaces, each with its own view of /srv/hs-pol):
// a policy pushed through the controller reaches every host signed and held, an invalid version is refused with located
// errors while the last good one stays, each agent keeps its signed policies through a controller stop and its own restart
// without network; and a rollout whose new version escalates a high-risk file on its first pass waits for the operator
// instead of rolling back, each approval carried out on its host letting the waves go on to completion.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startController, type RunningController } from '../../controller/server.js';
import { runAgent, startAgentDaemon, tempDir, waitFor, type DaemonProcess } from '../helpers/agent.js';
import { Netns, cleanupLeftoverNetns } from '../helpers/netns.js';

const ADMIN = 'e2e-policies';
const MANAGED = '/srv/hs-pol';
const SUBNET = `10.84.${1 + Math.floor(Math.random() * 250)}`;
const HOSTS = 3;

interface Host {
  name: string;
  ns: Netns;
  root: string;
  stateDir: string;
  agent: DaemonProcess | undefined;
  id: string;
}

interface Rollout {
  id: number;
  state: string;
  pausedFor: string | null;
  reason: string | null;
  currentWave: number;
  hosts: { agentId: string; wave: number; status: string }[];
  escalations: { id: number | null; agentId: string; resource: string; status: string }[];
  steps: { kind: string; by?: string }[];
}

const POLICY = (resource: string): string => `apiVersion: homeostat/v1
kind: Policy
metadata:
  name: governance
spec:
  selector:
    matchLabels: { role: app }
  maintenanceWindows:
    - name: sunday-night
      cron: "0 2 * * 0"
      duration: 2h
  rules:
    - match: { resource: "${resource}" }
      action: escalate
    - match: { window: sunday-night }
      action: monitor
`;

const GUARDED = `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: guarded
spec:
  selector:
    matchLabels: { role: app }
  resources:
    - file: ${MANAGED}/secret.conf
      content: "managed\\n"
      mode: "0600"
      risk: high
`;

describe('e2e: policies and decisions on three hosts', function () {
  this.timeout(240_000);
  const tmp = tempDir('hs-e2e-pol-');
  const hosts: Host[] = [];
  let ctl: RunningController;
  let port = 0;

  const call = (method: string, url: string, body?: unknown) =>
    ctl.core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}` }, ...(body === undefined ? {} : { body: body as object }) });
  const api = async <T>(method: string, url: string, body?: unknown): Promise<T> => {
    const r = await call(method, url, body);
    if (r.status >= 400) throw new Error(`${method} ${url}: ${r.status} ${r.text()}`);
    return r.json<T>();
  };
  const start = async (): Promise<void> => {
    ctl = await startController({
      dataDir: path.join(tmp.dir, 'controller'),
      listen: `0.0.0.0:${port}`,
      adminToken: ADMIN,
      gateway: { heartbeatIntervalMs: 1000, pingIntervalMs: 1000 },
    });
    port = ctl.port;
  };
  const startAgent = (h: Host, token: string): void => {
    h.agent = startAgentDaemon(['--state-dir', h.stateDir, '--controller', `wss://${h.ns.hostIp ?? ''}:${port}`, '--token', token, '--labels', 'role=app'], {
      prefix: h.ns.prefix({ binds: [{ source: h.root, target: MANAGED }] }),
    });
  };
  const read = (h: Host, file: string): string | undefined => {
    try {
      return readFileSync(path.join(h.root, file), 'utf8');
    } catch {
      return undefined;
    }
  };
  const audit = async (h: Host, event: string): Promise<{ baseline: string | null; version: number | null; trigger: string | null; detail: string | null }[]> => {
    const r = await runAgent(['audit', '--json', '--state-dir', h.stateDir]);
    if (r.code !== 0) throw new Error(`audit exited ${r.code}: ${r.stderr}`);
    return (JSON.parse(r.stdout) as { entries: { event: string; baseline: string | null; version: number | null; trigger: string | null; detail: string | null }[] }).entries.filter((e) => e.event === event);
  };
  const policiesOf = async (h: Host): Promise<string[]> =>
    (await api<{ policies: { name: string; version: number }[] }>('GET', `/api/v1/agents/${h.id}`)).policies.map((p) => `${p.name}@${p.version}`);
  const rollout = (id: number): Promise<Rollout> => api<Rollout>('GET', `/api/v1/rollouts/${id}`);
  const until = async (id: number, pred: (r: Rollout) => boolean, what: string, timeoutMs = 60_000): Promise<Rollout> => {
    let r: Rollout | undefined;
    await waitFor(async () => pred((r = await rollout(id))), timeoutMs, `${what} (last: ${r?.state ?? '?'} ${r?.reason ?? ''})`);
    if (!r) throw new Error('no rollout');
    return r;
  };
  let token = '';

  before(async () => {
    await cleanupLeftoverNetns();
    mkdirSync(MANAGED, { recursive: true });
    await start();
    token = (await api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h', allowLabels: ['role=app'] })).token;
    for (let i = 0; i < HOSTS; i++) {
      const ns = await Netns.create(`p${i + 1}`, { veth: { hostAddress: `${SUBNET}.${4 * i + 1}/30`, nsAddress: `${SUBNET}.${4 * i + 2}/30` } });
      const root = path.join(tmp.dir, `h${i + 1}`, 'root');
      const stateDir = path.join(tmp.dir, `h${i + 1}`, 'state');
      mkdirSync(root, { recursive: true });
      mkdirSync(stateDir, { recursive: true });
      // A file the coming baseline calls high-risk, not as it wants it yet: its first pass escalates it.
      writeFileSync(path.join(root, 'secret.conf'), `local to h${i + 1}\n`, { mode: 0o600 });
      const host: Host = { name: `h${i + 1}`, ns, root, stateDir, agent: undefined, id: '' };
      startAgent(host, token);
      hosts.push(host);
    }
    await waitFor(async () => (await api<{ connected: boolean }[]>('GET', '/api/v1/agents')).filter((a) => a.connected).length === HOSTS, 60_000, 'three agents connected');
    for (const host of hosts) {
      const file = path.join(host.stateDir, 'controller.json');
      await waitFor(() => existsSync(file), 10_000, `${host.name} enrolled`);
      host.id = (JSON.parse(readFileSync(file, 'utf8')) as { agentId: string }).agentId;
    }
  });

  after(async () => {
    for (const host of hosts) await host.agent?.stop();
    await ctl?.stop().catch(() => undefined);
    for (const host of hosts) await host.ns.destroy();
    tmp.cleanup();
  });

  it('a policy pushed through the controller reaches every host signed and held; an invalid version is refused, located, and the last good one stays', async () => {
    const v1 = await api<{ version: number }>('POST', '/api/v1/policies', { yaml: POLICY('file:/etc/ssh/*'), file: 'governance.yaml' });
    const r = await api<Rollout>('POST', '/api/v1/rollouts', { policy: 'governance', version: v1.version, strategy: { waves: [{ hosts: 1 }, 100], gate: { soakSeconds: 0, ackTimeoutSeconds: 60 } } });
    const done = await until(r.id, (x) => x.state === 'completed', 'the policy rolled out');
    assert.ok(done.hosts.every((h) => h.status === 'converged'), JSON.stringify(done.hosts));
    for (const h of hosts) {
      assert.deepEqual(await policiesOf(h), [`governance@${v1.version}`], `${h.name} holds it`);
      const activated = await audit(h, 'policy_activated');
      assert.deepEqual(activated.map((e) => [e.baseline, e.version, e.trigger]), [['governance', v1.version, 'controller']]);
      assert.match(activated[0]?.detail ?? '', /governance v1 \(2 rules, 1 windows\)/);
    }
    // An invalid version never gets a number, let alone a host.
    const bad = await call('POST', '/api/v1/policies', { yaml: POLICY('file:/etc/*').replace('0 2 * * 0', '0 25 * * 0'), file: 'governance.yaml' });
    assert.equal(bad.status, 422);
    assert.match(bad.text(), /governance\.yaml.*"line": 10,\s*"column": 13.*spec\.maintenanceWindows\[0\]\.cron/s);
    assert.equal((await api<{ latest: number }[]>('GET', '/api/v1/policies'))[0]?.latest, v1.version);
    for (const h of hosts) assert.deepEqual(await policiesOf(h), [`governance@${v1.version}`], `${h.name} keeps the last good one`);
  });

  it('an agent keeps its signed policy through a controller stop and its own restart without network, and reports it when the controller is back', async () => {
    const h = hosts[0];
    assert.ok(h);
    await ctl.stop();
    await h.agent?.stop();
    const before = (await audit(h, 'policy_activated')).length;
    startAgent(h, token);
    await h.agent?.ready(30_000);
    // Offline: the signed policy comes from the agent's own cache.
    await waitFor(async () => (await audit(h, 'policy_activated')).length > before, 20_000, 'the cached policy activated at start');
    const again = (await audit(h, 'policy_activated')).at(-1);
    assert.deepEqual([again?.baseline, again?.version, again?.trigger], ['governance', 1, 'startup']);
    assert.deepEqual(await audit(h, 'policy_rejected'), [], 'nothing refused');
    await start();
    await waitFor(async () => (await api<{ id: string; connected: boolean }[]>('GET', '/api/v1/agents')).filter((a) => a.connected).length === HOSTS, 60_000, 'all back');
    // What it reports holding (hello and acknowledgement) is the signed version; nothing was activated again.
    await waitFor(async () => (await policiesOf(h)).join() === 'governance@1', 20_000, 'reported');
    assert.equal((await audit(h, 'policy_activated')).length, before + 1);
  });

  it('a version whose first pass escalates a high-risk file waits for the operator at each wave; approvals let it go on to completion', async () => {
    const v = await api<{ version: number }>('POST', '/api/v1/baselines', { yaml: GUARDED, file: 'guarded.yaml' });
    const started = await api<Rollout>('POST', '/api/v1/rollouts', { baseline: 'guarded', version: v.version, strategy: { waves: [{ hosts: 1 }, 100], gate: { maxFailedHosts: 0, soakSeconds: 0, ackTimeoutSeconds: 60 } } });
    const byWave = (w: number): Host[] => hosts.filter((h) => started.hosts.find((x) => x.agentId === h.id)?.wave === w);
    for (const wave of [1, 2]) {
      const waiting = await until(started.id, (r) => r.state === 'paused' && r.currentWave === wave && r.escalations.filter((e) => e.status === 'open').length === byWave(wave).length, `wave ${wave} waits for decisions`);
      assert.equal(waiting.pausedFor, 'escalations');
      assert.match(waiting.reason ?? '', /waiting for decisions on escalation/);
      for (const h of byWave(wave)) {
        assert.equal(waiting.hosts.find((x) => x.agentId === h.id)?.status, 'escalated');
        assert.equal(read(h, 'secret.conf'), `local to ${h.name}\n`, `${h.name}: escalated, not repaired`);
      }
      for (const h of byWave(wave + 1)) assert.equal(read(h, 'secret.conf'), `local to ${h.name}\n`, `${h.name} not reached yet`);
      for (const e of waiting.escalations.filter((x) => x.status === 'open')) {
        assert.equal(e.resource, `file:${MANAGED}/secret.conf`);
        await api('POST', `/api/v1/escalations/${e.id}/approve`, { by: 'e2e' });
      }
      for (const h of byWave(wave)) await waitFor(() => read(h, 'secret.conf') === 'managed\n', 30_000, `${h.name} repaired once approved`);
    }
    const done = await until(started.id, (r) => r.state === 'completed', 'completed');
    assert.ok(done.hosts.every((h) => h.status === 'converged'), JSON.stringify(done.hosts));
    const kinds = done.steps.map((s) => `${s.kind}${s.by ? ` ${s.by}` : ''}`).filter((k) => k.startsWith('rollout_'));
    assert.deepEqual(kinds, ['rollout_started', 'rollout_awaiting_decisions', 'rollout_resumed decisions', 'rollout_awaiting_decisions', 'rollout_resumed decisions', 'rollout_completed']);
    for (const h of hosts) assert.equal(read(h, 'secret.conf'), 'managed\n');
  });
});
