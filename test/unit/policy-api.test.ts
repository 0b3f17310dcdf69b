// Policies and decision records at the controller, through its app factory with no socket: policy versions validated with
// located errors, immutable and diffed; policy rollouts signed in the policy domain and renewed like baselines; rollout
// requests naming exactly one document; events keeping the actor, decision, changed fields and risk within their bounds;
// the opponent read from a fight's words; and the store migrating an older database.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createControllerCore, type ControllerCore } from '../../controller/core.js';
import { boundEvent, FIELD_LIMITS } from '../../controller/event-limits.js';
import { actorOf, opponentOf } from '../../controller/escalations.js';
import { MIGRATIONS, SqliteControllerStore } from '../../controller/store/sqlite.js';
import type { EventInput } from '../../controller/store/types.js';
import { ManualClock } from '../../lib/clock.js';
import { findFight } from '../../lib/policy/index.js';
import { openDatabase } from '../../lib/sqlite.js';
import { verifyBytes, verifyInDomain } from '../../lib/signing.js';
import { decodePolicyDoc } from '../../proto/codec.js';

const ADMIN = 'policy-api-admin';
const policy = (name: string, rule: string, extra = ''): string =>
  `apiVersion: homeostat/v1\nkind: Policy\nmetadata:\n  name: ${name}\nspec:\n${extra}  rules:\n    - match: { resource: "${rule}" }\n      action: escalate\n`;

describe('policies at the controller (app factory, no socket)', () => {
  let dir: string;
  let core: ControllerCore;
  const call = (method: string, url: string, body?: unknown, headers: Record<string, string> = {}) =>
    core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}`, ...headers }, ...(body === undefined ? {} : { body: body as object }) });

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-policy-api-'));
    core = await createControllerCore({ dataDir: dir, adminToken: ADMIN, fingerprint: null });
  });
  afterEach(async () => {
    await core.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores immutable versions, returns the latest for the same text, lists and diffs them', async () => {
    const one = await call('POST', '/api/v1/policies', { yaml: policy('fleet', 'file:/etc/ssh/*'), file: 'fleet.yaml' });
    assert.equal(one.status, 201);
    assert.deepEqual(
      (({ name, version, created }) => ({ name, version, created }))(one.json<{ name: string; version: number; created: boolean }>()),
      { name: 'fleet', version: 1, created: true },
    );
    const same = await call('POST', '/api/v1/policies', { yaml: policy('fleet', 'file:/etc/ssh/*') });
    assert.equal(same.status, 200);
    assert.equal(same.json<{ version: number }>().version, 1);
    // The YAML itself as the body, named by ?file=.
    const raw = await core.app.inject({ method: 'POST', url: '/api/v1/policies?file=fleet.yaml', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/yaml' }, body: policy('fleet', 'file:/etc/*') });
    assert.equal(raw.json<{ version: number }>().version, 2);
    const list = (await call('GET', '/api/v1/policies')).json<{ name: string; latest: number; target: unknown; versions: { version: number; rules: number }[] }[]>();
    assert.deepEqual(list.map((p) => [p.name, p.latest, p.target, p.versions.map((v) => v.rules)]), [['fleet', 2, null, [1, 1]]]);
    assert.deepEqual((await call('GET', '/api/v1/policies/fleet/versions')).json<{ version: number }[]>().map((v) => v.version), [1, 2]);
    const v2 = (await call('GET', '/api/v1/policies/fleet/versions/2')).json<{ yaml: string; file: string }>();
    assert.equal(v2.file, 'fleet.yaml');
    assert.match(v2.yaml, /file:\/etc\/\*/);
    const diff = (await call('GET', '/api/v1/policies/fleet/diff?from=1&to=2')).json<{ diff: string }>().diff;
    assert.match(diff, /^--- fleet\.yaml/m);
    assert.match(diff, /-    - match: \{ resource: "file:\/etc\/ssh\/\*" \}\n\+    - match: \{ resource: "file:\/etc\/\*" \}/);
    assert.equal((await call('GET', '/api/v1/policies/nope')).status, 404);
    assert.equal((await call('GET', '/api/v1/policies/fleet/versions/9')).status, 404);
  });

  it('refuses an invalid policy with 422 and every problem located at file:line:column and field, storing nothing', async () => {
    const bad = policy('fleet', 'file:/etc/ssh/*').replace('action: escalate', 'action: escalte').replace('  rules:', '  maintenanceWindows:\n    - name: w\n      cron: "0 25 * * 0"\n      duration: 2h\n  rules:');
    const r = await call('POST', '/api/v1/policies', { yaml: bad, file: 'fleet.yaml' });
    assert.equal(r.status, 422);
    const issues = r.json<{ error: { issues: { code: string; location: { file: string; line: number; column: number; field: string } }[] } }>().error.issues;
    assert.deepEqual(
      issues.map((i) => `${i.location.file}:${i.location.line}:${i.location.column} ${i.location.field} ${i.code}`),
      ['fleet.yaml:8:13 spec.maintenanceWindows[0].cron HS_POLICY_INVALID', 'fleet.yaml:12:15 spec.rules[0].action HS_POLICY_INVALID'],
    );
    assert.deepEqual((await call('GET', '/api/v1/policies')).json<unknown[]>(), []);
    assert.equal((await call('POST', '/api/v1/policies', { yaml: 'a: [' })).status, 422, 'not even YAML');
  });

  it('keeps the name of the tuning policy to tuning: a push under it is refused with 409, storing nothing', async () => {
    const r = await call('POST', '/api/v1/policies', { yaml: policy('homeostat-tuning', 'file:/etc/motd'), file: 'mine.yaml' });
    assert.equal(r.status, 409);
    assert.match(r.json<{ error: { message: string } }>().error.message, /^mine\.yaml: the policy name homeostat-tuning is kept for accepted tuning proposals/);
    assert.deepEqual((await call('GET', '/api/v1/policies')).json<unknown[]>(), []);
    // Tuning itself writes it.
    const own = await core.policies.push({ yaml: policy('homeostat-tuning', 'file:/etc/motd'), file: 'homeostat-tuning.yaml', tuning: true });
    assert.equal(own.record.version, 1);
  });

  it('rolls a policy out signed in the policy domain, never as a baseline, and renews it like a baseline', async () => {
    const clock = new ManualClock(Date.now());
    await core.close();
    core = await createControllerCore({ dataDir: dir, adminToken: ADMIN, fingerprint: null, clock, signatureValidityMs: 10_000 });
    await call('POST', '/api/v1/policies', { yaml: policy('fleet', 'file:/etc/ssh/*') });
    const r = await call('POST', '/api/v1/rollouts', { policy: 'fleet', version: 1 });
    assert.equal(r.status, 201);
    assert.deepEqual((({ state, document, policy: p }) => ({ state, document, policy: p }))(r.json<{ state: string; document: string; policy: string }>()), { state: 'completed', document: 'policy', policy: 'fleet' });
    const t = core.policies.target('fleet');
    assert.ok(t);
    assert.ok(verifyInDomain(core.signingKey.publicKey, 'policy', t.payload, t.signature));
    assert.equal(verifyBytes(core.signingKey.publicKey, t.payload, t.signature), false);
    assert.equal(verifyInDomain(core.signingKey.publicKey, 'removal', t.payload, t.signature), false);
    assert.equal(decodePolicyDoc(t.payload).version, 1);
    assert.equal(core.baselines.target('fleet'), undefined, 'a policy is no baseline');
    clock.advance(6_000);
    assert.ok((await core.policies.renewDue()) >= 1);
    const renewed = core.policies.target('fleet');
    assert.ok(renewed && renewed.issuedAt > t.issuedAt && verifyInDomain(core.signingKey.publicKey, 'policy', renewed.payload, renewed.signature));
    // A restarted controller hands out the same target.
    await core.close();
    core = await createControllerCore({ dataDir: dir, adminToken: ADMIN, fingerprint: null, clock, signatureValidityMs: 10_000 });
    assert.equal(core.policies.target('fleet')?.issuedAt, renewed.issuedAt);
    const listed = (await call('GET', '/api/v1/rollouts')).json<{ document: string; policy?: string; baseline?: string }[]>();
    assert.deepEqual(listed.map((x) => [x.document, x.policy, x.baseline]), [['policy', 'fleet', undefined]]);
    // A version a paused rollout staged is renewed too, and kept with its rollout.
    await call('POST', '/api/v1/policies', { yaml: policy('fleet', 'file:/etc/*') });
    const now = clock.now();
    const paused = await core.store.addRollout({
      document: 'policy', baseline: 'fleet', version: 2, previousVersion: 1, strategy: 'waves', rollback: false, createdAt: now, state: 'paused',
      spec: { waves: [50, 100], gate: { maxFailedHosts: 0, soakSeconds: 0, ackTimeoutSeconds: 60 }, canary: null, onFailure: 'pause', onEscalation: 'pause' },
      currentWave: 0, waveStartedAt: now, reason: 'paused by an operator', pausedFor: 'operator', updatedAt: now, finishedAt: null, signed: null,
    });
    const stagedAt = (await core.policies.stage('fleet', 2, paused.id)).record.issuedAt;
    core.policies.admit('fleet', ['ag-1']);
    clock.advance(6_000);
    assert.ok((await core.policies.renewDue()) >= 1);
    const kept = (await core.store.getRollout(paused.id))?.signed;
    assert.ok(kept && kept.issuedAt > stagedAt);
    assert.ok(verifyInDomain(core.signingKey.publicKey, 'policy', kept.payload, kept.signature));
    assert.equal(decodePolicyDoc(kept.payload).version, 2);
    const sent = core.policies.assignmentFor({}, 'ag-1').docs[0];
    assert.equal(sent && decodePolicyDoc(sent.payload).issuedAt, kept.issuedAt, 'the admitted agent is sent the renewed signature');
  });

  it('takes a rollout of exactly one of "baseline" and "policy"', async () => {
    await call('POST', '/api/v1/policies', { yaml: policy('fleet', 'file:/etc/ssh/*') });
    assert.equal((await call('POST', '/api/v1/rollouts', { version: 1 })).status, 400);
    assert.equal((await call('POST', '/api/v1/rollouts', { baseline: 'fleet', policy: 'fleet', version: 1 })).status, 400);
    assert.equal((await call('POST', '/api/v1/rollouts', { policy: 7, version: 1 })).status, 400);
    assert.equal((await call('POST', '/api/v1/rollouts', { baseline: 'fleet', version: 1 })).status, 404, 'no baseline of that name');
    assert.equal((await call('POST', '/api/v1/rollouts', { policy: 'fleet', version: 2 })).status, 404);
  });

  it('keeps the actor, decision, changed fields and risk of each event, within their bounds', async () => {
    const t = await core.enrollment.createToken();
    const { agent } = await core.enrollment.enroll(t.token, { labels: {}, protocolVersion: 4, agentVersion: 't' });
    const ev = (seq: number, over: Partial<EventInput>): EventInput => ({
      seq, time: seq, resource: 'file:/a', event: 'drift_detected', trigger: 'watch', baseline: 'b', version: 1, observed: null, desired: null, diff: null, detail: null, prevHash: '', hash: `h${seq}`, ...over,
    });
    const actor = { source: 'audit', pid: 7, exe: '/usr/bin/vim', loginUser: 'alice' };
    await core.events.submit(agent.id, [
      ev(1, { actor: JSON.stringify(actor), decision: JSON.stringify({ action: 'repair', cause: 'rule', rule: { document: 'fleet', version: 2, index: 1 }, reason: 'r' }), changes: '["content","mode"]', risk: 'high' }),
      ev(2, {}),
      ev(3, { actor: JSON.stringify({ source: 'audit', cmdline: 'x'.repeat(20_000) }), changes: JSON.stringify(Array.from({ length: 100 }, (_, i) => `c${i}${'y'.repeat(100)}`)), risk: 'r'.repeat(100) }),
    ]);
    const rows = (await call('GET', `/api/v1/events?agent=${agent.id}`)).json<{ seq: number; actor: unknown; decision: { rule: unknown } | null; changes: string[]; risk: string | null }[]>();
    assert.deepEqual(rows[0]?.actor, actor);
    assert.deepEqual(rows[0]?.decision?.rule, { document: 'fleet', version: 2, index: 1 });
    assert.deepEqual([rows[0]?.changes, rows[0]?.risk], [['content', 'mode'], 'high']);
    assert.deepEqual([rows[1]?.actor, rows[1]?.decision, rows[1]?.changes, rows[1]?.risk], [null, null, [], null], 'unknown stays unknown');
    assert.deepEqual(rows[2]?.actor, { truncated: true, characters: JSON.stringify({ source: 'audit', cmdline: 'x'.repeat(20_000) }).length });
    assert.deepEqual(rows[2]?.changes, [], 'a list longer than any real one is dropped as unknown');
    assert.ok((rows[2]?.risk ?? '').length < 100);
    const stored = await core.store.listEvents({ agent: agent.id, limit: 3 });
    assert.equal(typeof stored[0]?.actor, 'string', 'the store keeps the JSON text, as the agent sent it');
    assert.deepEqual(stored.map((e) => e.changes), ['["content","mode"]', null, null]);
  });

  it('bounds each decision field alone and names it, leaving the others as they were', () => {
    const cut: string[] = [];
    const e: EventInput = { seq: 1, time: 1, resource: null, event: 'x', trigger: null, baseline: null, version: null, observed: null, desired: null, diff: null, detail: null, prevHash: '', hash: '', actor: '{"source":"self"}', decision: 'd'.repeat(FIELD_LIMITS.decision + 1) };
    const out = boundEvent(e, (f) => cut.push(f));
    assert.deepEqual(cut, ['decision']);
    assert.equal(out.actor, e.actor);
    assert.deepEqual(JSON.parse(out.decision ?? ''), { truncated: true, characters: FIELD_LIMITS.decision + 1 });
    const long = boundEvent({ ...e, decision: null, changes: JSON.stringify(['x'.repeat(FIELD_LIMITS.changes)]) }, (f) => cut.push(f));
    assert.equal(long.changes, null, 'a cut list would be no list: dropped as unknown');
    assert.deepEqual(cut, ['decision', 'changes']);
    assert.equal(boundEvent({ ...e, decision: null, changes: '["content"]' }, (f) => cut.push(f)).changes, '["content"]');
  });

  it('reads the opponent in the words findFight uses, and keeps only the known fields of an actor', () => {
    const t0 = 1_700_000_000_000;
    const puppet = { source: 'audit' as const, exe: '/usr/bin/puppet', unit: 'puppet.service', pid: 1 };
    const fight = findFight(
      Array.from({ length: 6 }, (_, i) => ({ time: t0 + i * 60_000, changes: ['content'], actor: { ...puppet, pid: i } })),
      { now: t0 + 10 * 60_000, windowMs: 10 * 60_000 },
    );
    assert.ok(fight);
    assert.equal(opponentOf(null, `suppressed after 6 repairs; ${fight.message}`), fight.opponent);
    assert.equal(opponentOf('stopped repairing', null), null);
    assert.deepEqual(actorOf(JSON.stringify({ source: 'audit', exe: '/bin/sh', pid: 'not a number', parents: ['/a', 3], extra: 'dropped', __proto__: { x: 1 } })), { source: 'audit', exe: '/bin/sh', parents: ['/a'] });
    assert.equal(actorOf(JSON.stringify({ source: 'telepathy' })), null);
    assert.equal(actorOf('not json'), null);
  });
});

describe('controller store migration', () => {
  it('brings a database of the previous schema to the current one, keeping rollouts as baseline rollouts that fail on escalations', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hs-ctl-migrate-'));
    const file = path.join(dir, 'controller.db');
    try {
      const db = openDatabase(file);
      for (const v of [1, 2, 3, 4]) {
        db.exec(MIGRATIONS[v - 1] ?? '');
        db.pragma(`user_version = ${v}`);
      }
      const spec = { waves: [100], gate: { maxFailedHosts: 0, soakSeconds: 0, ackTimeoutSeconds: 60 }, canary: null, onFailure: 'pause' };
      db.prepare("INSERT INTO rollouts (baseline, version, strategy, rollback, created_at, state, spec) VALUES ('web', 2, 'waves', 0, 1, 'paused', ?)").run(JSON.stringify(spec));
      db.prepare("INSERT INTO rollout_hosts (rollout_id, agent_id, wave, status, updated_at) VALUES (1, 'ag', 0, 'sent', 1)").run();
      db.prepare("INSERT INTO events (agent_id, seq, time, received_at, event, prev_hash, hash) VALUES ('ag', 1, 1, 1, 'repaired', '', 'h')").run();
      db.close();
      const store = new SqliteControllerStore(file);
      const [r] = await store.listRollouts();
      assert.deepEqual([r?.document, r?.baseline, r?.spec.onEscalation, r?.pausedFor], ['baseline', 'web', 'fail', 'operator']);
      assert.deepEqual((await store.listRolloutHosts(1))[0]?.escalations, []);
      const [e] = await store.listEvents({});
      assert.deepEqual([e?.actor, e?.decision, e?.changes, e?.risk], [null, null, null, null]);
      assert.deepEqual(await store.listPolicyVersions(), []);
      await store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
