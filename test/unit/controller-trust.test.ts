// What the agent admits from the controller: signatures by the pinned key only, expiry, forward-only versions with signed
// rollbacks, removals and plans signed for it, nothing older than a removal, decisions addressed to it; which labels the
// controller trusts; plus the shared pieces the trust rests on (join tokens, signing domains, selectors, transport policy,
// backoff, certs, the gateway's limits).
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Backoff, DEFAULT_BACKOFF } from '../../agent/link/backoff.js';
import { checkTransport } from '../../agent/link/connection.js';
import { admit, removalApplies, verifyDecision, verifyPlan, verifyRemoval, verifySigned } from '../../agent/link/trust.js';
import { requestedByOldAgent, trustedLabels } from '../../controller/agent-labels.js';
import { DEFAULT_GATEWAY_OPTIONS } from '../../controller/gateway/gateway.js';
import { PreAuthSlots, RateLimiter } from '../../controller/gateway/limits.js';
import { QuietLog } from '../../controller/gateway/quiet-log.js';
import { metricCode } from '../../controller/gateway/session.js';
import { certFingerprint, generateSelfSignedCert } from '../../controller/tls/selfsigned.js';
import { ManualClock } from '../../lib/clock.js';
import { formatJoinToken, parseJoinToken } from '../../lib/join-token.js';
import { labelAllowed, labelProblem, parseLabelAllowance, parseLabels, selectorMatches } from '../../lib/labels.js';
import type { Logger } from '../../lib/log.js';
import { generateSigningKey, publicKeyFingerprint, signBytes, signInDomain, verifyBytes, verifyInDomain, type SigningKey } from '../../lib/signing.js';
import {
  decodeBaselineDoc,
  decodeDecisionDoc,
  encodeBaselineDoc,
  encodeDecisionDoc,
  encodePlanDoc,
  encodeRemovalDoc,
  type BaselineDoc,
  type HostFacts,
  type PlanDoc,
  type RemovalDoc,
  type SignedBaseline,
  type SignedDoc,
} from '../../proto/codec.js';

const NOW = 1_000_000;

function signed(key: SigningKey, over: Partial<BaselineDoc> = {}): { s: SignedBaseline; doc: BaselineDoc } {
  const doc: BaselineDoc = { name: 'web', version: 2, sha256: 'aa', yaml: 'y', sources: {}, file: 'web.yaml', issuedAt: NOW - 10, expiresAt: NOW + 1000, rollback: false, ...over };
  const payload = Buffer.from(encodeBaselineDoc(doc));
  return { s: { payload, signature: signBytes(key, payload), keyId: key.keyId }, doc };
}

function removal(key: SigningKey, over: Partial<RemovalDoc> = {}): SignedDoc {
  const payload = Buffer.from(encodeRemovalDoc({ agentId: 'ag-1', name: 'web', version: 2, issuedAt: NOW, ...over }));
  return { payload, signature: signInDomain(key, 'removal', payload), keyId: key.keyId };
}

function plan(key: SigningKey, over: Partial<PlanDoc> = {}): SignedDoc {
  const payload = Buffer.from(encodePlanDoc({ planId: '7', agentId: 'ag-1', baseline: encodeBaselineDoc(signed(key).doc), issuedAt: NOW, expiresAt: NOW + 1000, requestedBy: 'op', ...over }));
  return { payload, signature: signInDomain(key, 'plan', payload), keyId: key.keyId };
}

const FACTS: HostFacts = { hostname: 'Web-01.example', os: 'Debian GNU/Linux', osRelease: '12', kernel: '6.1.0-18-amd64', arch: 'x64', cpu: 'x', cpuCores: 2, memoryBytes: 1 };

describe('controller trust (agent side)', () => {
  const { key } = generateSigningKey();
  const { key: other } = generateSigningKey();

  it('admits a first version signed by the pinned key', () => {
    assert.equal(admit(signed(key).s, key.publicKey, undefined, NOW).kind, 'new');
  });

  it('refuses a baseline signed by an unknown key, even one claiming the pinned key id', () => {
    const a = admit(signed(other).s, key.publicKey, undefined, NOW);
    assert.equal(a.kind, 'refused');
    assert.equal(a.kind === 'refused' && a.code, 'HS_BASELINE_SIGNATURE');
    const forged = { ...signed(other).s, keyId: key.keyId };
    assert.equal(admit(forged, key.publicKey, undefined, NOW).kind, 'refused');
  });

  it('refuses a tampered payload under a genuine signature', () => {
    const { s } = signed(key);
    const evil = encodeBaselineDoc({ ...signed(key).doc, yaml: 'evil' });
    const a = admit({ ...s, payload: evil }, key.publicKey, undefined, NOW);
    assert.ok(a.kind === 'refused' && a.code === 'HS_BASELINE_SIGNATURE');
  });

  it('refuses an expired signature', () => {
    const a = admit(signed(key, { expiresAt: NOW }).s, key.publicKey, undefined, NOW);
    assert.ok(a.kind === 'refused' && a.code === 'HS_BASELINE_STALE');
  });

  it('moves forward, renews in place, and refuses a replayed older version', () => {
    const cur = signed(key, { version: 3, issuedAt: NOW - 5 }).doc;
    assert.equal(admit(signed(key, { version: 4 }).s, key.publicKey, cur, NOW).kind, 'new');
    assert.equal(admit(signed(key, { version: 3, issuedAt: NOW - 1 }).s, key.publicKey, cur, NOW).kind, 'renewal');
    assert.equal(admit(signed(key, { version: 3, issuedAt: NOW - 5 }).s, key.publicKey, cur, NOW).kind, 'unchanged');
    const replay = admit(signed(key, { version: 2, issuedAt: NOW - 100 }).s, key.publicKey, cur, NOW);
    assert.ok(replay.kind === 'refused' && replay.code === 'HS_BASELINE_STALE');
    const sameNumberOtherContent = admit(signed(key, { version: 3, sha256: 'bb', issuedAt: NOW }).s, key.publicKey, cur, NOW);
    assert.equal(sameNumberOtherContent.kind, 'refused');
  });

  it('accepts an older version only as a signed rollback issued after the current one', () => {
    const cur = signed(key, { version: 3, issuedAt: NOW - 5 }).doc;
    assert.equal(admit(signed(key, { version: 2, rollback: true, issuedAt: NOW - 1 }).s, key.publicKey, cur, NOW).kind, 'new');
    // An old rollback document replayed after a later roll-forward is refused.
    assert.equal(admit(signed(key, { version: 2, rollback: true, issuedAt: NOW - 50 }).s, key.publicKey, cur, NOW).kind, 'refused');
  });

  it('after a removal accepts only documents issued later: no older version, and no copy signed before the removal', () => {
    const prior = { version: 3, sha256: 'aa', issuedAt: NOW - 50, removedAt: NOW - 10 };
    const older = admit(signed(key, { version: 2, issuedAt: NOW - 100 }).s, key.publicKey, prior, NOW);
    assert.ok(older.kind === 'refused' && older.code === 'HS_BASELINE_STALE', 'the older version replayed after the removal');
    const sameBefore = admit(signed(key, { version: 3, issuedAt: NOW - 50 }).s, key.publicKey, prior, NOW);
    assert.ok(sameBefore.kind === 'refused' && /before its removal/.test(sameBefore.message), 'the removed version itself, signed before the removal');
    const olderAfter = admit(signed(key, { version: 2, issuedAt: NOW - 5 }).s, key.publicKey, prior, NOW);
    assert.ok(olderAfter.kind === 'refused', 'an older version issued after the removal is still no rollback');
    assert.equal(admit(signed(key, { version: 3, issuedAt: NOW - 5 }).s, key.publicKey, prior, NOW).kind, 'new', 're-issued after the removal');
    assert.equal(admit(signed(key, { version: 2, rollback: true, issuedAt: NOW - 5 }).s, key.publicKey, prior, NOW).kind, 'new', 'a signed rollback after it');
    assert.equal(admit(signed(key, { version: 3, sha256: 'bb', issuedAt: NOW - 5 }).s, key.publicKey, prior, NOW).kind, 'refused', 'other content under the same number');
  });

  it('acts on removals signed in their domain for this agent and issued after what they remove', () => {
    const good = verifyRemoval(removal(key), key.publicKey, 'ag-1');
    assert.ok('doc' in good && good.doc.name === 'web');
    assert.ok(!('doc' in verifyRemoval(removal(key), key.publicKey, 'ag-2')), 'addressed to another agent');
    assert.ok(!('doc' in verifyRemoval(removal(other), key.publicKey, 'ag-1')), 'signed by another key');
    const payload = Buffer.from(encodeRemovalDoc({ agentId: 'ag-1', name: 'web', version: 2, issuedAt: NOW }));
    assert.ok(!('doc' in verifyRemoval({ payload, signature: signBytes(key, payload), keyId: key.keyId }, key.publicKey, 'ag-1')), 'signed outside the removal domain');
    assert.ok(!('doc' in verifyRemoval({ payload, signature: signInDomain(key, 'plan', payload), keyId: key.keyId }, key.publicKey, 'ag-1')), 'signed as a plan');
    const r = { agentId: 'ag-1', name: 'web', version: 2, issuedAt: NOW };
    assert.ok(removalApplies(r, { version: 2, sha256: 'a', issuedAt: NOW - 1 }));
    assert.ok(!removalApplies(r, { version: 3, sha256: 'a', issuedAt: NOW + 1 }), 'a removal older than the enforced document');
    assert.ok(!removalApplies(r, { version: 2, sha256: 'a', issuedAt: NOW - 5, removedAt: NOW }), 'the same removal again');
  });

  it('answers only plan requests signed for this agent and plan, before they expire', () => {
    assert.ok('doc' in verifyPlan(plan(key), '7', key.publicKey, 'ag-1', NOW));
    const refused = (s: SignedDoc | null, planId = '7', agent = 'ag-1'): string => {
      const v = verifyPlan(s, planId, key.publicKey, agent, NOW);
      return 'doc' in v ? 'accepted' : v.message;
    };
    assert.match(refused(null), /not signed/);
    assert.match(refused({ payload: Buffer.alloc(0), signature: Buffer.alloc(0), keyId: '' }), /not signed/);
    assert.match(refused(plan(key), '7', 'ag-2'), /addressed to ag-1/);
    assert.match(refused(plan(key), '8'), /carries the signed plan 7/);
    assert.match(refused(plan(key, { expiresAt: NOW })), /expired/);
    assert.match(refused(plan(other)), /does not verify/);
    const payload = Buffer.from(encodePlanDoc({ planId: '7', agentId: 'ag-1', baseline: Buffer.alloc(0), issuedAt: NOW, expiresAt: NOW + 1, requestedBy: '' }));
    assert.match(refused({ payload, signature: signInDomain(key, 'removal', payload), keyId: key.keyId }), /does not verify/, 'a removal signature is no plan signature');
  });

  it('keeps signing domains apart: a domain signature never verifies, or decodes, as a baseline or a decision', () => {
    const p = plan(key);
    assert.ok(verifyInDomain(key.publicKey, 'plan', p.payload, p.signature));
    assert.ok(!verifyBytes(key.publicKey, p.payload, p.signature), 'not as a bare signature');
    // What a replayer would try: the signed message itself as a baseline payload. It verifies, but never decodes.
    const message = Buffer.concat([Buffer.from([0x07]), Buffer.from('homeostat/plan/v1'), Buffer.from([0]), p.payload]);
    assert.ok(verifyBytes(key.publicKey, message, p.signature));
    const v = verifySigned({ payload: message, signature: p.signature, keyId: key.keyId }, key.publicKey);
    assert.ok(!('doc' in v) && v.code === 'HS_PROTOCOL');
    assert.throws(() => decodeBaselineDoc(message));
    assert.throws(() => decodeDecisionDoc(message));
  });

  it('acts only on decisions signed by the pinned key and addressed to this agent', () => {
    const doc = { escalationId: '1', agentId: 'ag-1', resource: 'file:/x', action: 'approve' as const, reason: '', expiresAt: 0, issuedAt: NOW, decidedBy: 'op' };
    const payload = Buffer.from(encodeDecisionDoc(doc));
    const good = { payload, signature: signBytes(key, payload), keyId: key.keyId };
    assert.ok('doc' in verifyDecision(good, key.publicKey, 'ag-1'));
    assert.ok(!('doc' in verifyDecision(good, key.publicKey, 'ag-2')));
    assert.ok(!('doc' in verifyDecision({ ...good, signature: signBytes(other, payload) }, key.publicKey, 'ag-1')));
  });

  it('parses join tokens with and without a fingerprint, and refuses junk', () => {
    const key = 'k'.repeat(43);
    const tls = 't'.repeat(43);
    const t = { id: 'abc123', secret: 's3cr3t', signingKey: key, fingerprint: tls };
    assert.deepEqual(parseJoinToken(formatJoinToken(t)), { format: 2, ...t });
    assert.deepEqual(parseJoinToken(formatJoinToken({ ...t, fingerprint: null })), { format: 2, ...t, fingerprint: null });
    assert.deepEqual(parseJoinToken('hsj1.abc.def'), { format: 1, id: 'abc', secret: 'def', signingKey: null, fingerprint: null }, 'the first format still parses');
    for (const bad of ['', 'hsj2.a.b', `hsj2.a.b.${key.slice(1)}`, 'hsj1.a', 'hsj1.a.b.c.d', 'hsj1.a b.c', `hsj2.a.b.${key}.${tls}.x`]) assert.throws(() => parseJoinToken(bad), bad);
  });

  it('matches selectors against labels', () => {
    const labels = parseLabels('role=web,zone=a');
    assert.ok(selectorMatches(undefined, labels));
    assert.ok(selectorMatches({ matchLabels: { role: 'web' } }, labels));
    assert.ok(!selectorMatches({ matchLabels: { role: 'db' } }, labels));
    assert.ok(!selectorMatches({ matchLabels: { role: 'web', tier: '1' } }, labels));
    assert.throws(() => parseLabels('bad label'));
  });

  it('trusts labels from the token and the operator, and from the agent only what the token allows', () => {
    const base = { token: { env: 'staging' }, allow: parseLabelAllowance('role,zone=eu-*,tier=web'), facts: null, operator: {} };
    assert.deepEqual(trustedLabels({ ...base, requested: { role: 'db', zone: 'eu-west', tier: 'web' } }), { labels: { role: 'db', zone: 'eu-west', tier: 'web', env: 'staging' }, refused: [] });
    const r = trustedLabels({ ...base, requested: { env: 'prod', canary: 'yes', zone: 'us-east', tier: 'db', role: 'web' } });
    assert.deepEqual(r.labels, { role: 'web', env: 'staging' }, 'nothing refused is merged');
    assert.deepEqual(r.refused.map((x) => x.split(' ')[0]), ['env=prod', 'canary=yes', 'zone=us-east', 'tier=db']);
    assert.match(r.refused[0] ?? '', /the join token sets env=staging/);
    const op = trustedLabels({ ...base, requested: { role: 'web' }, operator: { role: 'db', canary: 'yes' } });
    assert.deepEqual(op, { labels: { env: 'staging', role: 'db', canary: 'yes' }, refused: [] }, 'the operator wins and may set anything');
    // Host facts are reports: they select only where the token allows their key.
    assert.deepEqual(trustedLabels({ ...base, requested: {}, facts: FACTS }).labels, { env: 'staging' });
    const withFacts = trustedLabels({ ...base, allow: parseLabelAllowance('os,hostname=web-*'), requested: {}, facts: FACTS });
    assert.deepEqual(withFacts.labels, { os: 'debian-gnu-linux', hostname: 'web-01.example', env: 'staging' });
    // A protocol 2 agent folded its facts into its labels: those are reports, anything else is a request.
    assert.deepEqual(requestedByOldAgent({ hostname: 'web-01.example', os: 'debian-gnu-linux', kernel: 'other', role: 'web' }, FACTS), { kernel: 'other', role: 'web' });
  });

  it('reads label allowances and bounds labels from outside', () => {
    const allow = parseLabelAllowance(['role', 'zone=eu-*', 'tier=web,tier=db']);
    assert.deepEqual(allow, ['role=*', 'zone=eu-*', 'tier=web', 'tier=db']);
    assert.ok(labelAllowed(allow, 'role', 'anything') && labelAllowed(allow, 'zone', 'eu-') && labelAllowed(allow, 'tier', 'db'));
    assert.ok(!labelAllowed(allow, 'zone', 'us-eu-1') && !labelAllowed(allow, 'tier', 'cache') && !labelAllowed(allow, 'env', 'x'));
    assert.ok(!labelAllowed(['a.b=x.y'], 'a.b', 'xzy'), 'a dot matches only a dot');
    assert.ok(labelAllowed(['role'], 'role', 'web') && !labelAllowed(['role'], 'rol', 'web'), 'a bare key, as given in code, allows any value of that key');
    for (const bad of ['=x', 'k=v v', 'k=(a)', 'k=a|b']) assert.throws(() => parseLabelAllowance(bad), bad);
    assert.equal(labelProblem({ role: 'web' }), null);
    assert.match(labelProblem({ 'bad key': 'x' }) ?? '', /malformed/);
    assert.match(labelProblem(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']))) ?? '', /at most 64/);
    assert.ok(!selectorMatches({ matchLabels: { toString: '' } }, {}), 'inherited properties are no labels');
  });

  it('allows plain ws:// only with --insecure-http, and never for a token or enrollment that pins TLS', () => {
    const token = parseJoinToken(formatJoinToken({ id: 'a', secret: 'b', signingKey: 'k'.repeat(43), fingerprint: null }));
    const tlsToken = parseJoinToken(formatJoinToken({ id: 'a', secret: 'b', signingKey: 'k'.repeat(43), fingerprint: 't'.repeat(43) }));
    const ok = (p: Parameters<typeof checkTransport>[0]): boolean => {
      try {
        checkTransport(p);
        return true;
      } catch {
        return false;
      }
    };
    const ws = 'ws://ctl:7400';
    assert.ok(ok({ url: 'wss://ctl:7400', insecureHttp: false, token: tlsToken, creds: undefined }));
    assert.ok(!ok({ url: ws, insecureHttp: false, token, creds: undefined }), 'ws:// without the flag');
    assert.ok(ok({ url: ws, insecureHttp: true, token, creds: undefined }));
    assert.ok(!ok({ url: ws, insecureHttp: true, token: tlsToken, creds: undefined }), 'a token that pins TLS');
    assert.ok(!ok({ url: 'http://ctl:7400', insecureHttp: true, token: tlsToken, creds: undefined }), 'http:// is ws://');
    assert.ok(!ok({ url: ws, insecureHttp: true, token: null, creds: { tlsFingerprint: 't', insecureHttp: false } }), 'an enrollment that pinned TLS');
    assert.ok(!ok({ url: ws, insecureHttp: true, token: null, creds: { tlsFingerprint: null, insecureHttp: false } }), 'an enrollment over wss:// (CA-checked)');
    assert.ok(ok({ url: ws, insecureHttp: true, token: null, creds: { tlsFingerprint: null, insecureHttp: true } }), 'enrolled that way');
    assert.ok(!ok({ url: ws, insecureHttp: false, token: null, creds: { tlsFingerprint: null, insecureHttp: true } }), 'and still only with the flag');
    assert.equal(publicKeyFingerprint(key.publicKey).length, 43);
  });

  it('limits strangers: attempts per key, connections before hello, log lines per kind, metric label values', () => {
    const clock = new ManualClock(0);
    const rl = new RateLimiter({ burst: 3, perSecond: 1 }, clock, 100);
    assert.deepEqual([rl.take('a'), rl.take('a'), rl.take('a'), rl.take('a'), rl.take('b')], [true, true, true, false, true]);
    assert.ok(rl.exhausted('a'));
    clock.advance(1000);
    assert.ok(rl.take('a') && !rl.take('a'), 'one regained per second');
    for (let i = 0; i < 1000; i++) rl.take(`k${i}`);
    assert.ok(rl.size() <= 100, 'a flood of keys does not grow the map');
    const slots = new PreAuthSlots({ perAddress: 2, total: 3 });
    const a1 = slots.acquire('a');
    const a2 = slots.acquire('a');
    assert.ok(a1 && a2 && slots.acquire('a') === null, 'per address');
    const b1 = slots.acquire('b');
    assert.ok(b1 && slots.acquire('c') === null, 'in total');
    a1.release();
    a1.release();
    assert.deepEqual(slots.counts(), { total: 2, addresses: 2 }, 'a slot is released once');
    a2.release();
    b1.release();
    assert.deepEqual(slots.counts(), { total: 0, addresses: 0 });
    const lines: string[] = [];
    const log = { warn: (_f: unknown, m: string) => lines.push(m), info: (_f: unknown, m: string) => lines.push(m) } as unknown as Logger;
    const quiet = new QuietLog(log, clock, { perWindow: 2, windowMs: 1000, maxKeys: 10 });
    for (let i = 0; i < 50; i++) quiet.write('warn', 'refused', {}, 'agent refused');
    assert.equal(lines.length, 2);
    clock.advance(1000);
    quiet.write('warn', 'refused', {}, 'agent refused');
    assert.deepEqual(lines.slice(2), ['similar log lines left out', 'agent refused']);
    assert.deepEqual(['HS_AUTH', 'HS_WHATEVER', '', 'x'.repeat(500)].map(metricCode), ['HS_AUTH', 'other', 'unknown', 'other']);
    assert.ok(DEFAULT_GATEWAY_OPTIONS.helloTimeoutMs <= 5000 && DEFAULT_GATEWAY_OPTIONS.preAuthBytes <= 64 * 1024);
  });

  it('backs off exponentially with jitter, capped, and starts over after a success', () => {
    let r = 0;
    const b = new Backoff({ baseMs: 100, maxMs: 1000, random: () => r });
    assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [50, 100, 200, 400, 500]);
    r = 0.999;
    assert.ok(b.next() <= 1000 && b.next() >= 500);
    b.reset();
    r = 0;
    assert.equal(b.next(), 50);
    // The default step stops at 30 s: a controller back after an outage is not left waiting a minute.
    const d = new Backoff({ ...DEFAULT_BACKOFF, random: () => 0.999 });
    const steps = Array.from({ length: 20 }, () => d.next());
    assert.ok(Math.max(...steps) <= 30_000 && Math.max(...steps) >= 29_000, String(Math.max(...steps)));
  });

  it('generates a self-signed certificate with the names asked for and a stable fingerprint', () => {
    const c = generateSelfSignedCert(['localhost', '10.77.1.1', 'ctl.example']);
    const x = new X509Certificate(c.certPem);
    assert.ok(x.verify(x.publicKey));
    assert.match(x.subjectAltName ?? '', /DNS:localhost.*IP Address:10\.77\.1\.1.*DNS:ctl\.example/);
    assert.equal(certFingerprint(c.certPem), certFingerprint(c.certPem));
    assert.match(certFingerprint(c.certPem), /^[A-Za-z0-9_-]{43}$/);
  });
});
