// Reconnect delays: exponential with full jitter between half and all of the step, so a fleet cut off together does not
// come back in lockstep (a restarted controller would otherwise face every agent in the same second). The step stops at
// 30 s; while the controller is unreachable the link also probes it and cuts the wait short once it answers (link.ts).
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  /** Random source in [0, 1); a test passes a fixed one. */
  random?: () => number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 30_000 };

export class Backoff {
  private attempt = 0;
  constructor(private readonly opts: BackoffOptions = DEFAULT_BACKOFF) {}

  /** The delay before the next attempt; each call without a reset() doubles the step up to maxMs. */
  next(): number {
    const step = Math.min(this.opts.maxMs, this.opts.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    const r = (this.opts.random ?? Math.random)();
    return Math.round(step / 2 + (step / 2) * r);
  }

  /** After a successful handshake. */
  reset(): void {
    this.attempt = 0;
  }

  /** After a refusal that will not change soon (revoked, bad token): wait the longest step from now on. */
  saturate(): void {
    this.attempt = 31;
  }
}
