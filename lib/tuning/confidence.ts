// How sure the fleet's history makes us that auto-repair is the right call for one kind of drift: a Beta posterior over
// "the repair was right" (a human approved it, or an automatic repair held) against "it was wrong" (a human rejected it,
// or the drift came back). docs/tuning.md explains the model; this file only computes it.

export interface Confidence {
  /** Posterior mean of the probability that auto-repair is right. */
  mean: number;
  /** Lower and upper bounds of the equal-tailed credible interval (90 % by default). */
  low: number;
  high: number;
  /** Observations behind it (successes + failures). */
  n: number;
}

/** Beta(1, 1): before any evidence every rate is as likely as any other. */
export const PRIOR = { alpha: 1, beta: 1 } as const;
export const DEFAULT_LEVEL = 0.9;

export function confidence(successes: number, failures: number, level = DEFAULT_LEVEL): Confidence {
  if (!(successes >= 0 && failures >= 0)) throw new RangeError('successes and failures must be non-negative');
  if (!(level > 0 && level < 1)) throw new RangeError('level must be between 0 and 1');
  const a = PRIOR.alpha + successes;
  const b = PRIOR.beta + failures;
  const tail = (1 - level) / 2;
  return { mean: a / (a + b), low: betaQuantile(tail, a, b), high: betaQuantile(1 - tail, a, b), n: successes + failures };
}

/** ln Γ(x) for x > 0 (Lanczos, g = 7, nine coefficients: about 15 significant digits). */
export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  const z = x - 1;
  let sum = c[0] as number;
  for (let i = 1; i < c.length; i++) sum += (c[i] as number) / (z + i);
  const t = z + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(sum);
}

/** The regularized incomplete beta function I_x(a, b): the Beta(a, b) distribution function at x. */
export function betaCdf(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log1p(-x));
  // The continued fraction converges fast only left of the mean; right of it, use the symmetry I_x(a,b) = 1 − I_{1−x}(b,a).
  if (x < (a + 1) / (a + b + 2)) return (front * betaFraction(x, a, b)) / a;
  return 1 - (front * betaFraction(1 - x, b, a)) / b;
}

/** The continued fraction of the incomplete beta function, evaluated by the modified Lentz method. */
function betaFraction(x: number, a: number, b: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  d = 1 / (Math.abs(d) < tiny ? tiny : d);
  let f = d;
  for (let m = 1; m <= 500; m++) {
    // Two steps per m: the even term d_{2m}, then the odd term d_{2m+1}.
    for (const num of [(m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m)), (-(a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1))]) {
      d = 1 + num * d;
      d = 1 / (Math.abs(d) < tiny ? tiny : d);
      c = 1 + num / c;
      if (Math.abs(c) < tiny) c = tiny;
      f *= c * d;
    }
    if (Math.abs(c * d - 1) < 1e-15) break;
  }
  return f;
}

/** The p-quantile of Beta(a, b), by bisection on the distribution function (monotone, so always converges). */
export function betaQuantile(p: number, a: number, b: number): number {
  if (p <= 0) return 0;
  if (p >= 1) return 1;
  let lo = 0;
  let hi = 1;
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (betaCdf(mid, a, b) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}
