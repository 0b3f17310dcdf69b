import assert from 'node:assert/strict';
import fc from 'fast-check';
import { betaCdf, betaQuantile, confidence, logGamma } from '../../lib/tuning/confidence.js';

const close = (a: number, b: number, eps = 1e-9): void => assert.ok(Math.abs(a - b) <= eps, `${a} is not within ${eps} of ${b}`);

describe('tuning confidence (Beta posterior)', () => {
  it('computes ln Γ exactly at integers and half-integers', () => {
    for (let n = 1; n <= 20; n++) {
      let f = 1;
      for (let k = 2; k < n; k++) f *= k;
      close(logGamma(n), Math.log(f), 1e-10);
    }
    close(logGamma(0.5), Math.log(Math.sqrt(Math.PI)), 1e-12);
  });

  it('matches the closed forms of the Beta distribution function', () => {
    for (const x of [0.01, 0.1, 0.33, 0.5, 0.77, 0.99]) {
      close(betaCdf(x, 1, 1), x);
      close(betaCdf(x, 2, 1), x * x);
      close(betaCdf(x, 1, 2), 1 - (1 - x) ** 2);
      close(betaCdf(x, 10, 1), x ** 10);
      close(betaCdf(x, 1, 10), 1 - (1 - x) ** 10);
      // Beta(2, 2): 3x² − 2x³
      close(betaCdf(x, 2, 2), 3 * x * x - 2 * x ** 3);
    }
  });

  it('keeps the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) and inverts its own distribution function', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.001, max: 0.999, noNaN: true }), fc.integer({ min: 1, max: 400 }), fc.integer({ min: 1, max: 400 }), (x, a, b) => {
        close(betaCdf(x, a, b), 1 - betaCdf(1 - x, b, a), 1e-9);
        const p = betaCdf(x, a, b);
        if (p > 1e-6 && p < 1 - 1e-6) close(betaCdf(betaQuantile(p, a, b), a, b), p, 1e-7);
      }),
    );
    close(betaQuantile(0.5, 10, 1), 0.5 ** 0.1);
  });

  it('is unsure with no evidence and grows surer, toward the observed rate, as evidence comes', () => {
    const none = confidence(0, 0);
    close(none.mean, 0.5);
    close(none.low, 0.05);
    close(none.high, 0.95);
    assert.equal(none.n, 0);
    const nine = confidence(9, 0);
    close(nine.mean, 10 / 11);
    // Beta(10, 1): the 5 % quantile is 0.05^(1/10).
    close(nine.low, 0.05 ** 0.1, 1e-9);
    const many = confidence(90, 0);
    assert.ok(many.low > nine.low && many.high - many.low < nine.high - nine.low);
    const mixed = confidence(45, 45);
    assert.ok(mixed.low < 0.5 && mixed.high > 0.5);
    assert.throws(() => confidence(-1, 0), RangeError);
  });
});
