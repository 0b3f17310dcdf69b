// Jittered exponential backoff, the one retry schedule of the agent: the engine's failed repairs and the controller link's
// reconnects. The step doubles from `baseMs` up to `maxMs`; each delay is a random point of [low, high] × step, so many
// retries started together (a fleet cut off at once, a burst of failures) do not come back in lockstep.
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  /** The delay's range as fractions of the step: [0.5, 1] by default (half to all of it). */
  jitter?: readonly [low: number, high: number];
  /** Random source in [0, 1); a test passes a fixed one. */
  random?: () => number;
}

const DEFAULT_JITTER: readonly [number, number] = [0.5, 1];

/** The delay before retry number `attempt` (0 for the first retry). */
export function backoffDelay(attempt: number, opts: BackoffOptions): number {
  const step = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(Math.max(0, attempt), 30));
  const [low, high] = opts.jitter ?? DEFAULT_JITTER;
  const r = (opts.random ?? Math.random)();
  return Math.round(step * (low + (high - low) * r));
}

/** A retry counter over backoffDelay: each next() without a reset() moves one step up. */
export class Backoff {
  private attempt = 0;
  constructor(private readonly opts: BackoffOptions) {}

  next(): number {
    return backoffDelay(this.attempt++, this.opts);
  }

  reset(): void {
    this.attempt = 0;
  }

  /** After a refusal that will not change soon: wait the longest step from now on. */
  saturate(): void {
    this.attempt = 31;
  }
}
