// Drift episodes: one drift of one resource on one host and what became of it, read from the host's records in order.
// An episode opens with `drift_detected` and lasts until the next drift of the same resource (so a recurrence can be
// seen) or the end of the host's records; outcomes count episodes, and a replay decides each again.
import type { Actor } from '../../lib/policy/index.js';
import type { HistoryRecord, ResourceInfo } from './history.js';

/** What was done about a drift, as records show it and as a replay decides it. */
export type Category = 'repair' | 'escalate' | 'defer' | 'monitor' | 'ignore' | 'hold';

export interface HumanDecision {
  action: 'approved' | 'rejected';
  /** The agent's record of it. */
  time: number;
  receivedAt: number;
}

export interface Episode {
  agentId: string;
  resource: string;
  baseline: string;
  info: ResourceInfo;
  /** The `drift_detected` record that opened it. */
  drift: HistoryRecord;
  /** The rule that decided, when the record says; else the baseline's own policy. */
  rule: string;
  /** What the host did, from its records: the first of repaired/repair_failed (repair), escalated/suppressed_flapping (escalate). */
  before: Category | 'pending';
  suppressed: boolean;
  human: HumanDecision | undefined;
  /** An approved repair's drift was seen again before its repair: part of this episode, not a new drift. */
  redetected: boolean;
  /** When the host repaired it by itself. */
  autoRepairedAt: number | undefined;
  /** When the host repaired it because an operator approved. */
  approvedRepairAt: number | undefined;
  /** The next drift of the same resource on the same host, if any. */
  recurredAt: number | undefined;
}

export interface EpisodeHooks {
  /** A new episode opened (its drift is to be decided). */
  opened?(e: Episode, r: HistoryRecord): void;
  /** The drift of an approved episode was seen again, as the host does before the approved repair. */
  redetected?(e: Episode, r: HistoryRecord): void;
  /** Any other record of a resource, with its open episode if there is one. */
  record?(e: Episode | undefined, r: HistoryRecord): void;
  /** Enforcement paused or resumed on the host. */
  paused?(paused: boolean, r: HistoryRecord): void;
  /** An episode is over: the next drift of its resource came, or the host's records ended. */
  closed(e: Episode): void;
}

const FROM_DECISION: Record<string, Category> = {
  repair: 'repair',
  escalate: 'escalate',
  suppress: 'escalate',
  defer: 'defer',
  monitor: 'monitor',
  ignore: 'ignore',
  hold: 'hold',
};

/** One host's records in, episodes out. Call `push` in the host's order and `end` after its last record. */
export class EpisodeTracker {
  private readonly open = new Map<string, Episode>();
  paused = false;

  constructor(private readonly hooks: EpisodeHooks) {}

  push(r: HistoryRecord, info: ResourceInfo | undefined): void {
    if (r.event === 'enforcement_paused') {
      this.paused = (r.detail ?? '').startsWith('paused');
      this.hooks.paused?.(this.paused, r);
      return;
    }
    const resource = r.resource;
    if (resource === null) return;
    const ep = this.open.get(resource);
    switch (r.event) {
      case 'drift_detected': {
        // The host looks again at once when an approval arrives (trigger controller): that sighting belongs to the approved drift.
        if (ep && ep.human?.action === 'approved' && ep.approvedRepairAt === undefined && !ep.redetected && r.trigger === 'controller') {
          ep.redetected = true;
          this.hooks.redetected?.(ep, r);
          return;
        }
        if (ep) {
          ep.recurredAt = r.time;
          this.close(ep);
        }
        const next: Episode = {
          agentId: r.agentId,
          resource,
          baseline: r.baseline ?? '',
          info: info as ResourceInfo,
          drift: r,
          rule: r.decision?.rule ?? `baseline ${r.baseline ?? ''}`,
          before: r.decision ? (FROM_DECISION[r.decision.action] ?? 'pending') : 'pending',
          suppressed: r.decision?.action === 'suppress',
          human: undefined,
          redetected: false,
          autoRepairedAt: undefined,
          approvedRepairAt: undefined,
          recurredAt: undefined,
        };
        this.open.set(resource, next);
        this.hooks.opened?.(next, r);
        return;
      }
      case 'repaired':
        if (ep) {
          if (ep.human?.action === 'approved' && (ep.redetected || r.trigger === 'controller')) ep.approvedRepairAt ??= r.time;
          else {
            if (ep.before === 'pending') ep.before = 'repair';
            ep.autoRepairedAt ??= r.time;
          }
        }
        break;
      case 'repair_failed':
        if (ep && ep.before === 'pending' && ep.human === undefined) ep.before = 'repair';
        break;
      case 'escalated':
        if (ep && ep.before === 'pending') ep.before = 'escalate';
        break;
      case 'suppressed_flapping':
        if (ep && ep.before === 'pending') {
          ep.before = 'escalate';
          ep.suppressed = true;
        }
        break;
      case 'approved':
      case 'rejected':
        if (ep && ep.human === undefined) ep.human = { action: r.event, time: r.time, receivedAt: r.receivedAt };
        break;
    }
    this.hooks.record?.(ep, r);
  }

  /** The open episode of a resource, if any. */
  episodeOf(resource: string): Episode | undefined {
    return this.open.get(resource);
  }

  /** Closes every open episode: the host's records are over. */
  end(): void {
    for (const ep of this.open.values()) this.close(ep);
    this.open.clear();
    this.paused = false;
  }

  private close(ep: Episode): void {
    if (ep.before === 'pending') ep.before = 'monitor';
    this.hooks.closed(ep);
  }
}

/** `content drift on file:/etc/motd`, `content, mode drift on ...` */
export function driftWords(changes: readonly string[], resource: string): string {
  return `${changes.length > 0 ? changes.join(', ') : 'unspecified'} drift on ${resource}`;
}

/** The actor of a drift, when known and named (not the agent itself, not unknown). */
export function namedActor(a: Actor | undefined): Actor | undefined {
  return a && a.source !== 'unknown' && a.source !== 'self' ? a : undefined;
}
