// Event ingest with group commit: batches from every connection that arrive while a write is running go into the next
// single transaction, so throughput scales with load while each batch is acknowledged only once it is on disk. Each
// agent's events pass its rate and field bounds first (event-limits.ts): the acknowledgement covers only what was taken.
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { WireEvent } from '../proto/codec.js';
import { DEFAULT_EVENT_LIMITS, EventRate, boundEvent, type BoundedField, type EventLimits } from './event-limits.js';
import type { ControllerStore, EventInput, EventRecord } from './store/types.js';

interface Pending {
  agentId: string;
  events: EventInput[];
  resolve: (uptoSeq: number) => void;
  reject: (err: unknown) => void;
}

export function eventFromWire(e: WireEvent): EventInput {
  const opt = (s: string): string | null => (s === '' ? null : s);
  return {
    seq: e.seq,
    time: e.time,
    resource: opt(e.resource),
    event: e.event,
    trigger: opt(e.trigger),
    baseline: opt(e.baseline),
    version: e.version === 0 ? null : e.version,
    observed: opt(e.observedJson),
    desired: opt(e.desiredJson),
    diff: opt(e.diff),
    detail: opt(e.detail),
    prevHash: e.prevHash,
    hash: e.hash,
    actor: opt(e.actorJson ?? ''),
    decision: opt(e.decisionJson ?? ''),
    changes: e.changes && e.changes.length > 0 ? JSON.stringify(e.changes) : null,
    risk: opt(e.risk ?? ''),
  };
}

export interface IngestObserver {
  fieldCut(field: BoundedField): void;
  /** Events of a batch not taken (the agent sends them again). */
  deferred(n: number): void;
  duplicates(n: number): void;
}

export class EventIngest {
  private queue: Pending[] = [];
  private writing: Promise<void> | null = null;
  private readonly listeners = new Set<(inserted: EventRecord[]) => Promise<void> | void>();
  private readonly rate: EventRate;
  /** Totals since start, for metrics and the benchmark. `deferred`: events left with their agent by its rate. */
  readonly stats = { received: 0, persisted: 0, duplicates: 0, transactions: 0, deferred: 0 };
  /** Hears what the ingest did beyond persisting (metrics). */
  observer: IngestObserver = { fieldCut: () => undefined, deferred: () => undefined, duplicates: () => undefined };

  constructor(
    private readonly store: ControllerStore,
    private readonly clock: Clock,
    private readonly log: Logger,
    limits: Partial<EventLimits> = {},
    private readonly maxPerTransaction = 20_000,
  ) {
    this.rate = new EventRate({ ...DEFAULT_EVENT_LIMITS, ...limits }, clock);
  }

  /** Runs after each transaction with the events that were new (never for duplicates). */
  onInserted(listener: (inserted: EventRecord[]) => Promise<void> | void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Takes what the agent's rate allows of the batch (at least its first event, waiting for it if need be) and resolves
   * with the highest seq held for this agent once that is committed. The rest stays with the agent, which sends it again
   * after this acknowledgement.
   */
  async submit(agentId: string, events: EventInput[]): Promise<number> {
    const taken = await this.rate.admit(agentId, events);
    this.stats.deferred += events.length - taken;
    if (taken < events.length) this.observer.deferred(events.length - taken);
    const batch = events.slice(0, taken).map((e) => boundEvent(e, this.observer.fieldCut));
    this.stats.received += batch.length;
    return new Promise((resolve, reject) => {
      this.queue.push({ agentId, events: batch, resolve, reject });
      if (!this.writing) this.writing = this.drain();
    });
  }

  /** Waits until everything submitted so far is written. */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private async drain(): Promise<void> {
    // Yield once so batches arriving in the same tick share the transaction.
    await new Promise<void>((r) => setImmediate(r));
    while (this.queue.length > 0) {
      const batch: Pending[] = [];
      let n = 0;
      while (this.queue.length > 0 && n < this.maxPerTransaction) {
        const p = this.queue.shift();
        if (!p) break;
        batch.push(p);
        n += p.events.length;
      }
      try {
        const { inserted, lastSeq } = await this.store.appendEvents(
          batch.map((p) => ({ agentId: p.agentId, events: p.events })),
          this.clock.now(),
        );
        this.stats.transactions++;
        this.stats.persisted += inserted.length;
        this.stats.duplicates += n - inserted.length;
        if (n > inserted.length) this.observer.duplicates(n - inserted.length);
        // Side effects (escalations) before the acknowledgement, so an acknowledged event has had them.
        for (const l of this.listeners) {
          try {
            await l(inserted);
          } catch (err) {
            this.log.error({ err }, 'event listener failed');
          }
        }
        for (const p of batch) p.resolve(lastSeq.get(p.agentId) ?? 0);
      } catch (err) {
        this.log.error({ err, events: n }, 'event batch not persisted');
        for (const p of batch) p.reject(err);
      }
    }
    this.writing = null;
  }
}
