// Time behind a seam, so flap windows and backoff can be tested without waiting.
export interface Clock {
  now(): number;
  /** High-resolution monotonic milliseconds, for latency figures. */
  monotonic(): number;
}

/** Timers behind the same seam: what waits for the clock (a retry's backoff, say) fires when that clock gets there. */
export interface Timers {
  /** Calls `fn` once `ms` have passed; returns a cancel function. Never keeps the process alive. */
  after(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock & Timers = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  after: (ms, fn) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};

/** The clock's own timers when it has them (ManualClock, systemClock), otherwise real ones. */
export function timersOf(clock: Clock): Timers {
  return 'after' in clock && typeof (clock as Partial<Timers>).after === 'function' ? (clock as Clock & Timers) : systemClock;
}

/** A clock the test moves by hand; its timers fire, in time order, when advance() passes their time. */
export class ManualClock implements Clock, Timers {
  private timers: { at: number; fn: () => void }[] = [];
  constructor(private t = 0) {}
  now(): number {
    return this.t;
  }
  monotonic(): number {
    return this.t;
  }
  after(ms: number, fn: () => void): () => void {
    const timer = { at: this.t + ms, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((x) => x !== timer);
    };
  }
  /** Timers waiting to fire. */
  get pending(): number {
    return this.timers.length;
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = end;
  }
}

/** Parses `10m`, `1h`, `30s`, `500ms`, `2d` into milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}
