// What a backtest reports: the counts of drifts decided before (by the hosts) and after (by the replayed policies), the
// drifts decided differently, and how one replayed episode is counted into them.
import { ruleLabel, type PolicyDecision } from '../../lib/policy/index.js';
import type { Category, Episode } from './episodes.js';

export interface BacktestEvent {
  id: number;
  agentId: string;
  seq: number;
  time: number;
  resource: string;
  baseline: string;
  changes: readonly string[];
  risk: string;
  /** What the host did. */
  before: Category;
  /** What the replayed policy decides. */
  after: Category;
  cause: string;
  rule: string;
  reason: string;
  /** When the replayed policy repairs it without an operator (at once, or when a grace period or window ends). */
  autoRepairedAt?: number;
  /** What an operator answered, in the record. */
  human?: 'approved' | 'rejected';
  overriddenRejection?: true;
  criticalAutoRepaired?: true;
}

export interface BacktestCounts {
  /** Drifts replayed: `drift_detected` records in the range, an approved repair's second sighting excepted. */
  drifts: number;
  escalationsBefore: number;
  escalationsAfter: number;
  autoRepairsBefore: number;
  autoRepairsAfter: number;
  /** Drifts the replayed policy lets stand for a grace period or until a window ends. */
  deferralsAfter: number;
  /** Drifts an operator rejected that the replayed policy repairs by itself before the rejection. */
  overriddenRejections: number;
  /** Drifts of critical-risk resources the replayed policy repairs without an operator. */
  criticalAutoRepaired: number;
  /** Drifts decided differently, by `before->after`. */
  transitions: Record<string, number>;
  /** Drifts decided differently, or overriding a rejection, or repairing critical drift by itself. */
  affected: number;
  /**
   * For a candidate: the same against the base policy replayed (what is in force) instead of what the hosts did, so what
   * this change alone does. Absent for the base.
   */
  change?: ChangeCounts;
}

export interface ChangeCounts {
  transitions: Record<string, number>;
  overriddenRejections: number;
  criticalAutoRepaired: number;
  affected: number;
}

export interface BacktestResult extends BacktestCounts {
  since: number;
  until: number;
  /** The affected drifts, oldest host first, at most `maxEvents`. */
  events: BacktestEvent[];
  eventsTruncated: boolean;
}

/** What one lane made of one episode. */
export interface ReplayedEpisode {
  first: PolicyDecision;
  repairedAt: number | undefined;
  autoRepair: boolean;
  overridden: boolean;
}

/** Where a lane counts its episodes on the host being walked. */
export interface LaneTally {
  counts: BacktestCounts;
  events: BacktestEvent[];
  eventsTruncated: boolean;
}

export function zero(): BacktestCounts {
  return {
    drifts: 0,
    escalationsBefore: 0,
    escalationsAfter: 0,
    autoRepairsBefore: 0,
    autoRepairsAfter: 0,
    deferralsAfter: 0,
    overriddenRejections: 0,
    criticalAutoRepaired: 0,
    transitions: {},
    affected: 0,
    change: { transitions: {}, overriddenRejections: 0, criticalAutoRepaired: 0, affected: 0 },
  };
}

export function addCounts(into: BacktestCounts, from: BacktestCounts): void {
  into.drifts += from.drifts;
  into.escalationsBefore += from.escalationsBefore;
  into.escalationsAfter += from.escalationsAfter;
  into.autoRepairsBefore += from.autoRepairsBefore;
  into.autoRepairsAfter += from.autoRepairsAfter;
  into.deferralsAfter += from.deferralsAfter;
  into.overriddenRejections += from.overriddenRejections;
  into.criticalAutoRepaired += from.criticalAutoRepaired;
  into.affected += from.affected;
  for (const [k, n] of Object.entries(from.transitions)) into.transitions[k] = (into.transitions[k] ?? 0) + n;
  const a = into.change as ChangeCounts;
  const b = from.change as ChangeCounts;
  a.overriddenRejections += b.overriddenRejections;
  a.criticalAutoRepaired += b.criticalAutoRepaired;
  a.affected += b.affected;
  for (const [k, n] of Object.entries(b.transitions)) a.transitions[k] = (a.transitions[k] ?? 0) + n;
}

export function categoryOf(action: PolicyDecision['action']): Category {
  return action === 'suppress' ? 'escalate' : action;
}

/**
 * Counts one replayed episode into a lane's tally: against what the host did, and for a candidate (`base` given) against
 * the in-force policy replayed alike; an affected drift is listed while the list is under `maxEvents`.
 */
export function countEpisode(lane: LaneTally, ep: Episode, le: ReplayedEpisode, base: ReplayedEpisode | undefined, maxEvents: number): void {
  const c = lane.counts;
  const before = ep.before === 'pending' ? 'monitor' : ep.before;
  const after = categoryOf(le.first.action);
  const critical = ep.info.policy.risk === 'critical' && le.autoRepair;
  if (base) {
    // What this candidate changes against the policies in force, replayed the same way.
    const ch = c.change as ChangeCounts;
    const was = categoryOf(base.first.action);
    const overrides = le.overridden && !base.overridden;
    const newlyCritical = critical && !base.autoRepair;
    if (was !== after) ch.transitions[`${was}->${after}`] = (ch.transitions[`${was}->${after}`] ?? 0) + 1;
    if (overrides) ch.overriddenRejections++;
    if (newlyCritical) ch.criticalAutoRepaired++;
    if (was !== after || overrides || newlyCritical || le.autoRepair !== base.autoRepair) ch.affected++;
  }
  c.drifts++;
  if (before === 'escalate') c.escalationsBefore++;
  if (before === 'repair') c.autoRepairsBefore++;
  if (after === 'escalate') c.escalationsAfter++;
  if (after === 'defer') c.deferralsAfter++;
  if (le.autoRepair) c.autoRepairsAfter++;
  if (le.overridden) c.overriddenRejections++;
  if (critical) c.criticalAutoRepaired++;
  if (before !== after) c.transitions[`${before}->${after}`] = (c.transitions[`${before}->${after}`] ?? 0) + 1;
  if (before === after && !le.overridden && !critical) return;
  c.affected++;
  if (lane.events.length >= maxEvents) {
    lane.eventsTruncated = true;
    return;
  }
  const r = ep.drift;
  lane.events.push({
    id: r.id,
    agentId: r.agentId,
    seq: r.seq,
    time: r.time,
    resource: ep.resource,
    baseline: ep.baseline,
    changes: r.changes,
    risk: ep.info.policy.risk,
    before,
    after,
    cause: le.first.cause,
    rule: ruleLabel(le.first.rule),
    reason: le.first.reason,
    ...(le.autoRepair && le.repairedAt !== undefined ? { autoRepairedAt: le.repairedAt } : {}),
    ...(ep.human ? { human: ep.human.action } : {}),
    ...(le.overridden ? { overriddenRejection: true as const } : {}),
    ...(critical ? { criticalAutoRepaired: true as const } : {}),
  });
}
