// Log lines about what agents and strangers do (refusals, errors they report, bad frames) at a bounded rate: a few lines
// per kind and minute, then one line saying how many were left out. A flood of bad clients costs no more than that.
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';

interface Window {
  start: number;
  logged: number;
  suppressed: number;
}

export class QuietLog {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly log: Logger,
    private readonly clock: Clock,
    private readonly opts: { perWindow: number; windowMs: number; maxKeys: number } = { perWindow: 5, windowMs: 60_000, maxKeys: 1000 },
  ) {}

  /** Logs at `level` unless `key` already had its share in this window; the first line of a new window reports the rest. */
  write(level: 'warn' | 'info', key: string, fields: Record<string, unknown>, msg: string): void {
    const now = this.clock.now();
    let w = this.windows.get(key);
    if (w && now - w.start >= this.opts.windowMs) {
      if (w.suppressed > 0) this.log[level]({ kind: key, suppressed: w.suppressed, windowMs: this.opts.windowMs }, 'similar log lines left out');
      w = undefined;
    }
    if (!w) {
      // Keys come from a small fixed set, or per agent; past the cap the oldest windows are dropped (their counts with them).
      if (this.windows.size >= this.opts.maxKeys) for (const k of [...this.windows.keys()].slice(0, this.opts.maxKeys / 2)) this.windows.delete(k);
      w = { start: now, logged: 0, suppressed: 0 };
      this.windows.set(key, w);
    }
    if (w.logged < this.opts.perWindow) {
      w.logged++;
      this.log[level](fields, msg);
    } else {
      w.suppressed++;
    }
  }
}
