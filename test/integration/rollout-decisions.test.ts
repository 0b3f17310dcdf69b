// Rollouts of baselines and policies against a real controller over real websockets, with agents driven frame by frame:
// an escalation raised by the new version itself waits for the operator's decision (onEscalation: pause) and the wave goes
// on once it is carried out; `fail` rolls back and `ignore` goes on; a resumed rollout's timeouts count from the
// resumption across a restart; a policy rollout reaches protocol 4 agents with the policy signed in its own domain and
// lists older agents as unsupported; policy removals and re-issues per agent; escalations show the actor and the opponent.
import assert from 'node:assert/strict';
import path from 'node:path';
import { ManualClock } from '../../lib/clock.js';
import { verifyBytes, verifyInDomain } from '../../lib/signing.js';
import { decodeBaselineDoc, decodeDecisionDoc, decodePolicyDoc, decodeRemovalDoc, type Assignment, type ControllerMessage } from '../../proto/codec.js';
import { tempDir, waitFor } from '../helpers/agent.js';
import { controller, welcomedOrClosed, wireClient, type Controller, type WireClient } from '../helpers/trust.js';

const KEY = 'file:/srv/app/key';
const baseline = (content: string): string => `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: app
spec:
  resources:
    - file: /srv/app/motd
      content: "${content}\\n"
    - file: /srv/app/key
      content: "${content}\\n"
      risk: high
`;
const POLICY = `apiVersion: homeostat/v1
kind: Policy
metadata:
  name: fleet
spec:
  rules:
    - match: { resource: "file:/srv/app/*" }
      action: escalate
`;

interface Rollout {
  id: number;
  state: string;
  pausedFor: string | null;
  reason: string | null;
  currentWave: number;
  document: string;
  policy?: string;
  baseline?: string;
  awaitingDecision: number;
  unsupported: number;
  hosts: { agentId: string; wave: number; status: string; reason: string | null; escalations: { resource: string; id: number | null }[] }[];
  escalations: { id: number | null; agentId: string; resource: string; status: string }[];
  steps: { kind: string; time: number; by?: string }[];
}

class Host {
  seq = 0;
  constructor(
    readonly c: WireClient,
    readonly id: string,
  ) {}

  assignments(): Assignment[] {
    return this.c.messages.flatMap((m: ControllerMessage) => (m.body === 'assignment' ? [m.assignment] : []));
  }

  decisions(): { escalationId: string }[] {
    return this.c.messages.flatMap((m) => (m.body === 'decision' ? [decodeDecisionDoc(m.decision.payload)] : []));
  }

  escalated(resource: string, version: number, extra: Record<string, unknown> = {}): void {
    this.seq++;
    this.c.send({
      events: {
        events: [
          { seq: this.seq, time: Date.now(), resource, event: 'escalated', trigger: 'startup', baseline: 'app', version, observedJson: '', desiredJson: '', diff: '', detail: 'risk high', prevHash: '', hash: `h${this.seq}`, ...extra },
        ],
      },
    });
  }
}

describe('rollouts wait for decisions on what a new version escalates; policies roll out like baselines', function () {
  this.timeout(60_000);
  const tmp = tempDir('hs-rollout-decisions-');
  let c: Controller;
  let token = '';
  const hosts: Host[] = [];

  const enroll = async (protocolVersion?: number): Promise<Host> => {
    const w = await wireClient(c.ctl.agentUrl, { joinToken: token, ...(protocolVersion ? { protocolVersion } : {}) });
    const { welcome } = await welcomedOrClosed(w);
    assert.ok(welcome);
    const h = new Host(w, welcome.agentId);
    hosts.push(h);
    return h;
  };
  const rollout = (id: number): Promise<Rollout> => c.api<Rollout>('GET', `/api/v1/rollouts/${id}`);
  const until = async (id: number, pred: (r: Rollout) => boolean, what: string): Promise<Rollout> => {
    let r: Rollout | undefined;
    await waitFor(async () => pred((r = await rollout(id))), 20_000, `${what} (last: ${r?.state} ${r?.reason ?? ''})`);
    if (!r) throw new Error('no rollout');
    return r;
  };
  const hostOf = (r: Rollout, wave: number): Host => {
    const row = r.hosts.find((x) => x.wave === wave);
    const h = hosts.find((x) => x.id === row?.agentId);
    if (!h) throw new Error(`no host in wave ${wave}`);
    return h;
  };
  const waves = { waves: [{ hosts: 1 }, 100], gate: { maxFailedHosts: 0, soakSeconds: 0, ackTimeoutSeconds: 30 } };
  /** The host acknowledges baseline app at `version` and reports how its first pass went. */
  const converge = (h: Host, version: number, outcome: string, failed: string[] = []): void => {
    h.c.send({ assignmentAck: { enforcing: [{ name: 'app', version, sha256: '' }] } });
    h.c.send({ convergence: { baselines: [{ name: 'app', version, outcome, failed, detail: '' }] } });
  };
  /** Waits until the host's latest assignment carries baseline app at `version`. */
  const holds = async (h: Host, version: number): Promise<void> =>
    waitFor(
      () => {
        const s = h.assignments().at(-1)?.baselines[0];
        return s !== undefined && decodeBaselineDoc(s.payload).version === version;
      },
      10_000,
      `${h.id} sent v${version}`,
    );

  before(async () => {
    c = await controller(path.join(tmp.dir, 'controller'));
    token = (await c.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h' })).token;
    await enroll();
    await enroll();
    await c.api('POST', '/api/v1/baselines', { yaml: baseline('one') });
    await c.api('POST', '/api/v1/baselines', { yaml: baseline('two') });
    await c.api('POST', '/api/v1/baselines', { yaml: baseline('three') });
    await c.api('POST', '/api/v1/baselines', { yaml: baseline('four') });
  });

  after(async () => {
    for (const h of hosts) h.c.ws.close();
    await c?.stop();
    tmp.cleanup();
  });

  it('pauses the wave on an escalation of the new version, lists it, and goes on once the decision is carried out', async () => {
    const started = await c.api<Rollout>('POST', '/api/v1/rollouts', { baseline: 'app', version: 1, strategy: waves });
    const first = hostOf(started, 1);
    const second = hostOf(started, 2);
    await holds(first, 1);
    converge(first, 1, 'escalated', [KEY]);
    first.escalated(KEY, 1);
    const paused = await until(started.id, (r) => r.state === 'paused' && r.escalations.some((e) => e.id !== null), 'paused for the decision');
    assert.equal(paused.pausedFor, 'escalations');
    assert.equal(paused.currentWave, 1);
    assert.equal(paused.awaitingDecision, 1);
    const [pending] = paused.escalations;
    assert.ok(pending && pending.id !== null);
    assert.deepEqual([pending.agentId, pending.resource, pending.status], [first.id, KEY, 'open']);
    assert.match(paused.reason ?? '', new RegExp(`waiting for decisions on escalation ${pending.id} raised by the new version`));
    assert.equal(paused.hosts.find((x) => x.agentId === first.id)?.status, 'escalated');
    assert.equal(second.assignments().some((a) => a.baselines.length > 0), false, 'the next wave has not started');
    // Only the operator's decisions move it: resuming by hand is refused.
    assert.equal(await c.status('POST', `/api/v1/rollouts/${started.id}/resume`, {}), 409);

    await c.api('POST', `/api/v1/escalations/${pending.id}/approve`, { by: 'test' });
    await waitFor(() => first.decisions().some((d) => d.escalationId === String(pending.id)), 10_000, 'the decision reaches the agent');
    const carriedOut = Date.now();
    first.c.send({ decisionAck: { escalationId: String(pending.id), ok: true, error: '' } });
    await until(started.id, (r) => r.currentWave === 2, 'the next wave');
    await holds(second, 1);
    converge(second, 1, 'kept');
    const done = await until(started.id, (r) => r.state === 'completed', 'completed');
    const kinds = done.steps.map((s) => s.kind);
    assert.deepEqual(kinds.filter((k) => k.startsWith('rollout_')), ['rollout_started', 'rollout_awaiting_decisions', 'rollout_resumed', 'rollout_completed']);
    const resumed = done.steps.find((s) => s.kind === 'rollout_resumed');
    assert.equal(resumed?.by, 'decisions');
    assert.ok((resumed?.time ?? 0) >= carriedOut, 'resumed only once the agent carried the decision out');
    assert.ok(done.hosts.every((h) => h.status === 'converged'), JSON.stringify(done.hosts));
  });

  it('with onEscalation "fail", an escalation of the new version fails its host and the wave rolls back', async () => {
    const started = await c.api<Rollout>('POST', '/api/v1/rollouts', { baseline: 'app', version: 2, strategy: { ...waves, onEscalation: 'fail' } });
    const first = hostOf(started, 1);
    await holds(first, 2);
    converge(first, 2, 'escalated', [KEY]);
    const r = await until(started.id, (x) => x.state === 'rolled_back', 'rolled back');
    assert.equal(r.hosts.find((x) => x.agentId === first.id)?.status, 'failed');
    assert.match(r.reason ?? '', /wave 1 unhealthy/);
  });

  it('with onEscalation "ignore", the escalation stays open for a human and the rollout goes on', async () => {
    const started = await c.api<Rollout>('POST', '/api/v1/rollouts', { baseline: 'app', version: 3, strategy: { ...waves, onEscalation: 'ignore' } });
    const first = hostOf(started, 1);
    await holds(first, 3);
    first.escalated(KEY, 3);
    converge(first, 3, 'escalated', [KEY]);
    await until(started.id, (r) => r.currentWave === 2, 'the next wave');
    const second = hostOf(started, 2);
    await holds(second, 3);
    converge(second, 3, 'kept');
    const done = await until(started.id, (r) => r.state === 'completed', 'completed');
    assert.equal(done.escalations.length, 0, 'nothing waited for');
    assert.ok((await c.api<{ resource: string; agentId: string }[]>('GET', '/api/v1/escalations?status=open')).some((e) => e.agentId === first.id && e.resource === KEY));
  });

  it('refuses a strategy with an unknown onEscalation, naming the field and the choices', async () => {
    const r = await c.ctl.core.app.inject({ method: 'POST', url: '/api/v1/rollouts', headers: { authorization: 'Bearer trust-admin' }, body: { baseline: 'app', version: 4, strategy: { onEscalation: 'wait' } } });
    assert.equal(r.status, 400);
    assert.match(r.text(), /strategy\.onEscalation: \\"wait\\"; expected \\"pause\\"/);
  });

  it('rolls a policy out to protocol 4 agents, signed in the policy domain, and lists older agents as unsupported', async () => {
    const old = await enroll(3);
    assert.equal((await c.status('POST', '/api/v1/policies', { yaml: POLICY.replace('escalate', 'escalte'), file: 'fleet.yaml' })), 422);
    const pushed = await c.api<{ name: string; version: number; created: boolean }>('POST', '/api/v1/policies', { yaml: POLICY, file: 'fleet.yaml' });
    assert.deepEqual([pushed.name, pushed.version, pushed.created], ['fleet', 1, true]);
    const started = await c.api<Rollout>('POST', '/api/v1/rollouts', { policy: 'fleet', version: 1, strategy: { waves: [100], gate: { soakSeconds: 0, ackTimeoutSeconds: 30 } } });
    assert.equal(started.document, 'policy');
    assert.equal(started.policy, 'fleet');
    assert.equal(started.baseline, undefined);
    assert.equal(started.hosts.find((h) => h.agentId === old.id)?.status, 'unsupported');
    const modern = hosts.filter((h) => h !== old);
    for (const h of modern) {
      await waitFor(() => h.assignments().some((a) => a.policies.length === 1), 10_000, `${h.id} sent the policy`);
      const signed = h.assignments().at(-1)?.policies[0];
      assert.ok(signed);
      const key = c.ctl.core.signingKey.publicKey;
      assert.ok(verifyInDomain(key, 'policy', signed.payload, signed.signature), 'signed in the policy domain');
      assert.equal(verifyBytes(key, signed.payload, signed.signature), false, 'never verifies as a baseline');
      const doc = decodePolicyDoc(signed.payload);
      assert.deepEqual([doc.name, doc.version, doc.yaml], ['fleet', 1, POLICY]);
      h.c.send({ assignmentAck: { enforcing: [], policies: [{ name: 'fleet', version: 1, sha256: doc.sha256 }] } });
    }
    const done = await until(started.id, (r) => r.state === 'completed', 'completed');
    assert.equal(done.unsupported, 1);
    assert.ok(done.hosts.filter((h) => h.agentId !== old.id).every((h) => h.status === 'converged'));
    assert.ok(old.assignments().every((a) => a.policies.length === 0), 'an agent before protocol 4 is sent no policy');
    const agents = await c.api<{ id: string; policies: { name: string; version: number }[] }[]>('GET', '/api/v1/agents');
    for (const h of modern) assert.deepEqual(agents.find((a) => a.id === h.id)?.policies.map((p) => `${p.name}@${p.version}`), ['fleet@1']);
    const list = await c.api<{ name: string; latest: number; target: { version: number } | null }[]>('GET', '/api/v1/policies');
    assert.deepEqual(list.map((p) => [p.name, p.latest, p.target?.version]), [['fleet', 1, 1]]);
  });

  it('shows who made an escalated drift and, for a fight, the opponent the agent names', async () => {
    const h = hosts[0];
    assert.ok(h);
    const actor = { source: 'audit', pid: 4242, exe: '/usr/bin/puppet', cmdline: '/usr/bin/puppet agent', uid: 0, user: 'root', unit: 'puppet.service', parents: ['/usr/lib/systemd/systemd'] };
    const decision = { action: 'suppress', cause: 'flapping', rule: { baseline: 'app' }, reason: 'fighting /usr/bin/puppet (puppet.service): 6 changes in 10 min' };
    h.seq++;
    h.c.send({
      events: {
        events: [
          {
            seq: h.seq, time: Date.now(), resource: 'file:/srv/app/motd', event: 'suppressed_flapping', trigger: 'watch', baseline: 'app', version: 3, observedJson: '', desiredJson: '', diff: '',
            detail: 'stopped repairing after 6 repairs in 10m', prevHash: '', hash: `h${h.seq}`, actorJson: JSON.stringify(actor), decisionJson: JSON.stringify(decision), changes: ['content'], risk: 'low',
          },
        ],
      },
    });
    type Esc = { agentId: string; resource: string; kind: string; actor: { exe: string; unit: string } | null; actorLabel: string | null; opponent: string | null; decision: { cause: string } | null };
    let esc: Esc | undefined;
    await waitFor(async () => (esc = (await c.api<Esc[]>('GET', '/api/v1/escalations?status=open')).find((e) => e.agentId === h.id && e.kind === 'suppressed_flapping')) !== undefined, 10_000, 'the escalation');
    assert.equal(esc?.opponent, '/usr/bin/puppet (puppet.service)');
    assert.equal(esc?.actorLabel, '/usr/bin/puppet (puppet.service)');
    assert.deepEqual([esc?.actor?.exe, esc?.actor?.unit, esc?.decision?.cause], ['/usr/bin/puppet', 'puppet.service', 'flapping']);
    const [ev] = await c.api<{ actor: { pid: number }; decision: { reason: string }; changes: string[]; risk: string }[]>('GET', `/api/v1/events?agent=${h.id}&kind=suppressed_flapping`);
    assert.deepEqual([ev?.actor.pid, ev?.changes, ev?.risk], [4242, ['content'], 'low']);
    assert.match(ev?.decision.reason ?? '', /^fighting/);
  });
});

describe('a rollout resumed by an operator, across a controller restart', function () {
  this.timeout(60_000);
  const tmp = tempDir('hs-rollout-resume-');
  const dataDir = path.join(tmp.dir, 'controller');
  let c: Controller | undefined;
  after(async () => {
    await c?.stop();
    tmp.cleanup();
  });

  it('counts the resumed wave\'s timeouts from the resumption, also after a restart', async () => {
    // The controller's clock is the test's: time passes while paused without waiting for it.
    const clock = new ManualClock(Date.now());
    c = await controller(dataDir, { clock });
    const token = (await c.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h' })).token;
    const first = await wireClient(c.ctl.agentUrl, { joinToken: token });
    const { welcome } = await welcomedOrClosed(first);
    assert.ok(welcome);
    await c.api('POST', '/api/v1/baselines', { yaml: baseline('one') });
    const ackTimeoutSeconds = 60;
    const r = await c.api<Rollout>('POST', '/api/v1/rollouts', { baseline: 'app', version: 1, strategy: { waves: [100], gate: { soakSeconds: 0, ackTimeoutSeconds } } });
    await c.api('POST', `/api/v1/rollouts/${r.id}/pause`, {});
    // Longer than the timeout passes while paused; the host never acknowledged.
    clock.advance((ackTimeoutSeconds + 1) * 1000);
    await c.api('POST', `/api/v1/rollouts/${r.id}/resume`, {});
    first.ws.close();
    await c.stop();
    c = await controller(dataDir, { clock });
    // Back within the timeout counted from the resumption: the host acknowledges and converges in time.
    const again = await wireClient(c.ctl.agentUrl, { agentId: welcome.agentId, credential: welcome.credential });
    assert.ok((await welcomedOrClosed(again)).welcome);
    again.send({ assignmentAck: { enforcing: [{ name: 'app', version: 1, sha256: '' }] } });
    again.send({ convergence: { baselines: [{ name: 'app', version: 1, outcome: 'kept', failed: [], detail: '' }] } });
    let last: Rollout | undefined;
    await waitFor(async () => ['completed', 'rolled_back'].includes((last = await c?.api<Rollout>('GET', `/api/v1/rollouts/${r.id}`))?.state ?? ''), 20_000, 'the rollout ends');
    assert.equal(last?.state, 'completed', JSON.stringify(last?.hosts));
    again.ws.close();
  });
});

describe('policy removals and re-issues for one agent', function () {
  this.timeout(30_000);
  const tmp = tempDir('hs-policy-removal-');
  let c: Controller | undefined;
  after(async () => {
    await c?.stop();
    tmp.cleanup();
  });

  it('signs a removal in the policy-removal domain for a policy an agent holds but is not assigned, and re-issues one it removed after a later signature', async () => {
    c = await controller(path.join(tmp.dir, 'controller'));
    const key = c.ctl.core.signingKey.publicKey;
    await c.api('POST', '/api/v1/policies', { yaml: POLICY.replace('spec:\n', 'spec:\n  selector:\n    matchLabels: { role: app }\n') });
    await c.api('POST', '/api/v1/rollouts', { policy: 'fleet', version: 1, strategy: 'all-at-once' });
    const target = c.ctl.core.policies.target('fleet');
    assert.ok(target);
    const token = (await c.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h' })).token;
    // An agent not selected that says it holds the policy (from an earlier assignment): it gets a signed removal.
    const a = await wireClient(c.ctl.agentUrl, { joinToken: token, policies: [{ name: 'fleet', version: 1, sha256: '' }] });
    const { welcome } = await welcomedOrClosed(a);
    assert.ok(welcome);
    await waitFor(() => a.messages.some((m) => m.body === 'assignment' && m.assignment.policyRemovals.length === 1), 10_000, 'a policy removal');
    const sent = a.messages.flatMap((m) => (m.body === 'assignment' ? [m.assignment] : [])).at(-1);
    const removal = sent?.policyRemovals[0];
    assert.ok(removal && sent);
    assert.equal(sent.removals.length, 0, 'no baseline removal for a policy name');
    assert.ok(verifyInDomain(key, 'policy-removal', removal.payload, removal.signature));
    assert.equal(verifyInDomain(key, 'removal', removal.payload, removal.signature), false, 'never valid as a baseline removal');
    const doc = decodeRemovalDoc(removal.payload);
    assert.deepEqual([doc.agentId, doc.name], [welcome.agentId, 'fleet']);
    assert.ok(doc.issuedAt > target.issuedAt, 'issued after the document it removes');
    a.ws.close();
    // Selected later, after having accepted that removal: the policy is issued again after the removal.
    await c.api('PUT', `/api/v1/agents/${welcome.agentId}/labels`, { labels: { role: 'app' } });
    const b = await wireClient(c.ctl.agentUrl, { agentId: welcome.agentId, credential: welcome.credential, policyHeld: [{ name: 'fleet', version: 1, issuedAt: doc.issuedAt, removed: true }] });
    assert.ok((await welcomedOrClosed(b)).welcome);
    await waitFor(() => b.messages.some((m) => m.body === 'assignment' && m.assignment.policies.length === 1), 10_000, 'the policy sent again');
    const again = b.messages.flatMap((m) => (m.body === 'assignment' ? m.assignment.policies : [])).at(-1);
    assert.ok(again);
    assert.ok(verifyInDomain(key, 'policy', again.payload, again.signature));
    const reissued = decodePolicyDoc(again.payload);
    assert.deepEqual([reissued.name, reissued.version, reissued.yaml], ['fleet', 1, decodePolicyDoc(target.payload).yaml]);
    assert.ok(reissued.issuedAt > doc.issuedAt, 'issued after the removal the agent accepted');
    b.ws.close();
  });
});

