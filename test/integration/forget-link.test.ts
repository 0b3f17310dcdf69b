// A controller baseline forgotten on the host, with a real controller and a real agent daemon: the controller stops
// listing it on that agent at once (the daemon's link reports what it holds now), and sends it again visibly later (a
// new version, or the assignment after a reconnect), which the agent takes, recorded as `baseline_activated`. Forgotten
// on the cache while no daemon runs, it is neither enforced nor reported as held at the next start; the replay guard
// keeps its last accepted version.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { startController, type RunningController } from '../../controller/server.js';
import { AgentStore } from '../../agent/store/store.js';
import { decodeBaselineDoc } from '../../proto/codec.js';
import { runAgent, startAgentDaemon, tempDir, waitFor, type DaemonProcess } from '../helpers/agent.js';
import { cleanEnv, runCtl } from '../helpers/ctl.js';

const ADMIN = 'forget-link-admin';
// Audit rules of this run's daemons under their own key: another agent on this machine keeps its own.
const ENV = { HOMEOSTAT_AUDIT_KEY: `hs-fl${process.pid}` };
const AS_ALICE = { env: { ...ENV, SUDO_USER: 'alice' } };

interface Audit {
  seq: number;
  event: string;
  baseline: string | null;
  version: number | null;
  trigger: string | null;
  detail: string | null;
}

describe('forgetting a controller baseline on the host: the controller is told, and sends it again visibly', function () {
  this.timeout(120_000);
  const tmp = tempDir('hs-forget-link-');
  const dataDir = path.join(tmp.dir, 'controller');
  const stateDir = path.join(tmp.dir, 'agent');
  const managed = path.join(tmp.dir, 'managed');
  const motd = path.join(managed, 'motd');
  let ctl: RunningController | undefined;
  let port = 0;
  let daemon: DaemonProcess | undefined;
  let agentId = '';

  const web = (text: string): string =>
    `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: { role: web }\n  resources:\n    - file: ${motd}\n      content: "${text}\\n"\n`;
  const api = async <T>(method: string, url: string, body?: unknown): Promise<T> => {
    if (!ctl) throw new Error('controller not running');
    const r = await ctl.core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}` }, ...(body === undefined ? {} : { body: body as object }) });
    if (r.status >= 400) throw new Error(`${method} ${url}: ${r.status} ${r.text()}`);
    return r.json<T>();
  };
  const startCtl = async (): Promise<void> => {
    ctl = await startController({ dataDir, listen: `127.0.0.1:${port}`, adminToken: ADMIN, gateway: { heartbeatIntervalMs: 1000, pingIntervalMs: 1000 } });
    port = ctl.port;
  };
  const common = (): string[] => ['--state-dir', stateDir, '--config', '/dev/null'];
  const startDaemon = (extra: string[] = []): DaemonProcess => (daemon = startAgentDaemon([...common(), '--controller', `wss://127.0.0.1:${port}`, '--labels', 'role=web', ...extra], { env: ENV }));
  const listed = async (): Promise<string[]> => (await api<{ baselines: { name: string; version: number }[] }>('GET', `/api/v1/agents/${agentId}`)).baselines.map((b) => `${b.name}@${b.version}`);
  const audit = async (event: string): Promise<Audit[]> => {
    const r = await runAgent(['audit', '--json', ...common()]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { entries: Audit[] }).entries.filter((e) => e.event === event && e.baseline === 'web');
  };
  const active = async (): Promise<string[]> => {
    const r = await runAgent(['status', '--json', ...common()]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { baselines: { name: string; version: number; origin: string }[] }).baselines.map((b) => `${b.name}@${b.version} ${b.origin}`);
  };
  const content = (): string | undefined => {
    try {
      return readFileSync(motd, 'utf8');
    } catch {
      return undefined;
    }
  };
  const rollOut = async (text: string): Promise<number> => {
    const { version } = await api<{ version: number }>('POST', '/api/v1/baselines', { yaml: web(text), file: 'web.yaml' });
    const r = await api<{ id: number }>('POST', '/api/v1/rollouts', { baseline: 'web', version, strategy: 'all-at-once' });
    await waitFor(async () => (await api<{ state: string }>('GET', `/api/v1/rollouts/${r.id}`)).state === 'completed', 30_000, `web v${version} rolled out`);
    return version;
  };
  const withLog = async (p: Promise<void>): Promise<void> => p.catch((err: unknown) => Promise.reject(new Error(`${String(err)}\nagent log:\n${daemon?.stderr ?? ''}`)));

  before(async () => {
    mkdirSync(managed, { recursive: true });
    await startCtl();
    const { token } = await api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h', allowLabels: ['role=web'] });
    startDaemon(['--token', token]);
    await withLog(waitFor(async () => (await api<{ id: string; connected: boolean }[]>('GET', '/api/v1/agents')).some((a) => a.connected), 30_000, 'agent connected'));
    const creds = path.join(stateDir, 'controller.json');
    await withLog(waitFor(() => existsSync(creds), 10_000, 'enrollment saved'));
    agentId = (JSON.parse(readFileSync(creds, 'utf8')) as { agentId: string }).agentId;
  });
  after(async () => {
    await daemon?.stop();
    await ctl?.stop();
    tmp.cleanup();
  });

  it('with the daemon running: the controller stops listing it at once; a new version is taken again as baseline_activated', async () => {
    await rollOut('web v1');
    await withLog(waitFor(() => content() === 'web v1\n', 20_000, 'web v1 enforced'));
    assert.deepEqual(await listed(), ['web@1']);

    const forget = await runAgent(['forget', 'web', '--source', 'controller', ...common()], AS_ALICE);
    assert.equal(forget.code, 0, forget.stderr);
    assert.match(forget.stdout, /^web forgotten by alice from the controller's baselines: no longer enforced; cached version\(s\) 1 dropped$/m);
    assert.match(forget.stdout, /^the controller learns web is no longer held here .* sends it again with its next assignment that changes anything or at the next reconnection/m);
    assert.match(daemon?.stderr ?? '', /"op":"forget","by":"alice"[^\n]*"local control request"/, 'the daemon carried it out');
    await withLog(waitFor(async () => (await listed()).length === 0, 10_000, 'the controller no longer listing web on this agent'));
    assert.match(daemon?.stderr ?? '', /"baseline":"web","toldController":true[^\n]*"forgotten controller baseline no longer held"/);
    const shown = await runCtl(['--server', ctl?.url ?? '', '--token', ADMIN, '--ca', path.join(dataDir, 'tls.crt'), 'agents', 'show', agentId], cleanEnv({ HOMEOSTAT_CTL_CONFIG: path.join(tmp.dir, 'ctl.yaml') }));
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^baselines +none acknowledged$/m);
    const [forgotten, ...more] = await audit('baseline_forgotten');
    assert.equal(more.length, 0);
    assert.equal(forgotten?.version, 1);
    assert.match(forgotten?.detail ?? '', /^web v1 \(controller\) forgotten by alice on the host: no longer enforced, cached version\(s\) 1 dropped$/);
    assert.deepEqual(await active(), [], 'not enforced here any more');

    // The controller's next assignment sends it again, and the agent takes it in plain sight.
    const v2 = await rollOut('web v2');
    await withLog(waitFor(() => content() === 'web v2\n', 20_000, 'web v2 enforced'));
    const again = (await audit('baseline_activated')).filter((e) => e.seq > (forgotten?.seq ?? 0));
    assert.deepEqual(again.map((e) => [e.version, e.trigger]), [[v2, 'controller']]);
    assert.deepEqual(await listed(), [`web@${v2}`]);
    assert.deepEqual(await active(), [`web@${v2} controller`]);
  });

  it('forgotten on the cache with no daemon: not enforced nor held at the next start; the reconnect sends it again, taken as baseline_activated', async () => {
    const version = await rollOut('web v3');
    await withLog(waitFor(() => content() === 'web v3\n', 20_000, `web v${version} enforced`));
    const running = daemon;
    daemon = undefined;
    await running?.stop();
    const forget = await runAgent(['forget', 'web', '--source', 'controller', ...common()], AS_ALICE);
    assert.equal(forget.code, 0, forget.stderr);
    const forgotten = (await audit('baseline_forgotten')).at(-1);
    assert.equal(forgotten?.version, version);

    // The link's cached copy is gone; its replay guard still remembers the version (nothing older may come back).
    const store = AgentStore.open(stateDir, { readonly: true });
    try {
      const cached = (JSON.parse(store.getMeta('link.signedBaselines') ?? '[]') as { payload: string }[]).map((r) => decodeBaselineDoc(Buffer.from(r.payload, 'base64')).name);
      assert.deepEqual(cached, []);
      const prior = (JSON.parse(store.getMeta('link.priorByName') ?? '{}') as Record<string, { version: number; removedAt: number | null }>).web;
      assert.deepEqual([prior?.version, prior?.removedAt], [version, null]);
    } finally {
      store.close();
    }

    // Started while the controller is away: nothing of web comes back from the cache.
    await ctl?.stop();
    ctl = undefined;
    const d = startDaemon();
    await d.ready();
    const ready = d.stderr.split('\n').find((l) => l.includes('"agent ready"')) ?? '';
    assert.match(ready, /"baselines":\[\]/, ready);
    assert.deepEqual(await active(), []);

    // The controller back: the assignment of the reconnect sends web again, and the agent takes it visibly.
    await startCtl();
    await withLog(waitFor(async () => (await audit('baseline_activated')).some((e) => e.seq > (forgotten?.seq ?? 0)), 30_000, 'web activated again after the reconnect'));
    const again = (await audit('baseline_activated')).filter((e) => e.seq > (forgotten?.seq ?? 0));
    assert.deepEqual(again.map((e) => [e.version, e.trigger]), [[version, 'controller']]);
    await withLog(waitFor(async () => (await listed()).join() === `web@${version}`, 10_000, 'the controller listing web again'));
    assert.deepEqual(await active(), [`web@${version} controller`]);
  });
});
