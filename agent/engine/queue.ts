// A deduplicating work queue: at most one pending entry and one running reconcile per resource, so an event storm
// costs memory bounded by the number of resources and never runs two reconciles of one resource at once. A unit of work
// that throws is reported to `onError` and the queue goes on: no key's failure stops the others.
import type { Trigger } from '../store/types.js';

export class WorkQueue {
  private readonly pending = new Map<string, Trigger>();
  private readonly running = new Set<string>();
  /** Keys that became dirty while running: they go round once more when the current pass ends. */
  private readonly again = new Map<string, Trigger>();
  private idleWaiters: (() => void)[] = [];
  private stopped = false;

  constructor(
    private readonly work: (key: string, trigger: Trigger) => Promise<void>,
    private readonly concurrency: number,
    private readonly onError: (key: string, err: unknown) => void = () => undefined,
  ) {}

  add(key: string, trigger: Trigger): void {
    if (this.stopped) return;
    if (this.running.has(key)) {
      if (!this.again.has(key)) this.again.set(key, trigger);
      return;
    }
    // The first trigger names the cause in the record; later ones for the same key are folded into it.
    if (!this.pending.has(key)) this.pending.set(key, trigger);
    this.pump();
  }

  get size(): number {
    return this.pending.size + this.running.size;
  }

  /** Resolves when nothing is pending or running. */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  stop(): void {
    this.stopped = true;
    this.pending.clear();
    this.again.clear();
  }

  private pump(): void {
    while (this.running.size < this.concurrency && this.pending.size > 0) {
      const next = this.pending.entries().next();
      if (next.done) break;
      const [key, trigger] = next.value;
      this.pending.delete(key);
      this.running.add(key);
      void this.run(key, trigger).finally(() => {
        this.running.delete(key);
        const redo = this.again.get(key);
        if (redo !== undefined) {
          this.again.delete(key);
          if (!this.stopped && !this.pending.has(key)) this.pending.set(key, redo);
        }
        this.pump();
        if (this.size === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const w of waiters) w();
        }
      });
    }
  }

  /** The work as a promise that always resolves: a synchronous throw or a rejection goes to onError. */
  private async run(key: string, trigger: Trigger): Promise<void> {
    try {
      await this.work(key, trigger);
    } catch (err) {
      try {
        this.onError(key, err);
      } catch {
        // a failing error handler must not stop the queue either
      }
    }
  }
}
