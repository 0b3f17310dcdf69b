// The controller's HTTP API through its app factory, with no socket: auth, baseline versions with located errors and
// diffs, rollouts, events with dedup and filters, escalations decided and signed, enrollment tokens.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createControllerCore, type ControllerCore } from '../../controller/core.js';
import { verifyBytes } from '../../lib/signing.js';
import { decodeBaselineDoc, decodeDecisionDoc } from '../../proto/codec.js';

const ADMIN = 'test-admin-token';
const yaml = (name: string, content: string, extra = ''): string =>
  `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: ${name}\nspec:\n${extra}  resources:\n    - file: /srv/app/motd\n      content: "${content}"\n`;

describe('controller API (app factory, no socket)', () => {
  let dir: string;
  let core: ControllerCore;
  const call = (method: string, url: string, body?: unknown, headers: Record<string, string> = {}) =>
    core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}`, ...headers }, ...(body === undefined ? {} : { body: body as object }) });

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-ctl-api-'));
    core = await createControllerCore({ dataDir: dir, adminToken: ADMIN, fingerprint: 'FP' });
  });
  afterEach(async () => {
    await core.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers /healthz and /metrics without a token, and nothing under /api/v1 without one', async () => {
    assert.equal((await core.app.inject({ method: 'GET', url: '/healthz' })).status, 200);
    const metrics = await core.app.inject({ method: 'GET', url: '/metrics' });
    assert.match(metrics.text(), /homeostat_agents_connected 0/);
    const denied = await core.app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: 'Bearer wrong' } });
    assert.equal(denied.status, 401);
    assert.equal(denied.json<{ error: { code: string } }>().error.code, 'HS_AUTH');
    assert.equal((await call('GET', '/api/v1/nothing')).status, 404);
    const wrongMethod = await call('DELETE', '/api/v1/baselines');
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.allow, 'POST, GET, HEAD');
  });

  it('refuses JSON bodies that are not objects with 400, on every route that reads one', async () => {
    for (const [url, body] of [['/api/v1/rollouts', 'null'], ['/api/v1/plans', '[]'], ['/api/v1/enrollment-tokens', '"x"'], ['/api/v1/escalations/1/approve', '7']] as const) {
      const r = await call('POST', url, body, { 'content-type': 'application/json' });
      assert.equal(r.status, 400, `${url} ${body}: ${r.text()}`);
      assert.match(r.json<{ error: { message: string } }>().error.message, /must be a JSON object/);
    }
  });

  it('stores immutable versions, returns the same version for the same content, and diffs two', async () => {
    const v1 = await call('POST', '/api/v1/baselines', yaml('motd', 'one'), { 'content-type': 'application/yaml' });
    assert.equal(v1.status, 201);
    assert.deepEqual(
      (({ name, version, created }) => ({ name, version, created }))(v1.json<{ name: string; version: number; created: boolean }>()),
      { name: 'motd', version: 1, created: true },
    );
    const again = await call('POST', '/api/v1/baselines', yaml('motd', 'one'), { 'content-type': 'application/yaml' });
    assert.equal(again.json<{ version: number }>().version, 1);
    const v2 = await call('POST', '/api/v1/baselines', { yaml: yaml('motd', 'two'), file: 'motd.yaml' });
    assert.equal(v2.json<{ version: number }>().version, 2);
    const list = (await call('GET', '/api/v1/baselines')).json<{ name: string; latest: number; versions: unknown[] }[]>();
    assert.deepEqual(list.map((b) => [b.name, b.latest, b.versions.length]), [['motd', 2, 2]]);
    const diff = (await call('GET', '/api/v1/baselines/motd/diff?from=1&to=2')).json<{ diff: string }>().diff;
    assert.match(diff, /-.*content: "one"/);
    assert.match(diff, /\+.*content: "two"/);
  });

  it('accepts source files inline and refuses an invalid baseline with every located problem', async () => {
    const withSource = `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: src\nspec:\n  resources:\n    - file: /etc/x\n      source: files/x\n`;
    const ok = await call('POST', '/api/v1/baselines', { yaml: withSource, sources: { 'files/x': Buffer.from('bytes\n').toString('base64') } });
    assert.equal(ok.status, 201);
    const missing = await call('POST', '/api/v1/baselines', { yaml: withSource.replace('name: src', 'name: src2') });
    assert.equal(missing.status, 422);
    const bad = await call('POST', '/api/v1/baselines', { yaml: `${yaml('bad', 'x')}      mode: "999"\n      colour: blue\n`, file: 'bad.yaml' });
    assert.equal(bad.status, 422);
    const err = bad.json<{ error: { issues: { location?: { file: string; line: number; field?: string } }[] } }>().error;
    assert.ok(err.issues.length >= 2, 'every problem, not only the first');
    assert.ok(err.issues.every((i) => i.location?.file === 'bad.yaml' && i.location.line > 0));
  });

  it('signs the rolled-out version with the controller key and counts acknowledgements', async () => {
    await call('POST', '/api/v1/baselines', { yaml: yaml('motd', 'one') });
    const r = await call('POST', '/api/v1/rollouts', { baseline: 'motd', version: 1 });
    assert.equal(r.status, 201);
    assert.deepEqual((({ state, targeted }) => ({ state, targeted }))(r.json<{ state: string; targeted: number }>()), { state: 'completed', targeted: 0 });
    const t = core.baselines.target('motd');
    assert.ok(t);
    assert.ok(verifyBytes(core.signingKey.publicKey, t.payload, t.signature));
    const doc = decodeBaselineDoc(t.payload);
    assert.equal(doc.version, 1);
    assert.ok(doc.expiresAt > Date.now() + 29 * 86_400_000, 'generous default expiry');
    assert.equal((await call('POST', '/api/v1/rollouts', { baseline: 'motd', version: 9 })).status, 404);
    await call('POST', '/api/v1/baselines', { yaml: yaml('motd', 'two') });
    await call('POST', '/api/v1/rollouts', { baseline: 'motd', version: 2 });
    const back = await call('POST', '/api/v1/rollouts', { baseline: 'motd', version: 1 });
    assert.equal(back.json<{ rollback: boolean }>().rollback, true);
    assert.equal(decodeBaselineDoc(core.baselines.target('motd')?.payload ?? Buffer.alloc(0)).rollback, true);
    assert.equal((await call('GET', '/api/v1/rollouts/1')).json<{ state: string }>().state, 'completed', 'a finished rollout keeps its outcome');
  });

  it('keeps each event once however often it is sent, and filters them', async () => {
    const t = await core.enrollment.createToken();
    const { agent } = await core.enrollment.enroll(t.token, { labels: {}, protocolVersion: 1, agentVersion: 't' });
    const ev = (seq: number, event: string, resource: string | null) => ({
      seq, time: 1000 + seq, resource, event, trigger: 'watch', baseline: 'motd', version: 1, observed: null, desired: null, diff: null, detail: null, prevHash: '', hash: `h${seq}`,
    });
    const batch = [ev(1, 'drift_detected', 'file:/a'), ev(2, 'repaired', 'file:/a'), ev(3, 'drift_detected', 'file:/b')];
    assert.equal(await core.events.submit(agent.id, batch), 3);
    assert.equal(await core.events.submit(agent.id, batch.slice(1)), 3, 'a resent batch is acknowledged again');
    const all = (await call('GET', '/api/v1/events')).json<{ seq: number }[]>();
    assert.deepEqual(all.map((e) => e.seq), [1, 2, 3]);
    const byKind = (await call('GET', `/api/v1/events?agent=${agent.id}&kind=drift_detected&resource=file:/b`)).json<{ seq: number }[]>();
    assert.deepEqual(byKind.map((e) => e.seq), [3]);
    assert.deepEqual((await call('GET', '/api/v1/events?since=1002&until=1003')).json<{ seq: number }[]>().map((e) => e.seq), [2]);
    assert.equal(core.events.stats.duplicates, 2);
  });

  it('opens one escalation per agent and resource, and signs the operator decision', async () => {
    await call('POST', '/api/v1/baselines', { yaml: yaml('b', 'x').replace('/srv/app/motd', '/etc/ssh') });
    const t = await core.enrollment.createToken();
    const { agent } = await core.enrollment.enroll(t.token, { labels: {}, protocolVersion: 1, agentVersion: 't' });
    const ev = (seq: number, event: string) => ({ seq, time: seq, resource: 'file:/etc/ssh', event, trigger: 'watch', baseline: 'b', version: 1, observed: null, desired: null, diff: null, detail: 'd', prevHash: '', hash: '' });
    await core.events.submit(agent.id, [ev(1, 'escalated'), ev(2, 'escalated'), ev(3, 'suppressed_flapping')]);
    const open = (await call('GET', '/api/v1/escalations?status=open')).json<{ id: number; repeats: number }[]>();
    assert.equal(open.length, 1);
    assert.equal(open[0]?.repeats, 2);
    const id = open[0]?.id ?? 0;
    assert.equal((await call('POST', `/api/v1/escalations/${id}/reject`, {})).status, 400, 'a rejection needs a reason');
    const rej = await call('POST', `/api/v1/escalations/${id}/reject`, { reason: 'vendor tool owns it', expiresIn: '2d' });
    assert.equal(rej.status, 200);
    assert.equal(rej.json<{ status: string; outcome: string }>().status, 'rejected');
    assert.equal((await call('POST', `/api/v1/escalations/${id}/approve`, {})).status, 409, 'decided once');
    const [pending] = await core.escalations.pending(agent.id);
    assert.ok(pending?.decisionPayload && pending.decisionSignature);
    assert.ok(verifyBytes(core.signingKey.publicKey, pending.decisionPayload, pending.decisionSignature));
    const doc = decodeDecisionDoc(pending.decisionPayload);
    assert.equal(doc.action, 'reject');
    assert.equal(doc.agentId, agent.id);
    assert.ok(doc.expiresAt > Date.now() + 86_400_000);
    await core.escalations.acknowledged(agent.id, { escalationId: String(id), ok: true, error: '' });
    assert.equal((await call('GET', `/api/v1/escalations/${id}`)).json<{ outcome: string }>().outcome, 'done');
  });

  it('issues expiring, bounded enrollment tokens carrying the certificate fingerprint, stored hashed', async () => {
    const res = await call('POST', '/api/v1/enrollment-tokens', { ttl: '1h', maxUses: 1, labels: { zone: 'a' }, allowLabels: ['role'] });
    assert.equal(res.status, 201);
    const { token } = res.json<{ token: string }>();
    assert.match(token, /^hsj2\.[0-9a-f]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}\.FP$/);
    const listed = (await call('GET', '/api/v1/enrollment-tokens')).text();
    assert.ok(!listed.includes(token.split('.')[2] ?? '-'), 'the secret is never listed');
    const { agent } = await core.enrollment.enroll(token, { labels: { role: 'web' }, protocolVersion: 1, agentVersion: 't' });
    assert.deepEqual(agent.labels, { zone: 'a', role: 'web' });
    await assert.rejects(core.enrollment.enroll(token, { labels: {}, protocolVersion: 1, agentVersion: 't' }), /used up/);
    await assert.rejects(core.enrollment.enroll(`${token.slice(0, -3)}xFP`, { labels: {}, protocolVersion: 1, agentVersion: 't' }));
    const revoked = await call('POST', `/api/v1/agents/${agent.id}/revoke`);
    assert.equal(revoked.json<{ revoked: boolean }>().revoked, true);
    await assert.rejects(core.enrollment.authenticate(agent.id, 'whatever'), /wrong credential|revoked/);
  });
});
