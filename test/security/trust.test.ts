// The trust between agents and controller, attacked for real: a real controller on loopback, real agent processes, and a
// rogue controller endpoint. A join-token holder choosing its own labels, a fake controller behind ws:// or holding the TLS
// pair, unsigned plans reading files, replaying an old signed version after a removal, a revoked host re-enrolling.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateSigningKey, signBytes, signInDomain } from '../../lib/signing.js';
import { encodeBaselineDoc, encodePlanDoc, type AgentMessage, type SignedBaseline } from '../../proto/codec.js';
import { tempDir, waitFor, type DaemonProcess } from '../helpers/agent.js';
import { agentAudit, agentStatus, controller, rogue, runAgentDaemon, waitExit, type Controller, type Rogue } from '../helpers/trust.js';

const MANAGED = `/srv/hs-trust-${process.pid}`;

const baseline = (name: string, file: string, content: string, selector: Record<string, string> | null): string => `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: ${name}
spec:
${selector ? `  selector:\n    matchLabels: ${JSON.stringify(selector)}\n` : ''}  resources:
    - file: ${MANAGED}/${file}
      content: "${content}\\n"
      mode: "0644"
`;

const read = (file: string): string | undefined => {
  try {
    return readFileSync(path.join(MANAGED, file), 'utf8');
  } catch {
    return undefined;
  }
};

describe('security: trust between agents and controller', function () {
  this.timeout(120_000);
  const tmp = tempDir('hs-trust-');
  const agents: DaemonProcess[] = [];
  const rogues: Rogue[] = [];
  let c: Controller;
  const dataDir = path.join(tmp.dir, 'controller');
  const state = (name: string): string => {
    const d = path.join(tmp.dir, name);
    mkdirSync(d, { recursive: true });
    return d;
  };
  const agent = (stateDir: string, url: string, extra: string[] = []): DaemonProcess => {
    const d = runAgentDaemon(stateDir, url, extra);
    agents.push(d);
    return d;
  };
  const token = async (body: Record<string, unknown>): Promise<string> => (await c.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h', ...body })).token;
  const push = async (yaml: string, rollout = true): Promise<number> => {
    const { name, version } = await c.api<{ name: string; version: number }>('POST', '/api/v1/baselines', { yaml, file: 'b.yaml' });
    if (!rollout) return version;
    const r = await c.api<{ id: number }>('POST', '/api/v1/rollouts', { baseline: name, version, strategy: 'all-at-once' });
    await waitFor(async () => (await c.api<{ state: string }>('GET', `/api/v1/rollouts/${r.id}`)).state === 'completed', 30_000, `rollout of ${name} v${version}`);
    return version;
  };
  const problem = async (stateDir: string, reason: string): Promise<string> => {
    let msg = '';
    await waitFor(
      async () => {
        // The agent creates its state at start; until then there is no status to read.
        const s = existsSync(path.join(stateDir, 'agent.db')) ? await agentStatus(stateDir) : null;
        msg = s?.controller.problem?.message ?? '';
        return s?.controller.problem?.reason === reason;
      },
      20_000,
      `status reason ${reason}`,
    );
    return msg;
  };
  const idOf = (stateDir: string): string => (JSON.parse(readFileSync(path.join(stateDir, 'controller.json'), 'utf8')) as { agentId: string }).agentId;
  const enrolled = async (stateDir: string): Promise<string> => {
    await waitFor(() => existsSync(path.join(stateDir, 'controller.json')), 20_000, 'enrolled');
    const id = idOf(stateDir);
    await waitFor(async () => (await c.api<{ connected: boolean }>('GET', `/api/v1/agents/${id}`)).connected, 20_000, 'connected');
    return id;
  };

  before(async () => {
    mkdirSync(MANAGED, { recursive: true });
    c = await controller(dataDir);
    await push(baseline('prod', 'prod.conf', 'prod secrets', { env: 'prod' }));
    await push(baseline('web', 'web.conf', 'web v1', { role: 'web' }));
  });

  after(async () => {
    for (const a of agents) await a.stop();
    for (const r of rogues) await r.close();
    await c?.stop().catch(() => undefined);
    rmSync(MANAGED, { recursive: true, force: true });
    tmp.cleanup();
  });

  describe('a join-token holder (issue 10.3)', () => {
    it('is refused labels the token does not allow, and gets neither them nor their baselines', async () => {
      const t = await token({ allowLabels: ['role'] });
      const sd = state('claims-prod');
      const a = agent(sd, c.ctl.agentUrl, ['--token', t, '--labels', 'role=web,env=prod']);
      const why = await problem(sd, 'labels_refused');
      assert.match(why, /env=prod \(not allowed by the join token\)/);
      assert.equal(existsSync(path.join(sd, 'controller.json')), false, 'not enrolled');
      assert.deepEqual(await c.api<unknown[]>('GET', '/api/v1/agents'), [], 'no agent record');
      assert.equal(read('prod.conf'), undefined, 'the prod baseline never reached it');
      const refusals = await c.ctl.core.store.listControllerEvents({});
      assert.ok(refusals.some((e) => e.kind === 'agent_labels_refused' && JSON.stringify(e.detail).includes('env=prod')), 'recorded at the controller');
      await a.stop();
    });

    it('cannot change a label the token fixes', async () => {
      const t = await token({ labels: { env: 'staging' }, allowLabels: ['role'] });
      const sd = state('overrides-env');
      const a = agent(sd, c.ctl.agentUrl, ['--token', t, '--labels', 'role=web,env=prod']);
      assert.match(await problem(sd, 'labels_refused'), /env=prod \(the join token sets env=staging\)/);
      await a.stop();
    });

    it('gets what the token allows; asking for more later takes the agent offline with the reason, not into the canary wave', async () => {
      const t = await token({ allowLabels: ['role=web'] });
      const sd = state('web-1');
      let a = agent(sd, c.ctl.agentUrl, ['--token', t, '--labels', 'role=web']);
      const id = await enrolled(sd);
      await waitFor(() => read('web.conf') === 'web v1\n', 20_000, 'web baseline enforced');
      assert.deepEqual((await c.api<{ labels: Record<string, string> }>('GET', `/api/v1/agents/${id}`)).labels, { role: 'web' });
      assert.deepEqual((await agentStatus(sd)).controller.labels, { role: 'web' }, 'the agent knows the labels the controller trusts');
      await a.stop();
      a = agent(sd, c.ctl.agentUrl, ['--labels', 'role=web,canary=yes,env=prod']);
      assert.match(await problem(sd, 'labels_refused'), /canary=yes .*env=prod/);
      const rec = await c.api<{ labels: Record<string, string>; connected: boolean }>('GET', `/api/v1/agents/${id}`);
      assert.deepEqual([rec.labels, rec.connected], [{ role: 'web' }, false], 'nothing merged, not connected');
      assert.equal(read('prod.conf'), undefined);
      await a.stop();
      writeFileSync(path.join(MANAGED, 'web.conf'), 'drifted while refused\n');
      a = agent(sd, c.ctl.agentUrl, ['--labels', 'role=web']);
      await waitFor(() => read('web.conf') === 'web v1\n', 20_000, 'still enforcing its cached baseline');
      await waitFor(async () => (await c.api<{ connected: boolean }>('GET', `/api/v1/agents/${id}`)).connected, 20_000, 'back with allowed labels');
    });

    it('an operator sets labels through the API; canary waves follow trusted labels only', async () => {
      const t = await token({ allowLabels: ['role=web'] });
      const sd = state('web-2');
      const w2 = agent(sd, c.ctl.agentUrl, ['--token', t, '--labels', 'role=web']);
      const id2 = await enrolled(sd);
      const id1 = idOf(path.join(tmp.dir, 'web-1'));
      const set = await c.api<{ labels: Record<string, string> }>('PUT', `/api/v1/agents/${id2}/labels`, { labels: { canary: 'yes' } });
      assert.deepEqual(set.labels, { role: 'web', canary: 'yes' });
      assert.equal(await c.status('PUT', `/api/v1/agents/${id2}/labels`, { labels: { 'bad key': 'x' } }), 400);
      // Both hosts manage the same file on this one machine: the other one sits the rollout out (offline hosts hold no wave up).
      for (const x of agents) if (x !== w2 && x.child.exitCode === null) await x.stop();
      const version = await push(baseline('web', 'web.conf', 'web v2', { role: 'web' }), false);
      const r = await c.api<{ id: number }>('POST', '/api/v1/rollouts', { baseline: 'web', version, strategy: { waves: [{ hosts: 1 }, 100], canary: { matchLabels: { canary: 'yes' } }, gate: { soakSeconds: 0 } } });
      const hosts = (await c.api<{ hosts: { agentId: string; wave: number }[] }>('GET', `/api/v1/rollouts/${r.id}`)).hosts;
      assert.deepEqual(hosts.map((h) => [h.agentId, h.wave]).sort(), [[id1, 2], [id2, 1]].sort(), 'the operator-labelled host is the canary (waves count from 1)');
      await waitFor(async () => (await c.api<{ state: string }>('GET', `/api/v1/rollouts/${r.id}`)).state === 'completed', 30_000, 'rollout done');
    });
  });

  describe('a fake controller or a man in the middle (issue 10.4)', () => {
    const evilKey = generateSigningKey().key;
    const evilDoc = (): SignedBaseline => {
      const payload = Buffer.from(
        encodeBaselineDoc({ name: 'pwn', version: 1, sha256: '', yaml: baseline('pwn', 'pwned', 'root was here', null), sources: {}, file: 'pwn.yaml', issuedAt: Date.now(), expiresAt: Date.now() + 3_600_000, rollback: false }),
      );
      return { payload, signature: signBytes(evilKey, payload), keyId: evilKey.keyId };
    };
    // Answers every hello like a controller: enrollment, its own signing key, and a baseline signed with it.
    const impostor = (m: AgentMessage, send: Parameters<Parameters<typeof rogue>[1]>[1]): void => {
      if (m.body !== 'hello') return;
      send({ welcome: { protocolVersion: 3, agentId: m.hello.agentId || 'ag-fake', credential: 'fake', signingPublicKey: evilKey.publicKey, heartbeatIntervalMs: 1000 } });
      send({ assignment: { baselines: [evilDoc()] } });
    };

    it('ws:// is refused without --insecure-http: the token never leaves the host', async () => {
      const r = await rogue(null, impostor);
      rogues.push(r);
      const t = (await token({})).split('.').slice(0, 4).join('.'); // as a controller serving ws:// makes it: no TLS part
      const a = agent(state('ws-no-flag'), r.url, ['--token', t]);
      assert.equal(await waitExit(a), 1);
      assert.match(a.stderr, /plain ws:\/\/ would send the join token and credential in cleartext/);
      assert.equal(r.connections, 0);
    });

    it('with --insecure-http, a ws:// impostor learns the token but its own key is refused: nothing saved, nothing written', async () => {
      const r = await rogue(null, impostor);
      rogues.push(r);
      const t = (await token({})).split('.').slice(0, 4).join('.'); // as a controller serving ws:// makes it: no TLS part
      const sd = state('ws-insecure');
      const a = agent(sd, r.url, ['--token', t, '--insecure-http']);
      assert.match(await problem(sd, 'key_mismatch'), /not the one the join token names/);
      assert.equal(existsSync(path.join(sd, 'controller.json')), false, 'the impostor was not pinned');
      assert.equal(read('pwned'), undefined, 'nothing written as root');
      assert.ok(!r.received.some((m) => m.body === 'assignmentAck'), 'its assignment was not even looked at');
      await a.stop();
    });

    it('never ws:// with a token that pins TLS, nor for an agent enrolled over TLS: no token or credential in cleartext', async () => {
      const r = await rogue(null, impostor);
      rogues.push(r);
      const a1 = agent(state('ws-tls-token'), r.url, ['--token', await token({}), '--insecure-http']);
      assert.equal(await waitExit(a1), 1);
      assert.match(a1.stderr, /the join token pins a TLS certificate/);
      const a2 = agent(path.join(tmp.dir, 'web-1'), r.url, ['--insecure-http']);
      assert.equal(await waitExit(a2), 1);
      assert.match(a2.stderr, /enrolled with a controller that serves TLS/);
      assert.equal(r.connections, 0);
    });

    it("an enrolled agent refuses a controller holding the TLS pair but not the pinned signing key, and says why", async () => {
      const r = await rogue(dataDir, impostor);
      rogues.push(r);
      const sd = path.join(tmp.dir, 'web-2');
      for (const a of agents) if (a.child.exitCode === null) await a.stop();
      const a = agent(sd, r.url);
      assert.match(await problem(sd, 'key_mismatch'), /restore the controller's signing\.key from backup, or enroll this agent again/);
      assert.equal(read('pwned'), undefined);
      assert.ok(!r.received.some((m) => m.body === 'assignmentAck'));
      await a.stop();
    });
  });

  describe('plans (issue 10.7)', () => {
    const secret = 'root:$6$SECRET-HASH$:19000:0:99999:7:::';

    it('an unsigned or misaddressed plan request is refused and audited; no content leaves the host', async () => {
      writeFileSync(path.join(MANAGED, 'shadow'), `${secret}\n`);
      const version = await push(baseline('shadow', 'shadow', 'x', { role: 'nobody' }), false);
      const v = await c.ctl.core.baselines.version('shadow', version);
      const doc = encodeBaselineDoc({ name: 'shadow', version, sha256: v.sha256, yaml: v.yaml, sources: {}, file: v.file, issuedAt: 0, expiresAt: 0, rollback: false });
      const sd = path.join(tmp.dir, 'web-1');
      const id = idOf(sd);
      // A plan the controller did sign — for another agent — replayed to this one.
      const payload = Buffer.from(encodePlanDoc({ planId: 'p2', agentId: 'ag-someone-else', baseline: doc, issuedAt: Date.now(), expiresAt: Date.now() + 60_000, requestedBy: 'op' }));
      const misaddressed = { payload, signature: signInDomain(c.ctl.core.signingKey, 'plan', payload), keyId: c.ctl.core.signingKey.keyId };
      const publicKey = c.ctl.core.signingKey.publicKey;
      const r = await rogue(dataDir, (m, send) => {
        if (m.body !== 'hello') return;
        send({ welcome: { protocolVersion: 3, agentId: id, signingPublicKey: publicKey, heartbeatIntervalMs: 1000 } });
        send({ planRequest: { planId: 'p1', baseline: doc } });
        send({ planRequest: { planId: 'p2', signed: misaddressed } });
      });
      rogues.push(r);
      for (const a of agents) if (a.child.exitCode === null) await a.stop();
      const a = agent(sd, r.url);
      await waitFor(() => r.received.filter((m) => m.body === 'planResult').length === 2, 20_000, 'two plan answers');
      for (const m of r.received) if (m.body === 'planResult') assert.equal(m.planResult.ok, false, m.planResult.error);
      assert.ok(!JSON.stringify(r.received.map((m) => (m.body === 'planResult' ? m.planResult : null))).includes('SECRET-HASH'), 'the file content did not leave');
      await a.stop();
      const refused = (await agentAudit(sd)).filter((e) => e.event === 'plan_refused');
      assert.equal(refused.length, 2);
      assert.match(refused[0]?.detail ?? '', /not signed/);
      assert.match(refused[1]?.detail ?? '', /addressed to ag-someone-else/);
    });

    it("the controller's plans are signed for each agent and recorded in its audit", async () => {
      const sd = path.join(tmp.dir, 'web-1');
      const id = idOf(sd);
      agent(sd, c.ctl.agentUrl, ['--labels', 'role=web']);
      await waitFor(async () => (await c.api<{ connected: boolean }>('GET', `/api/v1/agents/${id}`)).connected, 20_000, 'connected');
      await c.api('PUT', `/api/v1/agents/${id}/labels`, { labels: { role: 'nobody' } });
      const versions = await c.api<{ version: number }[]>('GET', '/api/v1/baselines/shadow');
      const plan = await c.api<{ hosts: { agentId: string; status: string; changes: { resource: string }[] }[] }>('POST', '/api/v1/plans', { baseline: 'shadow', version: versions[0]?.version ?? 1, timeout: '10s' });
      assert.deepEqual(plan.hosts.map((h) => [h.agentId, h.status, h.changes.map((x) => x.resource)]), [[id, 'planned', [`file:${MANAGED}/shadow`]]]);
      await waitFor(async () => (await agentAudit(sd)).some((e) => e.event === 'plan_requested' && e.baseline === 'shadow'), 10_000, 'plan_requested audited');
      await c.api('PUT', `/api/v1/agents/${id}/labels`, { labels: {} });
    });
  });

  describe('replay after removal (issue 10.8)', () => {
    it('an unsigned removal is refused; after a signed one no older signed version is accepted, also after a restart', async () => {
      const sd = path.join(tmp.dir, 'web-1');
      const id = idOf(sd);
      const v1 = await push(baseline('keep', 'keep.conf', 'keep v1', { role: 'web' }));
      await waitFor(() => read('keep.conf') === 'keep v1\n', 20_000, 'v1 enforced');
      const oldDoc = c.ctl.core.baselines.target('keep');
      assert.ok(oldDoc && oldDoc.version === v1);
      await push(baseline('keep', 'keep.conf', 'keep v2', { role: 'web' }));
      await waitFor(() => read('keep.conf') === 'keep v2\n', 20_000, 'v2 enforced');
      const publicKey = c.ctl.core.signingKey.publicKey;
      let replay: SignedBaseline[] = [];
      const r = await rogue(dataDir, (m, send) => {
        if (m.body !== 'hello') return;
        send({ welcome: { protocolVersion: 3, agentId: id, signingPublicKey: publicKey, heartbeatIntervalMs: 1000 } });
        send({ assignment: { baselines: replay } });
      });
      rogues.push(r);
      const acks = (): Extract<AgentMessage, { body: 'assignmentAck' }>['assignmentAck'][] => r.received.flatMap((m) => (m.body === 'assignmentAck' ? [m.assignmentAck] : []));
      for (const a of agents) if (a.child.exitCode === null) await a.stop();

      // 1. An empty assignment, unsigned: the agent keeps enforcing and says why.
      let a = agent(sd, r.url);
      await waitFor(() => acks().length >= 1, 20_000, 'ack of the empty assignment');
      const first = acks()[0];
      assert.ok(first?.enforcing.some((e) => e.name === 'keep' && e.version === 2), 'still enforcing keep v2');
      assert.ok(first?.rejected.some((x) => x.name === 'keep' && /without a signed removal/.test(x.message)));
      writeFileSync(path.join(MANAGED, 'keep.conf'), 'tampered\n');
      await waitFor(() => read('keep.conf') === 'keep v2\n', 20_000, 'still repaired');
      await a.stop();

      // 2. A signed removal from the real controller (the operator relabels the host).
      a = agent(sd, c.ctl.agentUrl, ['--labels', 'role=web']);
      await waitFor(async () => (await c.api<{ connected: boolean }>('GET', `/api/v1/agents/${id}`)).connected, 20_000, 'connected');
      await c.api('PUT', `/api/v1/agents/${id}/labels`, { labels: { role: 'retired' } });
      await waitFor(async () => (await agentAudit(sd)).some((e) => e.event === 'baseline_removed' && e.baseline === 'keep'), 20_000, 'keep removed');
      await a.stop();

      // 3. The old signed v1 replayed: refused, before and after a restart.
      replay = [{ payload: oldDoc.payload, signature: oldDoc.signature, keyId: oldDoc.keyId }];
      for (let round = 0; round < 2; round++) {
        const seen = acks().length;
        a = agent(sd, r.url);
        await waitFor(() => acks().length > seen, 20_000, `ack of the replay (round ${round})`);
        const ack = acks()[seen];
        assert.deepEqual(ack?.enforcing.filter((e) => e.name === 'keep'), [], 'v1 not enforced');
        assert.ok(ack?.rejected.some((x) => x.name === 'keep' && x.code === 'HS_BASELINE_STALE'), JSON.stringify(ack?.rejected));
        await a.stop();
      }
      assert.equal(read('keep.conf'), 'keep v2\n', 'v1 was never written');
      await c.api('PUT', `/api/v1/agents/${id}/labels`, { labels: {} });
    });

    it('the controller sends a removed baseline again with a signature issued after the removal', async () => {
      const sd = path.join(tmp.dir, 'web-1');
      const id = idOf(sd);
      agent(sd, c.ctl.agentUrl, ['--labels', 'role=web']);
      await waitFor(async () => (await c.api<{ baselines: { name: string }[] }>('GET', `/api/v1/agents/${id}`)).baselines.some((b) => b.name === 'keep'), 20_000, 'keep enforced again');
      writeFileSync(path.join(MANAGED, 'keep.conf'), 'tampered\n');
      await waitFor(() => read('keep.conf') === 'keep v2\n', 20_000, 'enforced again');
    });
  });

  describe('revocation (issue 10.12)', () => {
    it("a revoked host's join token enrolls nobody any more", async () => {
      const t = await token({ maxUses: 10, allowLabels: ['role'] });
      const sd = state('to-revoke');
      const a = agent(sd, c.ctl.agentUrl, ['--token', t, '--labels', 'role=web']);
      const id = await enrolled(sd);
      await c.api('POST', `/api/v1/agents/${id}/revoke`);
      await a.stop();
      const again = state('re-enroll');
      agent(again, c.ctl.agentUrl, ['--token', t, '--labels', 'role=web']);
      assert.match(await problem(again, 'auth_refused'), /was revoked; create a new token/);
      assert.equal((await c.api<unknown[]>('GET', '/api/v1/agents')).length, 3, 'no new agent');
    });
  });
});
