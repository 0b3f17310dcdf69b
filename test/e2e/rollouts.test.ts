// Staged rollouts on a fleet of five test hosts (network namespaces, each with its own view of /srv/hs-roll): a good
// version through three waves with a canary first, a plan that lists the right changes on the right hosts and changes
// nothing, a version failing on its canary rolled back after the first wave, pause and resume, and a host cut off during
// the rollout that keeps enforcing its cached version and catches up when its link comes back.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startController, type RunningController } from '../../controller/server.js';
import { startAgentDaemon, tempDir, waitFor, type DaemonProcess } from '../helpers/agent.js';
import { Netns, cleanupLeftoverNetns } from '../helpers/netns.js';

const ADMIN = 'e2e-rollouts';
const MANAGED = '/srv/hs-roll';
const SUBNET = `10.83.${1 + Math.floor(Math.random() * 250)}`;
const HOSTS = 5;

interface Host {
  name: string;
  ns: Netns;
  root: string;
  stateDir: string;
  agent: DaemonProcess | undefined;
  id: string;
}

interface HostRow {
  agentId: string;
  wave: number;
  status: string;
  reason: string | null;
  rolledBack: boolean;
  updatedAt: number;
}

interface Rollout {
  id: number;
  state: string;
  currentWave: number;
  waveCount: number;
  reason: string | null;
  hosts: HostRow[];
  steps: { kind: string; wave?: number; time: number }[];
}

const baseline = (motd: string, extra = ''): string => `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: app
spec:
  selector:
    matchLabels: { role: app }
  resources:
    - file: ${MANAGED}/motd
      content: "${motd}\\n"
      mode: "0644"
${extra}`;

const LEGACY = `    - file: ${MANAGED}/legacy
      content: "old\\n"
`;
const EXTRA = `    - file: ${MANAGED}/extra
      content: "x\\n"
`;
// Refused on every host by its validate command: the canary is the only one that ever gets it.
const GUARDED = `    - file: ${MANAGED}/guarded
      content: "y\\n"
      validate: "grep -q never-there %s"
`;

describe('e2e: staged rollouts on five hosts', function () {
  this.timeout(180_000);
  const tmp = tempDir('hs-e2e-roll-');
  const hosts: Host[] = [];
  let ctl: RunningController;
  const versions: Record<string, number> = {};

  const api = async <T>(method: string, url: string, body?: unknown): Promise<T> => {
    const r = await ctl.core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}` }, ...(body === undefined ? {} : { body: body as object }) });
    if (r.status >= 400) throw new Error(`${method} ${url}: ${r.status} ${r.text()}`);
    return r.json<T>();
  };
  const status = async (method: string, url: string, body?: unknown): Promise<number> =>
    (await ctl.core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}` }, ...(body === undefined ? {} : { body: body as object }) })).status;
  const read = (h: Host, file: string): string | undefined => {
    try {
      return readFileSync(path.join(h.root, file), 'utf8');
    } catch {
      return undefined;
    }
  };
  const h = (i: number): Host => {
    const x = hosts[i];
    if (!x) throw new Error(`no host ${i}`);
    return x;
  };
  const push = async (key: string, yaml: string): Promise<number> => {
    versions[key] = (await api<{ version: number }>('POST', '/api/v1/baselines', { yaml, file: 'app.yaml' })).version;
    return versions[key] ?? 0;
  };
  const rollout = (id: number): Promise<Rollout> => api<Rollout>('GET', `/api/v1/rollouts/${id}`);
  const until = async (id: number, state: string, timeoutMs = 40_000): Promise<Rollout> => {
    let r: Rollout | undefined;
    await waitFor(async () => (r = await rollout(id)).state === state, timeoutMs, `rollout ${id} ${state} (last: ${r?.state ?? '?'} ${r?.reason ?? ''})`);
    if (!r) throw new Error('no rollout');
    return r;
  };
  const enforced = async (host: Host): Promise<number | undefined> =>
    (await api<{ baselines: { name: string; version: number }[] }>('GET', `/api/v1/agents/${host.id}`)).baselines.find((b) => b.name === 'app')?.version;
  const strategy = { waves: [{ hosts: 1 }, 50, 100], gate: { maxFailedHosts: 0, soakSeconds: 1, ackTimeoutSeconds: 30 }, canary: { matchLabels: { canary: 'yes' } } };

  before(async () => {
    await cleanupLeftoverNetns();
    mkdirSync(MANAGED, { recursive: true });
    ctl = await startController({
      dataDir: path.join(tmp.dir, 'controller'),
      listen: `0.0.0.0:0`,
      adminToken: ADMIN,
      gateway: { heartbeatIntervalMs: 1000, pingIntervalMs: 1000, maxMessageBytes: 1024 * 1024 },
    });
    const token = (await api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h', allowLabels: ['role=app', 'canary=yes'] })).token;
    for (let i = 0; i < HOSTS; i++) {
      const ns = await Netns.create(`r${i + 1}`, { veth: { hostAddress: `${SUBNET}.${4 * i + 1}/30`, nsAddress: `${SUBNET}.${4 * i + 2}/30` } });
      const root = path.join(tmp.dir, `h${i + 1}`, 'root');
      const stateDir = path.join(tmp.dir, `h${i + 1}`, 'state');
      mkdirSync(root, { recursive: true });
      mkdirSync(stateDir, { recursive: true });
      const host: Host = { name: `h${i + 1}`, ns, root, stateDir, agent: undefined, id: '' };
      // h1 is the canary; the others are placed by the rollout's hash.
      const labels = i === 0 ? 'role=app,canary=yes' : 'role=app';
      host.agent = startAgentDaemon(
        ['--state-dir', stateDir, '--controller', `wss://${ns.hostIp ?? ''}:${ctl.port}`, '--token', token, '--labels', labels],
        { prefix: ns.prefix({ binds: [{ source: root, target: MANAGED }] }) },
      );
      hosts.push(host);
    }
    await waitFor(async () => (await api<{ connected: boolean }[]>('GET', '/api/v1/agents')).filter((a) => a.connected).length === HOSTS, 40_000, 'five agents connected');
    for (const host of hosts) {
      const file = path.join(host.stateDir, 'controller.json');
      await waitFor(() => existsSync(file), 10_000, `${host.name} enrolled`);
      host.id = (JSON.parse(readFileSync(file, 'utf8')) as { agentId: string }).agentId;
    }
  });

  after(async () => {
    for (const host of hosts) await host.ns.setLink(true).catch(() => undefined);
    for (const host of hosts) await host.agent?.stop();
    await ctl?.stop().catch(() => undefined);
    for (const host of hosts) await host.ns.destroy();
    tmp.cleanup();
  });

  it('a good version goes through three waves, canary first, to every host', async () => {
    await push('v1', baseline('v1', LEGACY));
    const started = await api<Rollout>('POST', '/api/v1/rollouts', { baseline: 'app', version: versions.v1, strategy });
    assert.equal(started.waveCount, 3);
    assert.deepEqual(started.hosts.filter((x) => x.wave === 1).map((x) => x.agentId), [h(0).id], 'the canary alone in the first wave');
    assert.deepEqual([1, 2, 3].map((w) => started.hosts.filter((x) => x.wave === w).length), [1, 2, 2]);
    const done = await until(started.id, 'completed');
    for (const host of hosts) assert.equal(read(host, 'motd'), 'v1\n', `${host.name} converged`);
    assert.ok(done.hosts.every((x) => x.status === 'converged'), JSON.stringify(done.hosts));
    const steps = done.steps.map((s) => `${s.kind}${s.wave === undefined ? '' : ` ${s.wave}`}`);
    assert.deepEqual(steps, ['rollout_started', 'wave_started 1', 'wave_healthy 1', 'wave_started 2', 'wave_healthy 2', 'wave_started 3', 'wave_healthy 3', 'rollout_completed']);
    // Assignment is stable: the same rollout places the same hosts in the same waves when read again.
    assert.deepEqual((await rollout(started.id)).hosts.map((x) => [x.agentId, x.wave]), started.hosts.map((x) => [x.agentId, x.wave]));
  });

  it('a plan lists the right changes on the right hosts and changes nothing', async () => {
    await push('v2', baseline('v2', EXTRA));
    // Two hosts already hold the new file as v2 wants it: nothing to create there.
    for (const i of [1, 2]) writeFileSync(path.join(h(i).root, 'extra'), 'x\n');
    type Plan = {
      id: number;
      summary: string;
      answered: number;
      hosts: { agentId: string; status: string; currentVersion: number; changes: { resource: string; action: string; fields: string[]; diff: string }[] }[];
    };
    const plan = await api<Plan>('POST', '/api/v1/plans', { baseline: 'app', version: versions.v2 });
    assert.equal(plan.answered, HOSTS);
    for (const [i, host] of hosts.entries()) {
      const p = plan.hosts.find((x) => x.agentId === host.id);
      assert.ok(p, host.name);
      assert.equal(p.status, 'planned');
      assert.equal(p.currentVersion, versions.v1);
      const by = new Map(p.changes.map((c) => [c.resource, c]));
      assert.equal(by.get(`file:${MANAGED}/motd`)?.action, 'change');
      assert.match(by.get(`file:${MANAGED}/motd`)?.diff ?? '', /-v1\n\+v2/);
      assert.equal(by.get(`file:${MANAGED}/legacy`)?.action, 'remove');
      assert.equal(by.get(`file:${MANAGED}/extra`)?.action, i === 1 || i === 2 ? undefined : 'create', `${host.name} extra`);
    }
    assert.match(plan.summary, /^5 hosts: /);
    for (const part of ['motd changes on 5', 'extra created on 3', 'legacy removed on 5']) assert.ok(plan.summary.includes(part), `${part} in ${plan.summary}`);
    assert.deepEqual((await api<Plan>('GET', `/api/v1/plans/${plan.id}`)).summary, plan.summary);
    for (const host of hosts) {
      assert.equal(read(host, 'motd'), 'v1\n', 'nothing changed');
      assert.equal(read(host, 'legacy'), 'old\n');
      assert.equal(await enforced(host), versions.v1);
    }
    assert.equal(read(h(0), 'extra'), undefined, 'nothing created');
  });

  it('a version failing on its canary stops after the first wave and the canary returns to the previous version', async () => {
    await push('bad', baseline('bad', GUARDED));
    const started = await api<Rollout>('POST', '/api/v1/rollouts', { baseline: 'app', version: versions.bad, strategy });
    await waitFor(() => read(h(0), 'motd') === 'bad\n', 20_000, 'the canary received the bad version');
    const r = await until(started.id, 'rolled_back');
    assert.equal(r.currentWave, 1, 'stopped after the first wave');
    const canary = r.hosts.find((x) => x.agentId === h(0).id);
    assert.equal(canary?.status, 'failed');
    assert.match(canary?.reason ?? '', /guarded/);
    assert.equal(canary?.rolledBack, true);
    assert.ok(r.hosts.filter((x) => x.wave > 1).every((x) => x.status === 'waiting' && !x.rolledBack));
    assert.match(r.reason ?? '', /wave 1 unhealthy/);
    await waitFor(() => read(h(0), 'motd') === 'v1\n', 20_000, 'the canary back on v1');
    await waitFor(async () => (await enforced(h(0))) === versions.v1, 10_000, 'the canary acknowledges v1 again');
    for (const host of hosts.slice(1)) {
      assert.equal(read(host, 'motd'), 'v1\n', `${host.name} never got the bad version`);
      assert.equal(await enforced(host), versions.v1);
    }
    assert.ok(r.steps.some((s) => s.kind === 'wave_unhealthy'));
  });

  it('pauses and resumes; a host cut off keeps enforcing its cached version and catches up when its link returns', async () => {
    const off = h(4);
    await off.ns.setLink(false);
    await waitFor(async () => (await api<{ id: string; connected: boolean }[]>('GET', '/api/v1/agents')).find((a) => a.id === off.id)?.connected === false, 20_000, 'the controller sees the host gone');
    const started = await api<Rollout>('POST', '/api/v1/rollouts', { baseline: 'app', version: versions.v2, strategy: { ...strategy, gate: { ...strategy.gate, soakSeconds: 2 } } });
    await api('POST', `/api/v1/rollouts/${started.id}/pause`, { by: 'e2e' });
    assert.equal(await status('POST', '/api/v1/rollouts', { baseline: 'app', version: versions.v2 }), 409, 'never superseded by accident');
    // The canary had the version before the pause and converges during it; running, its wave would be healthy once the
    // soak after that ended, and the next wave would start. Paused, nothing may move on past that moment.
    let canary: HostRow | undefined;
    await waitFor(async () => (canary = (await rollout(started.id)).hosts.find((x) => x.agentId === h(0).id))?.status === 'converged', 20_000, 'the canary converged while paused');
    const soakEnd = (canary?.updatedAt ?? 0) + 2000;
    await waitFor(() => Date.now() > soakEnd, 10_000, 'the end of the soak the canary started');
    const paused = await rollout(started.id);
    assert.equal(paused.state, 'paused');
    assert.equal(paused.currentWave, 1, 'no wave started while paused');
    for (const host of hosts.slice(1, 4)) assert.equal(read(host, 'motd'), 'v1\n', `${host.name} waits`);
    // Offline, the host keeps enforcing the version it has cached.
    writeFileSync(path.join(off.root, 'motd'), 'tampered\n');
    await waitFor(() => read(off, 'motd') === 'v1\n', 10_000, 'repaired from the cache while offline');
    await api('POST', `/api/v1/rollouts/${started.id}/resume`, { by: 'e2e' });
    const done = await until(started.id, 'completed');
    assert.equal(done.hosts.find((x) => x.agentId === off.id)?.status, 'offline');
    for (const host of hosts.slice(0, 4)) assert.equal(read(host, 'motd'), 'v2\n', `${host.name} on v2`);
    assert.equal(read(off, 'motd'), 'v1\n', 'the cut-off host still on v1');
    await off.ns.setLink(true);
    await waitFor(() => read(off, 'motd') === 'v2\n', 40_000, 'the host caught up after reconnecting');
    await waitFor(async () => (await enforced(off)) === versions.v2, 10_000, 'and acknowledged v2');
    // The acknowledgement says the version is active, not that each of its resources is written yet.
    await waitFor(() => read(off, 'extra') === 'x\n', 10_000, 'the file v2 adds');
    // The whole pause in the record: no wave judged healthy or started between the pause and the resumption.
    const steps = done.steps.map((s) => `${s.kind}${s.wave === undefined ? '' : ` ${s.wave}`}`);
    const pausedAt = steps.indexOf('rollout_paused');
    const resumedAt = steps.indexOf('rollout_resumed');
    assert.ok(pausedAt >= 0 && pausedAt < resumedAt, steps.join(', '));
    assert.deepEqual(steps.slice(pausedAt + 1, resumedAt), [], `nothing moved while paused: ${steps.join(', ')}`);
    assert.ok(steps.indexOf('wave_healthy 1') > resumedAt, steps.join(', '));
  });
});
