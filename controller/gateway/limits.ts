// Bounds on what unauthenticated clients can make the gateway hold or do: connections that have not completed a hello, per
// source address and in total, and enrollment and authentication attempts as token buckets per address and per join token.
import type { Clock } from '../../lib/clock.js';

export interface BucketOptions {
  /** Attempts allowed at once. */
  burst: number;
  /** Attempts regained per second. */
  perSecond: number;
}

/** Token buckets by key; the map is pruned so a flood of distinct keys cannot grow it without bound. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly opts: BucketOptions,
    private readonly clock: Clock,
    private readonly maxKeys = 10_000,
  ) {}

  /** Takes one attempt for `key`; false when its bucket is empty. */
  take(key: string): boolean {
    const now = this.clock.now();
    const b = this.refilled(key, now);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** True when `key` has no attempt left right now (without taking one). */
  exhausted(key: string): boolean {
    return this.refilled(key, this.clock.now()).tokens < 1;
  }

  size(): number {
    return this.buckets.size;
  }

  private refilled(key: string, now: number): { tokens: number; at: number } {
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) this.prune(now);
      b = { tokens: this.opts.burst, at: now };
      this.buckets.set(key, b);
      return b;
    }
    b.tokens = Math.min(this.opts.burst, b.tokens + ((now - b.at) / 1000) * this.opts.perSecond);
    b.at = now;
    return b;
  }

  /** Drops buckets that have refilled (they hold nothing a fresh one would not); if none did, the oldest half. */
  private prune(now: number): void {
    const full = this.opts.burst / Math.max(this.opts.perSecond, 1e-9);
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 1000) * this.opts.perSecond >= this.opts.burst || now - b.at > full * 1000) this.buckets.delete(k);
    if (this.buckets.size < this.maxKeys) return;
    let n = Math.ceil(this.buckets.size / 2);
    for (const k of this.buckets.keys()) {
      if (n-- <= 0) break;
      this.buckets.delete(k);
    }
  }
}

/** One unauthenticated connection's place in the caps; released once (hello accepted, or the socket closed). */
export interface PreAuthSlot {
  release(): void;
}

/** Counts connections that have not completed a hello, per source address and in total. */
export class PreAuthSlots {
  private readonly byAddress = new Map<string, number>();
  private total = 0;

  constructor(private readonly opts: { perAddress: number; total: number }) {}

  /** A slot for a new connection from `address`, or null when a cap is reached. */
  acquire(address: string): PreAuthSlot | null {
    const n = this.byAddress.get(address) ?? 0;
    if (n >= this.opts.perAddress || this.total >= this.opts.total) return null;
    this.byAddress.set(address, n + 1);
    this.total++;
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.total--;
        const left = (this.byAddress.get(address) ?? 1) - 1;
        if (left <= 0) this.byAddress.delete(address);
        else this.byAddress.set(address, left);
      },
    };
  }

  /** Connections still before their hello: in total and the number of addresses they come from. */
  counts(): { total: number; addresses: number } {
    return { total: this.total, addresses: this.byAddress.size };
  }
}
