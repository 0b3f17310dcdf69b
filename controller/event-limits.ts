// What one agent may put into the controller's event store: a rate per agent (a token bucket the ingest waits on, so the
// controller acknowledges only what it accepted and the agent keeps the rest in its outbox), and a size bound per field
// (longer text is cut, with a marker saying so; a JSON field is replaced by a JSON marker; the list of changed fields, far
// longer than any real one, is dropped as unknown).
import type { Clock } from '../lib/clock.js';
import type { EventInput } from './store/types.js';

export interface EventLimits {
  /** Sustained events per second and agent; an event counts once per started KiB of its text. */
  ratePerAgent: number;
  /** What an agent may send at once after a quiet spell (a reconnect delivering its outbox), in the same units. */
  burstPerAgent: number;
}

export const DEFAULT_EVENT_LIMITS: EventLimits = { ratePerAgent: 2000, burstPerAgent: 20_000 };

/** Longest text kept per field, in characters; beyond it the field is cut and says so. */
export const FIELD_LIMITS = {
  resource: 4224,
  event: 64,
  trigger: 64,
  baseline: 256,
  observed: 16 * 1024,
  desired: 16 * 1024,
  diff: 128 * 1024,
  detail: 4096,
  prevHash: 128,
  hash: 128,
  actor: 8 * 1024,
  decision: 4 * 1024,
  risk: 16,
  /** The changed field kinds as JSON text: a real list (`["content","mode"]`) takes tens of characters. */
  changes: 2048,
} as const;

export type BoundedField = keyof typeof FIELD_LIMITS;

const cut = (s: string, limit: number): string => `${s.slice(0, limit)}…[cut at ${limit} of ${s.length} characters]`;

/**
 * The event with every field within its limit. JSON fields (observed, desired) are replaced by a JSON marker rather than
 * cut, so they stay JSON; `onCut` hears of each field that was bounded.
 */
export function boundEvent(e: EventInput, onCut: (field: BoundedField) => void): EventInput {
  let out: EventInput | undefined;
  const set = <K extends BoundedField>(field: K, value: EventInput[K]): void => {
    out ??= { ...e };
    out[field] = value;
    onCut(field);
  };
  for (const field of ['resource', 'event', 'trigger', 'baseline', 'diff', 'detail', 'prevHash', 'hash', 'risk'] as const) {
    const v = e[field];
    if (v != null && v.length > FIELD_LIMITS[field]) set(field, cut(v, FIELD_LIMITS[field]));
  }
  for (const field of ['observed', 'desired', 'actor', 'decision'] as const) {
    const v = e[field];
    if (v != null && v.length > FIELD_LIMITS[field]) set(field, JSON.stringify({ truncated: true, characters: v.length }));
  }
  // Cut, the list would no longer be one: dropped, it says "unknown" (readers fall back on the detail).
  if (e.changes != null && e.changes.length > FIELD_LIMITS.changes) set('changes', null);
  return out ?? e;
}

/** What an event costs against the rate: one per started KiB of its text. */
export function eventCost(e: EventInput): number {
  const len = (v: string | null | undefined): number => (v == null ? 0 : v.length);
  const chars = len(e.resource) + len(e.observed) + len(e.desired) + len(e.diff) + len(e.detail) + e.event.length + len(e.actor) + len(e.decision);
  return 1 + Math.floor(chars / 1024);
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Per-agent token buckets. */
export class EventRate {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limits: EventLimits,
    private readonly clock: Clock,
  ) {}

  /**
   * How many of `events` (a prefix) the agent may have persisted now. Waits, when the bucket cannot pay for even the
   * first, until it can: the agent's next batch is held back by the acknowledgement it waits for.
   */
  async admit(agentId: string, events: EventInput[]): Promise<number> {
    const first = events[0];
    if (!first) return 0;
    const b = this.refill(agentId);
    const need = Math.min(eventCost(first), this.limits.burstPerAgent);
    if (b.tokens < need) {
      await new Promise((r) => setTimeout(r, Math.ceil(((need - b.tokens) / this.limits.ratePerAgent) * 1000)));
      this.refill(agentId);
    }
    let n = 0;
    for (const e of events) {
      const c = n === 0 ? need : eventCost(e);
      if (b.tokens < c) break;
      b.tokens -= c;
      n++;
    }
    if (n === 0) {
      // The wait paid for it (a clock that did not move, as in tests, only borrows against the next refill).
      b.tokens -= need;
      n = 1;
    }
    return n;
  }

  private refill(agentId: string): Bucket {
    const now = this.clock.monotonic();
    let b = this.buckets.get(agentId);
    if (!b) {
      b = { tokens: this.limits.burstPerAgent, at: now };
      this.buckets.set(agentId, b);
    }
    b.tokens = Math.min(this.limits.burstPerAgent, b.tokens + ((now - b.at) / 1000) * this.limits.ratePerAgent);
    b.at = now;
    return b;
  }
}
