// When the engine looks again without an event: kinds without events (and kinds whose events can be missed) every
// poll interval, one timer per interval rather than per resource; everything at the periodic resync; and one resource
// once its retry's backoff has passed. Timers go through the clock's seam, so a test's clock drives retries.
import { timersOf, type Clock, type Timers } from '../../lib/clock.js';
import type { Trigger } from '../store/types.js';
import type { Runtime } from './runtime.js';

export class Polls {
  private readonly timers: Timers;
  private readonly intervals = new Map<number, () => void>();
  private resync: (() => void) | undefined;

  constructor(
    clock: Clock,
    private readonly enqueue: (id: string, trigger: Trigger) => void,
  ) {
    this.timers = timersOf(clock);
  }

  /** Re-plans the poll timers for the current set of resources. */
  schedule(runtimes: Iterable<Runtime>): void {
    const byInterval = new Map<number, string[]>();
    for (const rt of runtimes) {
      const ms = rt.resource.pollIntervalMs;
      if (ms === undefined) continue;
      const ids = byInterval.get(ms) ?? [];
      ids.push(rt.id);
      byInterval.set(ms, ids);
    }
    this.clearIntervals();
    for (const [ms, ids] of byInterval) {
      this.intervals.set(
        ms,
        this.every(ms, () => {
          for (const id of ids) this.enqueue(id, 'poll');
        }),
      );
    }
  }

  startResync(intervalMs: number, all: () => void): void {
    this.resync?.();
    this.resync = this.every(intervalMs, all);
  }

  /** Looks at `rt` again after `ms` (a retry after backoff, or a decision to reconsider later); replaces an earlier one. */
  retry(rt: Runtime, ms: number, cancelSlot: { cancelRetry: (() => void) | undefined }): void {
    cancelSlot.cancelRetry?.();
    cancelSlot.cancelRetry = this.timers.after(ms, () => {
      cancelSlot.cancelRetry = undefined;
      if (!rt.retired) this.enqueue(rt.id, 'poll');
    });
  }

  stop(): void {
    this.clearIntervals();
    this.resync?.();
    this.resync = undefined;
  }

  /** Calls `fn` every `ms` until the returned function is called. */
  private every(ms: number, fn: () => void): () => void {
    let cancel = (): void => undefined;
    const tick = (): void => {
      cancel = this.timers.after(ms, tick);
      fn();
    };
    cancel = this.timers.after(ms, tick);
    return () => cancel();
  }

  private clearIntervals(): void {
    for (const cancel of this.intervals.values()) cancel();
    this.intervals.clear();
  }
}
