// A controller and two test hosts (network namespaces, each with its own view of /srv/hs-tune) build a history by real
// drifts and real operator decisions: approvals the agents carry out, rejections they keep as exceptions, a critical file
// approved every time, a file the hosts repair by themselves. From it the controller proposes what it should (and not what
// it must never), its backtests match a count of the stored events, bounded autotuning applies only what its bounds allow
// and announces it, a revert restores the previous behaviour, and an operator's accept puts a rule in force. Each change
// is a signed version of the homeostat-tuning policy that a rollout puts on both hosts, each agent holds it and decides by
// it: motd's drift repaired unasked while the autotuned rule is in force, escalated again once it is reverted.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { startController, type RunningController } from '../../controller/server.js';
import { runAgent, startAgentDaemon, tempDir, waitFor, type DaemonProcess } from '../helpers/agent.js';
import { Netns, cleanupLeftoverNetns } from '../helpers/netns.js';

const ADMIN = 'e2e-tuning-admin';
const MANAGED = '/srv/hs-tune';
const SUBNET = `10.83.${1 + Math.floor(Math.random() * 250)}`;
const R = (file: string): string => `file:${MANAGED}/${file}`;
const DESIRED: Record<string, string> = { motd: 'welcome\n', issue: 'issue\n', shadow: 'shadow\n', 'app.conf': 'conf\n' };

const BASELINE = `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: tune
spec:
  resources:
    - file: ${MANAGED}/motd
      content: "welcome\\n"
      risk: high
    - file: ${MANAGED}/issue
      content: "issue\\n"
      risk: high
    - file: ${MANAGED}/shadow
      content: "shadow\\n"
      risk: critical
    - file: ${MANAGED}/app.conf
      content: "conf\\n"
`;

interface Host {
  name: string;
  ns: Netns;
  root: string;
  stateDir: string;
  agent: DaemonProcess | undefined;
  id: string;
}

interface Ev {
  agentId: string;
  seq: number;
  resource: string | null;
  event: string;
  trigger: string | null;
}

interface Proposal {
  id: number;
  kind: string;
  state: string;
  target: { resource: string };
  rationale: string;
  decidedBy: string | null;
  backtest: Backtest;
  autotune: { eligible: boolean; reasons: string[] };
}

interface Rollout {
  id: number;
  policy?: string;
  version: number;
  state: string;
  reason: string | null;
  hosts: { agentId: string; status: string }[];
  steps: { kind: string; by?: string | null }[];
}

interface Backtest {
  drifts: number;
  escalationsBefore: number;
  escalationsAfter: number;
  autoRepairsBefore: number;
  autoRepairsAfter: number;
  overriddenRejections: number;
  criticalAutoRepaired: number;
  transitions: Record<string, number>;
  affected: number;
}

describe('e2e: tuning from a fleet history of real drifts and decisions', function () {
  this.timeout(240_000);
  const tmp = tempDir('hs-e2e-tune-');
  const hosts: Host[] = [];
  let ctl: RunningController;
  let hook: Server;
  const heard: { event: string; proposal: { id: number }; by: string }[] = [];

  const api = async <T>(method: string, url: string, body?: unknown): Promise<T> => {
    const r = await ctl.core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}` }, ...(body === undefined ? {} : { body: body as object }) });
    if (r.status >= 400) throw new Error(`${method} ${url}: ${r.status} ${r.text()}`);
    return r.json<T>();
  };
  const read = (h: Host, file: string): string | undefined => {
    try {
      return readFileSync(path.join(h.root, file), 'utf8');
    } catch {
      return undefined;
    }
  };
  const h = (i: number): Host => hosts[i] as Host;
  /** Replaces a file the way editors and package managers do (write aside, rename over): one change, one drift. */
  const tamper = (host: Host, file: string, content: string): void => {
    const aside = path.join(host.root, `.${file}.new`);
    writeFileSync(aside, content);
    renameSync(aside, path.join(host.root, file));
  };

  /** Tampers with a file on a host and waits for the escalation it opens at the controller. */
  const escalation = async (host: Host, file: string, content: string): Promise<number> => {
    tamper(host, file, content);
    let id: number | undefined;
    await waitFor(
      async () => (id = (await api<{ id: number; resource: string }[]>('GET', `/api/v1/escalations?status=open&agent=${host.id}`)).find((e) => e.resource === R(file))?.id) !== undefined,
      20_000,
      `escalation of ${file} on ${host.name}`,
    );
    return id as number;
  };
  const approved = async (host: Host, file: string, content: string): Promise<void> => {
    const id = await escalation(host, file, content);
    assert.equal(read(host, file), content, 'left alone until an operator decides');
    await api('POST', `/api/v1/escalations/${id}/approve`, { by: 'e2e-operator' });
    await waitFor(() => read(host, file) === DESIRED[file], 20_000, `approved repair of ${file} on ${host.name}`);
    await waitFor(async () => (await api<{ outcome: string }>('GET', `/api/v1/escalations/${id}`)).outcome === 'done', 20_000, 'approval acknowledged');
  };
  const rejected = async (host: Host, file: string, content: string): Promise<void> => {
    const id = await escalation(host, file, content);
    await api('POST', `/api/v1/escalations/${id}/reject`, { by: 'e2e-operator', reason: 'vendor setting', expiresIn: '1h' });
    await waitFor(async () => (await api<{ outcome: string }>('GET', `/api/v1/escalations/${id}`)).outcome === 'done', 20_000, 'rejection acknowledged');
  };
  const repairedByHost = async (host: Host, file: string, content: string): Promise<void> => {
    tamper(host, file, content);
    await waitFor(() => read(host, file) === DESIRED[file], 20_000, `repair of ${file} on ${host.name}`);
  };
  /** The stored YAML of a version of the tuning policy. */
  const tuningYaml = async (version: number): Promise<string> => (await api<{ yaml: string }>('GET', `/api/v1/policies/homeostat-tuning/versions/${version}`)).yaml;
  /**
   * The tuning policy's latest version, once its rollout (the latest of that policy) completed on both hosts, and each agent
   * holds it: reported to the controller, and activated from the controller in the agent's own audit log.
   */
  const distributed = async (by: string): Promise<{ version: number; yaml: string }> => {
    const latest = (await api<{ name: string; latest: number }[]>('GET', '/api/v1/policies')).find((p) => p.name === 'homeostat-tuning')?.latest ?? 0;
    const rollout = (await api<Rollout[]>('GET', '/api/v1/rollouts')).filter((r) => r.policy === 'homeostat-tuning').at(-1);
    assert.equal(rollout?.version, latest, 'the latest version is rolled out');
    let r: Rollout | undefined;
    await waitFor(async () => (r = await api<Rollout>('GET', `/api/v1/rollouts/${rollout?.id ?? 0}`)).state !== 'running', 60_000, `rollout of homeostat-tuning v${latest}`);
    assert.equal(r?.state, 'completed', r?.reason ?? '');
    assert.deepEqual(r?.hosts.map((x) => x.status), ['converged', 'converged']);
    assert.equal(r?.steps.find((x) => x.kind === 'rollout_started')?.by, by);
    for (const host of hosts) {
      const held = (await api<{ policies: { name: string; version: number }[] }>('GET', `/api/v1/agents/${host.id}`)).policies;
      assert.deepEqual(held.map((p) => `${p.name}@${p.version}`), [`homeostat-tuning@${latest}`], `${host.name} reports holding it`);
      const audit = await runAgent(['audit', '--json', '--state-dir', host.stateDir]);
      assert.equal(audit.code, 0, audit.stderr);
      const { entries } = JSON.parse(audit.stdout) as { entries: { event: string; baseline: string | null; version: number | null; trigger: string | null }[] };
      const activated = entries.filter((e) => e.event === 'policy_activated');
      assert.deepEqual(
        [activated.at(-1)?.baseline, activated.at(-1)?.version, activated.at(-1)?.trigger],
        ['homeostat-tuning', latest, 'controller'],
        `${host.name} activated it from the controller`,
      );
      assert.deepEqual(entries.filter((e) => e.event === 'policy_rejected'), [], `${host.name} refused nothing`);
    }
    return { version: latest, yaml: await tuningYaml(latest) };
  };
  const events = async (): Promise<Ev[]> => {
    const out: Ev[] = [];
    for (const host of hosts) out.push(...(await api<Ev[]>('GET', `/api/v1/events?agent=${host.id}&limit=10000`)));
    return out;
  };

  before(async () => {
    await cleanupLeftoverNetns();
    mkdirSync(MANAGED, { recursive: true });
    hook = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        heard.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as (typeof heard)[number]);
        res.end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    ctl = await startController({ dataDir: path.join(tmp.dir, 'controller'), listen: '0.0.0.0:0', adminToken: ADMIN, gateway: { heartbeatIntervalMs: 1000 } });
    const { token } = await api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h' });
    for (let i = 0; i < 2; i++) {
      const ns = await Netns.create(`t${i + 1}`, { veth: { hostAddress: `${SUBNET}.${4 * i + 1}/30`, nsAddress: `${SUBNET}.${4 * i + 2}/30` } });
      const root = path.join(tmp.dir, `h${i + 1}`, 'root');
      const stateDir = path.join(tmp.dir, `h${i + 1}`, 'state');
      mkdirSync(root, { recursive: true });
      mkdirSync(stateDir, { recursive: true });
      // Compliant from the start: the only drifts are the ones this test makes.
      for (const [file, content] of Object.entries(DESIRED)) writeFileSync(path.join(root, file), content);
      const host: Host = { name: `h${i + 1}`, ns, root, stateDir, agent: undefined, id: '' };
      host.agent = startAgentDaemon(['--state-dir', stateDir, '--controller', `wss://${ns.hostIp ?? ''}:${ctl.port}`, '--token', token], {
        prefix: ns.prefix({ binds: [{ source: root, target: MANAGED }] }),
      });
      hosts.push(host);
    }
    await waitFor(async () => (await api<{ connected: boolean }[]>('GET', '/api/v1/agents')).filter((a) => a.connected).length === 2, 30_000, 'two agents connected');
    for (const host of hosts) await waitFor(() => existsSync(path.join(host.stateDir, 'controller.json')), 10_000, `${host.name} enrolled`);
    for (const host of hosts) host.id = (JSON.parse(readFileSync(path.join(host.stateDir, 'controller.json'), 'utf8')) as { agentId: string }).agentId;
    const pushed = await api<{ version: number }>('POST', '/api/v1/baselines', { yaml: BASELINE, file: 'tune.yaml' });
    const rollout = await api<{ id: number }>('POST', '/api/v1/rollouts', { baseline: 'tune', version: pushed.version, strategy: 'all-at-once' });
    await waitFor(async () => (await api<{ state: string }>('GET', `/api/v1/rollouts/${rollout.id}`)).state === 'completed', 30_000, 'rollout acknowledged');
  });

  after(async () => {
    for (const host of hosts) await host.agent?.stop();
    await ctl?.stop().catch(() => undefined);
    for (const host of hosts) await host.ns.destroy();
    hook?.close();
    tmp.cleanup();
  });

  it('builds a history of real drifts and decisions at the controller', async () => {
    // motd: escalated and approved six times. issue: rejected three times. shadow (critical): approved twice. app.conf:
    // repaired by the hosts themselves twice.
    for (let i = 0; i < 3; i++) {
      await approved(h(0), 'motd', `defaced ${i}\n`);
      await approved(h(1), 'motd', `defaced ${i}\n`);
    }
    await rejected(h(0), 'issue', 'vendor 1\n');
    await rejected(h(1), 'issue', 'vendor 1\n');
    await rejected(h(0), 'issue', 'vendor 2\n');
    await approved(h(0), 'shadow', 'root::0:0\n');
    await approved(h(0), 'shadow', 'root::1:0\n');
    await repairedByHost(h(1), 'app.conf', 'tampered 1\n');
    await repairedByHost(h(1), 'app.conf', 'tampered 2\n');
    await waitFor(async () => (await events()).filter((e) => e.event === 'repaired').length === 10, 20_000, 'every repair recorded at the controller');
    const all = await events();
    const count = (event: string, resource?: string): number => all.filter((e) => e.event === event && (resource === undefined || e.resource === R(resource))).length;
    assert.equal(count('approved'), 8);
    assert.equal(count('rejected'), 3);
    assert.equal(count('escalated'), 11);
  });

  it('proposes auto-repair of motd and an exception for issue, and never auto-repair of the rejected or the critical file', async () => {
    const list = await api<Proposal[]>('POST', '/api/v1/proposals/refresh', {});
    assert.deepEqual(list.map((p) => [p.kind, p.target.resource]).sort(), [['auto-repair', R('motd')], ['exception', R('issue')]]);
    const motd = list.find((p) => p.kind === 'auto-repair') as Proposal;
    assert.match(motd.rationale, new RegExp(`^content drift on ${R('motd')} approved 6 of 6 times on 2 hosts, median decision \\d+ s; repair it without asking$`));
  });

  it('backtests match a count of the events the controller holds', async () => {
    const all = await events();
    // A drift is a drift_detected record, except the second sighting of an approved drift, which the agent records
    // (trigger controller) just before the approved repair.
    const drifts = all.filter((e) => e.event === 'drift_detected' && e.trigger !== 'controller');
    const escalated = all.filter((e) => e.event === 'escalated');
    const selfRepaired = all.filter((e) => e.event === 'repaired' && e.trigger !== 'controller');
    const motdEscalations = escalated.filter((e) => e.resource === R('motd')).length;
    assert.deepEqual([drifts.length, escalated.length, selfRepaired.length, motdEscalations], [13, 11, 2, 6]);
    const motd = (await api<Proposal[]>('GET', '/api/v1/proposals?state=open')).find((p) => p.kind === 'auto-repair') as Proposal;
    const b = motd.backtest;
    assert.deepEqual(
      [b.drifts, b.escalationsBefore, b.escalationsAfter, b.autoRepairsBefore, b.autoRepairsAfter, b.overriddenRejections, b.criticalAutoRepaired],
      [drifts.length, escalated.length, escalated.length - motdEscalations, selfRepaired.length, selfRepaired.length + motdEscalations, 0, 0],
    );
    const everything = 'apiVersion: homeostat/v1\nkind: Policy\nmetadata:\n  name: everything\nspec:\n  rules:\n    - action: repair\n';
    const all2 = await api<Backtest>('POST', '/api/v1/backtest', { policy: everything, since: '1d' });
    assert.deepEqual([all2.escalationsAfter, all2.autoRepairsAfter, all2.overriddenRejections, all2.criticalAutoRepaired], [0, 13, 3, 2]);
  });

  it('bounded autotuning applies only what its bounds allow, by autotune, and announces it', async () => {
    const { port } = hook.address() as AddressInfo;
    // Tuning's versions roll out in two waves here, without the default minute of soak after each.
    const rolloutStrategy = { waves: [{ hosts: 1 }, 100], gate: { soakSeconds: 0, ackTimeoutSeconds: 60 } };
    await api('PUT', '/api/v1/settings/autotune', { mode: 'bounded', minConfidence: 0.6, webhook: `http://127.0.0.1:${port}/tuning`, rolloutStrategy });
    const list = await api<Proposal[]>('POST', '/api/v1/proposals/refresh', {});
    const motd = list.find((p) => p.kind === 'auto-repair');
    const issue = list.find((p) => p.kind === 'exception');
    assert.deepEqual([motd?.state, motd?.decidedBy], ['accepted', 'autotune']);
    assert.equal(issue?.state, 'open', 'granted three times, but its confidence interval starts below 0.6');
    assert.ok(issue?.autotune.reasons.some((r) => r.startsWith('its confidence interval starts at 0.473')));
    assert.deepEqual(heard.map((x) => [x.event, x.proposal.id, x.by]), [['autotune_applied', motd?.id, 'autotune']]);
    const inForce = await distributed('autotune');
    assert.equal(inForce.version, 1);
    const replay = await api<Backtest>('POST', '/api/v1/backtest', { policy: inForce.yaml, since: '1d' });
    assert.deepEqual(replay.transitions, { 'escalate->repair': 6 });

    // In force on the hosts: motd's drift (risk high) is now repaired by the agent itself, by the tuning rule, unasked.
    tamper(h(0), 'motd', 'defaced once more\n');
    await waitFor(() => read(h(0), 'motd') === DESIRED.motd, 20_000, 'motd repaired by the tuning rule');
    const audit = await runAgent(['audit', '--json', '--resource', R('motd'), '--state-dir', h(0).stateDir]);
    const last = (JSON.parse(audit.stdout) as { entries: { event: string; decision?: { action: string; rule: { document?: string; version?: number } } }[] }).entries.slice(-2);
    assert.deepEqual(
      last.map((e) => [e.event, e.decision?.action, e.decision?.rule.document, e.decision?.rule.version]),
      [
        ['drift_detected', 'repair', 'homeostat-tuning', 1],
        ['repaired', 'repair', 'homeostat-tuning', 1],
      ],
    );
    assert.deepEqual(await api<unknown[]>('GET', `/api/v1/escalations?status=open&agent=${h(0).id}`), [], 'nothing left for a human');
  });

  it('a revert restores the previous behaviour, and an operator accept puts the exception in force', async () => {
    const motd = (await api<Proposal[]>('GET', '/api/v1/proposals?state=accepted'))[0] as Proposal;
    await api('POST', `/api/v1/proposals/${motd.id}/revert`, { by: 'e2e-operator', reason: 'not yet' });
    assert.deepEqual(heard.map((x) => x.event), ['autotune_applied', 'autotune_reverted']);
    const reverted = await distributed('e2e-operator');
    assert.equal(reverted.version, 2);
    assert.ok(!reverted.yaml.includes('(auto-repair)'), 'without the rule');
    // Decided as the hosts did, but for the one drift the rule repaired on its own while it was in force: escalated again.
    const back = await api<Backtest>('POST', '/api/v1/backtest', { policy: reverted.yaml, since: '1d' });
    assert.deepEqual([back.affected, back.transitions], [1, { 'repair->escalate': 1 }]);
    const issue = (await api<Proposal[]>('GET', '/api/v1/proposals?state=open')).find((p) => p.kind === 'exception') as Proposal;
    await api('POST', `/api/v1/proposals/${issue.id}/accept`, { by: 'e2e-operator' });
    const now = await distributed('e2e-operator');
    assert.equal(now.version, 3);
    assert.deepEqual((await api<Backtest>('POST', '/api/v1/backtest', { policy: now.yaml, since: '1d' })).transitions, { 'escalate->monitor': 3, 'repair->escalate': 1 });
    assert.equal(heard.length, 2, 'an operator\'s own change is not sent to the webhook');

    // What the reverted rule decided is back: motd's drift waits for a human again.
    await approved(h(1), 'motd', 'defaced after the revert\n');
  });
});
