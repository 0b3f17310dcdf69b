// The retry schedules, both from lib/backoff.ts: a failed repair's (from 1 s, doubling, capped at 5 min, ±20 %) and the
// controller link's reconnects (half to all of a step capped at 30 s).
import assert from 'node:assert/strict';
import { Backoff, backoffDelay } from '../../lib/backoff.js';
import { ESCALATE_AFTER_FAILURES, retryDelayMs } from '../../agent/engine/decisions.js';
import { DEFAULT_BACKOFF } from '../../agent/link/backoff.js';

describe('retry schedules', () => {
  it('retries a failed repair after 1 s, doubling, capped at five minutes, within ±20 %', () => {
    assert.equal(retryDelayMs(1, () => 0.5), 1000);
    assert.equal(retryDelayMs(4, () => 0.5), 8000);
    assert.equal(retryDelayMs(30, () => 0.5), 300_000);
    assert.equal(retryDelayMs(1, () => 0), 800);
    assert.equal(retryDelayMs(1, () => 0.999_999), 1200);
    assert.equal(ESCALATE_AFTER_FAILURES, 5);
  });

  it('reconnects after half to all of a step that doubles up to 30 s', () => {
    assert.equal(backoffDelay(0, { ...DEFAULT_BACKOFF, random: () => 0 }), 250);
    assert.equal(backoffDelay(3, { ...DEFAULT_BACKOFF, random: () => 0.999_999 }), 4000);
    const b = new Backoff({ ...DEFAULT_BACKOFF, random: () => 0.999_999 });
    const delays = Array.from({ length: 12 }, () => b.next());
    assert.equal(Math.max(...delays), 30_000);
    b.saturate();
    assert.equal(b.next(), 30_000);
    b.reset();
    assert.equal(b.next(), 500);
  });
});
