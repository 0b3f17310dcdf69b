// What the agent admits from the controller: signatures by the pinned key only, expiry, forward-only versions with signed
// rollbacks, decisions addressed to it; plus the shared pieces the trust rests on (join tokens, selectors, backoff, certs).
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Backoff } from '../../agent/link/backoff.js';
import { admit, verifyDecision } from '../../agent/link/trust.js';
import { certFingerprint, generateSelfSignedCert } from '../../controller/tls/selfsigned.js';
import { formatJoinToken, parseJoinToken } from '../../lib/join-token.js';
import { parseLabels, selectorMatches } from '../../lib/labels.js';
import { generateSigningKey, signBytes, type SigningKey } from '../../lib/signing.js';
import { encodeBaselineDoc, encodeDecisionDoc, type BaselineDoc, type SignedBaseline } from '../../proto/codec.js';

const NOW = 1_000_000;

function signed(key: SigningKey, over: Partial<BaselineDoc> = {}): { s: SignedBaseline; doc: BaselineDoc } {
  const doc: BaselineDoc = { name: 'web', version: 2, sha256: 'aa', yaml: 'y', sources: {}, file: 'web.yaml', issuedAt: NOW - 10, expiresAt: NOW + 1000, rollback: false, ...over };
  const payload = Buffer.from(encodeBaselineDoc(doc));
  return { s: { payload, signature: signBytes(key, payload), keyId: key.keyId }, doc };
}

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

  it('backs off exponentially with jitter, capped, and starts over after a success', () => {
    let r = 0;
    const b = new Backoff({ baseMs: 100, maxMs: 1000, random: () => r });
    assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [50, 100, 200, 400, 500]);
    r = 0.999;
    assert.ok(b.next() <= 1000 && b.next() >= 500);
    b.reset();
    r = 0;
    assert.equal(b.next(), 50);
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
