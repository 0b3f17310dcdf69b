// Retention: keeps the controller's store from growing without bound. Each agent's events are held to a byte quota (its
// oldest go first), events older than the retention age go, and so do escalations decided long ago. The work runs in
// small transactions with a yield between them, so ingest and the API keep going while it runs.
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import type { ControllerStore } from './types.js';

export interface RetentionOptions {
  /** Events received longer ago than this are deleted. */
  eventMaxAgeMs: number;
  /** Bytes of events kept per agent (as eventSize counts them); past it the agent's oldest events go. */
  eventBytesPerAgent: number;
  /** Escalations decided (or resolved) longer ago than this, and acknowledged, are deleted. */
  escalationMaxAgeMs: number;
  /** How often a pass runs. */
  intervalMs: number;
  /** Rows per transaction. */
  batchRows: number;
}

export const DEFAULT_RETENTION: RetentionOptions = {
  eventMaxAgeMs: 90 * 86_400_000,
  eventBytesPerAgent: 64 * 1024 * 1024,
  escalationMaxAgeMs: 90 * 86_400_000,
  intervalMs: 10_000,
  batchRows: 2000,
};

/** Transactions one pass may run; whatever is left waits for the next pass. */
const MAX_BATCHES_PER_PASS = 100;

export interface RetentionResult {
  eventsAged: number;
  eventsOverQuota: number;
  escalations: number;
}

export class Retention {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<RetentionResult> | undefined;
  private closed = false;
  /** Totals since start. */
  readonly totals: RetentionResult = { eventsAged: 0, eventsOverQuota: 0, escalations: 0 };
  /** Hears of each pass's deletions (metrics). */
  onPass: (r: RetentionResult) => void = () => undefined;

  constructor(
    private readonly store: ControllerStore,
    private readonly clock: Clock,
    private readonly log: Logger,
    readonly opts: RetentionOptions = DEFAULT_RETENTION,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (!this.running) void this.pass().catch(() => undefined);
    }, this.opts.intervalMs).unref();
  }

  /** One pass (a running one is joined); failures are logged and left to the next pass. */
  pass(): Promise<RetentionResult> {
    this.running ??= this.run()
      .catch((err: unknown) => {
        this.log.error({ err }, 'retention pass failed');
        return { eventsAged: 0, eventsOverQuota: 0, escalations: 0 };
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.running;
  }

  private async run(): Promise<RetentionResult> {
    const res: RetentionResult = { eventsAged: 0, eventsOverQuota: 0, escalations: 0 };
    const { batchRows } = this.opts;
    let batches = 0;
    const more = async (): Promise<boolean> => {
      await new Promise<void>((r) => setImmediate(r));
      return !this.closed && ++batches <= MAX_BATCHES_PER_PASS;
    };
    const now = this.clock.now();
    for (const { agentId, bytes } of await this.store.agentsOverEventQuota(this.opts.eventBytesPerAgent)) {
      let over = bytes - this.opts.eventBytesPerAgent;
      while (over > 0 && (await more())) {
        const { deleted, freed } = await this.store.trimAgentEvents(agentId, over, batchRows);
        res.eventsOverQuota += deleted;
        over -= freed;
        if (deleted === 0) break;
      }
    }
    while (await more()) {
      const n = await this.store.deleteEventsReceivedBefore(now - this.opts.eventMaxAgeMs, batchRows);
      res.eventsAged += n;
      if (n < batchRows) break;
    }
    while (await more()) {
      const n = await this.store.deleteDecidedEscalationsBefore(now - this.opts.escalationMaxAgeMs, batchRows);
      res.escalations += n;
      if (n < batchRows) break;
    }
    this.totals.eventsAged += res.eventsAged;
    this.totals.eventsOverQuota += res.eventsOverQuota;
    this.totals.escalations += res.escalations;
    this.onPass(res);
    if (res.eventsAged + res.eventsOverQuota + res.escalations > 0) this.log.info({ ...res }, 'retention pass');
    return res;
  }
}
