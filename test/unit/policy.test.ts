// The pure policy decision and the retry schedule.
import assert from 'node:assert/strict';
import { decide, retryDelayMs, type DecisionInput } from '../../agent/engine/policy.js';
import { DEFAULT_POLICY } from '../../lib/baseline/types.js';

const base: DecisionInput = {
  policy: DEFAULT_POLICY,
  paused: false,
  approved: false,
  suppressed: false,
  excepted: false,
  recentRepairs: 0,
  backingOff: false,
};

describe('policy decision', () => {
  it('repairs routine drift', () => {
    assert.deepEqual(decide(base), { action: 'repair', reason: 'enforce' });
  });
  it('only reports in monitor mode and while enforcement is paused', () => {
    assert.equal(decide({ ...base, policy: { ...DEFAULT_POLICY, mode: 'monitor' } }).action, 'report');
    assert.deepEqual(decide({ ...base, paused: true }), { action: 'report', reason: 'paused' });
    assert.equal(decide({ ...base, paused: true, approved: true }).action, 'report', 'an approval does not override a pause');
  });
  it('escalates at or above escalateAt, not below', () => {
    assert.equal(decide({ ...base, policy: { ...DEFAULT_POLICY, risk: 'high', escalateAt: 'high' } }).action, 'escalate');
    assert.equal(decide({ ...base, policy: { ...DEFAULT_POLICY, risk: 'critical', escalateAt: 'high' } }).action, 'escalate');
    assert.equal(decide({ ...base, policy: { ...DEFAULT_POLICY, risk: 'medium', escalateAt: 'high' } }).action, 'repair');
  });
  it('suppresses once maxRepairs repairs happened within the window', () => {
    const policy = { ...DEFAULT_POLICY, flap: { maxRepairs: 2, windowMs: 60_000 } };
    assert.equal(decide({ ...base, policy, recentRepairs: 1 }).action, 'repair');
    assert.deepEqual(decide({ ...base, policy, recentRepairs: 2 }), { action: 'suppress', reason: 'flapping' });
  });
  it('holds suppressed, excepted and backing-off drift; an approval lifts all but the exception', () => {
    assert.deepEqual(decide({ ...base, suppressed: true }), { action: 'hold', reason: 'suppressed' });
    assert.deepEqual(decide({ ...base, backingOff: true }), { action: 'hold', reason: 'backoff' });
    assert.deepEqual(decide({ ...base, excepted: true }), { action: 'hold', reason: 'excepted' });
    assert.deepEqual(decide({ ...base, suppressed: true, backingOff: true, approved: true, policy: { ...DEFAULT_POLICY, risk: 'critical' } }), { action: 'repair', reason: 'approved' });
  });
  it('backs off exponentially with jitter, capped at five minutes', () => {
    assert.equal(retryDelayMs(1, () => 0.5), 1000);
    assert.equal(retryDelayMs(4, () => 0.5), 8000);
    assert.equal(retryDelayMs(30, () => 0.5), 300_000);
    assert.ok(retryDelayMs(1, () => 0) >= 800 && retryDelayMs(1, () => 1) <= 1200);
  });
});
