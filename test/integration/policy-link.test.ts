// Policies on the agent's side of the link, with a real agent and its real store on disk: signed policy documents admitted
// by the same rules as baselines (pinned key, the policy's own signing domain, forward-only versions, signed removals only,
// the replay guard across restarts, expiry pausing enforcement), an invalid or unsigned version refused while the last good
// set stays, every step in the audit log, and the signed set cached so a restart without network holds it.
import assert from 'node:assert/strict';
import path from 'node:path';
import type { Agent } from '../../agent/agent.js';
import { composeAgent } from '../../agent/compose.js';
import { AssignmentKeeper } from '../../agent/link/assignments.js';
import { DEFAULT_SETTINGS } from '../../agent/settings.js';
import { AgentStore } from '../../agent/store/store.js';
import { createHash } from 'node:crypto';
import { ManualClock } from '../../lib/clock.js';
import { silentLogger } from '../../lib/log.js';
import { generateSigningKey, signBytes, signInDomain, type SigningKey } from '../../lib/signing.js';
import { encodePolicyDoc, encodeRemovalDoc, type Assignment, type AssignmentAck, type PolicyDoc, type SignedDoc } from '../../proto/codec.js';
import { tempDir } from '../helpers/agent.js';

const AGENT = 'ag-pol';
const NOW = 1_800_000_000_000;
const DAY = 86_400_000;

const policyYaml = (name: string, rule: string): string => `apiVersion: homeostat/v1
kind: Policy
metadata:
  name: ${name}
spec:
  rules:
    - match: { resource: "${rule}" }
      action: escalate
`;

function doc(name: string, version: number, yaml: string, over: Partial<PolicyDoc> = {}): PolicyDoc {
  return { name, version, sha256: createHash('sha256').update(yaml).digest('hex'), yaml, file: `${name}.yaml`, issuedAt: NOW + version, expiresAt: NOW + 30 * DAY, rollback: false, ...over };
}

function signPolicy(key: SigningKey, d: PolicyDoc): SignedDoc {
  const payload = Buffer.from(encodePolicyDoc(d));
  return { payload, signature: signInDomain(key, 'policy', payload), keyId: key.keyId };
}

function removal(key: SigningKey, name: string, issuedAt: number, domain: 'removal' | 'policy-removal'): SignedDoc {
  const payload = Buffer.from(encodeRemovalDoc({ agentId: AGENT, name, version: 0, issuedAt }));
  return { payload, signature: signInDomain(key, domain, payload), keyId: key.keyId };
}

const assignment = (policies: SignedDoc[], policyRemovals: SignedDoc[] = []): Assignment => ({ baselines: [], removals: [], policies, policyRemovals });
const held = (ack: AssignmentAck): string[] => ack.policies.map((p) => `${p.name}@${p.version}`);

describe('policies on the agent: admitted, refused, removed and cached like baselines', function () {
  this.timeout(20_000);
  const { key } = generateSigningKey();
  const { key: stranger } = generateSigningKey();
  const tmp = tempDir('hs-policy-link-');
  const stateDir = path.join(tmp.dir, 'state');
  const clock = new ManualClock(NOW);
  let store: AgentStore;
  let agent: Agent;
  let keeper: AssignmentKeeper;

  const open = async (): Promise<void> => {
    store = AgentStore.open(stateDir);
    agent = composeAgent({ settings: { ...DEFAULT_SETTINGS, stateDir }, log: silentLogger, store, clock });
    keeper = new AssignmentKeeper(agent, key.publicKey, AGENT, clock, silentLogger);
    await keeper.loadCache();
  };
  const close = async (): Promise<void> => {
    keeper.stop();
    await agent.stop();
    store.close();
  };
  const audit = (event: string): string[] => store.queryAudit({ event }).map((e) => `${e.baseline ?? '-'}@${e.version ?? '-'} ${e.trigger ?? '-'}: ${e.detail ?? ''}`);
  const active = (): string[] => agent.activePolicies().map((p) => `${p.document.name}@${p.version}`);

  const v1 = doc('fleet', 1, policyYaml('fleet', 'file:/etc/ssh/*'));
  const v2 = doc('fleet', 2, policyYaml('fleet', 'file:/etc/*'));

  before(open);
  after(async () => {
    await close();
    tmp.cleanup();
  });

  it('admits a policy signed in the policy domain by the pinned key, hands it to the agent and records policy_activated', async () => {
    const ack = await keeper.apply(assignment([signPolicy(key, v1)]));
    assert.deepEqual(held(ack), ['fleet@1']);
    assert.deepEqual(ack.policiesRejected, []);
    assert.deepEqual(ack.policyHeld.map((h) => [h.name, h.version, h.removed]), [['fleet', 1, false]]);
    assert.deepEqual(active(), ['fleet@1']);
    assert.equal(agent.activePolicies()[0]?.document.rules[0]?.action.type, 'escalate');
    assert.deepEqual(audit('policy_activated'), ['fleet@1 controller: fleet v1 (1 rules, 0 windows)']);
  });

  it('refuses a validly signed version that is not a valid policy, with its located errors, and keeps the last good one', async () => {
    const bad = doc('fleet', 2, policyYaml('fleet', 'file:/etc/ssh/*').replace('action: escalate', 'action: escalte'));
    const ack = await keeper.apply(assignment([signPolicy(key, bad)]));
    assert.deepEqual(held(ack), ['fleet@1'], 'the last good version stays');
    const [r] = ack.policiesRejected;
    assert.equal(r?.code, 'HS_POLICY_INVALID');
    assert.equal(r?.version, 2);
    assert.match(r?.message ?? '', /^fleet\.yaml:8:15: .*escalte.*spec\.rules\[0\]\.action/);
    assert.deepEqual(active(), ['fleet@1']);
    assert.match(audit('policy_rejected').at(-1) ?? '', /^fleet@2 controller: HS_POLICY_INVALID: fleet\.yaml:8:15/);
  });

  it('refuses a policy signed as a baseline, or by another key, or not matching its signed sha256', async () => {
    const asBaseline = signPolicy(key, v2);
    const bare = { ...asBaseline, signature: signBytes(key, asBaseline.payload) };
    const foreign = signPolicy(stranger, v2);
    const forged = { ...foreign, keyId: key.keyId };
    const mismatch = signPolicy(key, { ...v2, sha256: 'ff'.repeat(32) });
    for (const s of [bare, foreign, forged]) {
      const ack = await keeper.apply(assignment([s]));
      assert.equal(ack.policiesRejected[0]?.code, 'HS_POLICY_SIGNATURE', JSON.stringify(ack.policiesRejected));
      assert.deepEqual(held(ack), ['fleet@1']);
    }
    const ack = await keeper.apply(assignment([mismatch]));
    assert.equal(ack.policiesRejected[0]?.code, 'HS_POLICY_SIGNATURE');
    assert.match(ack.policiesRejected[0]?.message ?? '', /does not match its signed sha256/);
    assert.deepEqual(active(), ['fleet@1']);
    assert.ok(audit('policy_rejected').length >= 5, 'every refusal recorded');
  });

  it('moves forward only: a newer version is taken, the older one replayed is refused as stale', async () => {
    assert.deepEqual(held(await keeper.apply(assignment([signPolicy(key, v2)]))), ['fleet@2']);
    const replay = await keeper.apply(assignment([signPolicy(key, v1)]));
    assert.equal(replay.policiesRejected[0]?.code, 'HS_POLICY_STALE');
    assert.deepEqual(held(replay), ['fleet@2']);
    // A signed rollback issued after v2 is allowed.
    const back = await keeper.apply(assignment([signPolicy(key, { ...v1, issuedAt: NOW + 100, rollback: true })]));
    assert.deepEqual(held(back), ['fleet@1']);
    assert.deepEqual(held(await keeper.apply(assignment([signPolicy(key, { ...v2, issuedAt: NOW + 200 })]))), ['fleet@2']);
  });

  it('keeps a policy left out without a removal, refuses a baseline removal of its name, and drops it on a policy removal', async () => {
    const left = await keeper.apply(assignment([]));
    assert.deepEqual(held(left), ['fleet@2']);
    assert.equal(left.policiesRejected[0]?.code, 'HS_POLICY_SIGNATURE');
    // A removal signed for a baseline of the same name never removes a policy.
    const wrong = await keeper.apply(assignment([], [removal(key, 'fleet', NOW + 300, 'removal')]));
    assert.deepEqual(held(wrong), ['fleet@2']);
    assert.ok(wrong.policiesRejected.some((r) => r.code === 'HS_POLICY_SIGNATURE' && /policy-removal signature/.test(r.message)));
    const gone = await keeper.apply(assignment([], [removal(key, 'fleet', NOW + 300, 'policy-removal')]));
    assert.deepEqual(held(gone), []);
    assert.deepEqual(gone.policyHeld.map((h) => [h.name, h.removed, h.issuedAt]), [['fleet', true, NOW + 300]]);
    assert.deepEqual(active(), []);
    assert.match(audit('policy_removed').at(-1) ?? '', /^fleet@2 controller: fleet v2 removed by a signed removal/);
    // Anything issued up to the removal stays void, whatever its version.
    const replay = await keeper.apply(assignment([signPolicy(key, { ...v2, version: 3, issuedAt: NOW + 250 })]));
    assert.equal(replay.policiesRejected[0]?.code, 'HS_POLICY_STALE');
    assert.deepEqual(held(await keeper.apply(assignment([signPolicy(key, { ...v2, version: 3, issuedAt: NOW + 400 })]))), ['fleet@3']);
  });

  it('after a restart without network, holds the cached signed policies and still refuses what the replay guard refused', async () => {
    await close();
    await open();
    assert.deepEqual(keeper.policies().map((p) => `${p.name}@${p.version}`), ['fleet@3']);
    assert.deepEqual(active(), ['fleet@3'], 'handed to the agent at start');
    assert.match(audit('policy_activated').at(-1) ?? '', /^fleet@3 startup: fleet v3/);
    const replay = await keeper.apply(assignment([signPolicy(key, { ...v2, version: 3, issuedAt: NOW + 250 }), signPolicy(key, v1)]));
    assert.ok(replay.policiesRejected.every((r) => r.code === 'HS_POLICY_STALE' || r.code === 'HS_POLICY_SIGNATURE'));
    assert.deepEqual(held(replay), ['fleet@3']);
  });

  it('takes the silence of a controller before protocol 4 about policies as nothing: the held ones stay, unremarked', async () => {
    const refusals = audit('policy_rejected').length;
    const ack = await keeper.apply(assignment([]), { policies: false });
    assert.deepEqual(held(ack), ['fleet@3']);
    assert.deepEqual(ack.policiesRejected, []);
    assert.equal(audit('policy_rejected').length, refusals);
    // The same silence from a controller that knows policies is a policy left out without a removal.
    assert.equal((await keeper.apply(assignment([]))).policiesRejected[0]?.code, 'HS_POLICY_SIGNATURE');
  });

  it('pauses enforcement once a held policy signature expires, and resumes when it is renewed', async () => {
    const short = doc('short', 1, policyYaml('short', 'file:/srv/*'), { expiresAt: NOW + DAY });
    const current = signPolicy(key, { ...doc('fleet', 3, policyYaml('fleet', 'file:/etc/*')), issuedAt: NOW + 400 });
    let ack = await keeper.apply(assignment([current, signPolicy(key, short)]));
    assert.deepEqual(held(ack).sort(), ['fleet@3', 'short@1']);
    assert.equal(ack.enforcementPaused, false);
    clock.advance(DAY + 1);
    keeper.checkExpiry();
    assert.equal(keeper.isPaused(), true);
    assert.match(store.queryAudit({ event: 'enforcement_paused' }).at(-1)?.detail ?? '', /paused: signed policy short v1 expired/);
    ack = await keeper.apply(assignment([current, signPolicy(key, { ...short, issuedAt: NOW + DAY + 2, expiresAt: NOW + 30 * DAY })]));
    assert.equal(ack.enforcementPaused, false);
    assert.match(store.queryAudit({ event: 'enforcement_paused' }).at(-1)?.detail ?? '', /resumed/);
  });

  it('refuses a set naming one policy twice as a whole, recording why, and keeps the set it had', async () => {
    const before = active();
    const twice = agent.setPolicies(
      [...agent.activePolicies(), ...agent.activePolicies().slice(0, 1)].map((p) => ({ document: p.document, version: p.version })),
      'controller',
    );
    await assert.rejects(twice, /given twice in one set; the previous policies stay active/);
    assert.deepEqual(active(), before);
    assert.match(audit('policy_rejected').at(-1) ?? '', /given twice/);
  });
});
