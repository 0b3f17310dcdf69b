// Outcomes: what the fleet's history says about each kind of drift — per (baseline, resource, kind of change), per rule
// that decided, per actor — with the confidence that auto-repair is the right call. One walk over the stored records in
// each host's order (a drift's kind of change and whether a repair held are properties of the sequence), joined with the
// operators' decisions on escalations for their times.
import { RISKS, type Risk } from '../../lib/baseline/types.js';
import type { Logger } from '../../lib/log.js';
import { actorIdentity, findFight, predictDrift, type Actor, type DriftEvent } from '../../lib/policy/index.js';
import { PREDICTION_RULES } from '../../lib/policy/patterns.js';
import { confidence, type Confidence } from '../../lib/tuning/confidence.js';
import type { ControllerStore } from '../store/types.js';
import type { EscalationDecisionRow } from '../store/tuning.js';
import { EpisodeTracker, namedActor, type Episode } from './episodes.js';
import { readHistory, ResourcePolicies, type HistoryRecord } from './history.js';

export type GroupBy = 'resource' | 'rule' | 'actor';
export const GROUP_BY: readonly GroupBy[] = ['resource', 'rule', 'actor'];

export interface OutcomeOptions {
  since: number;
  until: number;
  /** A repair held when the same resource did not drift again on that host within this long. */
  recurrenceWindowMs: number;
  stopped?: () => boolean;
}

/** A schedule a host's drift of one kind follows (predictDrift), as the hosts showing it agree on it. */
export interface Schedule {
  period: 'hour' | 'day';
  /** Milliseconds into each UTC hour or day. */
  phaseMs: number;
  hosts: number;
  occurrences: number;
  /** Drifts of this kind at the scheduled time, and at other times, on the hosts that show the schedule. */
  onSchedule: number;
  offSchedule: number;
  message: string;
}

export interface Opponent {
  opponent: string;
  actor: Actor;
  hosts: number;
  changes: number;
  message: string;
}

/**
 * Distinct hosts, counted in constant memory: the walk visits each host's records together, so a host is new exactly when it
 * differs from the last one added.
 */
export class HostCount {
  private n = 0;
  private last: string | undefined;

  add(host: string): void {
    if (host === this.last) return;
    this.last = host;
    this.n++;
  }

  get size(): number {
    return this.n;
  }
}

/** Counts for one key. Times in ms; `decisionMs` over operators' approvals and rejections. */
export class OutcomeAcc {
  drifts = 0;
  readonly hosts = new HostCount();
  autoRepairs = 0;
  held = 0;
  recurrences = 0;
  escalations = 0;
  approvals = 0;
  rejections = 0;
  readonly decisionMs: number[] = [];
  deferrals = 0;
  deferralsApproved = 0;
  deferralsRejected = 0;
  /** Drifts made by a person (the actor has a login user): hotfixes. */
  byPerson = 0;
  attributed = 0;
  risk: Risk = 'low';
  first = Infinity;
  last = -Infinity;
  readonly opponents = new Map<string, { actor: Actor; hosts: HostCount; changes: number; message: string }>();
  readonly schedules = new Map<string, { period: 'hour' | 'day'; phases: number[]; hosts: HostCount; occurrences: number; on: number; off: number; message: string }>();

  /** Successes: approvals and repairs that held; failures: rejections and recurrences. */
  confidence(): Confidence {
    return confidence(this.approvals + this.held, this.rejections + this.recurrences);
  }

  fights(): number {
    let n = 0;
    for (const o of this.opponents.values()) n += o.hosts.size;
    return n;
  }

  topOpponents(): Opponent[] {
    return [...this.opponents.entries()]
      .map(([opponent, o]) => ({ opponent, actor: o.actor, hosts: o.hosts.size, changes: o.changes, message: o.message }))
      .sort((a, b) => b.hosts - a.hosts || b.changes - a.changes)
      .slice(0, 5);
  }

  /** The schedule most hosts with this drift agree on, when at least half of them show it. */
  schedule(): Schedule | undefined {
    let best: Schedule | undefined;
    for (const s of this.schedules.values()) {
      if (best && s.hosts.size <= best.hosts) continue;
      const phaseMs = circularMean(s.phases, s.period === 'hour' ? 3_600_000 : 86_400_000);
      best = { period: s.period, phaseMs, hosts: s.hosts.size, occurrences: s.occurrences, onSchedule: s.on, offSchedule: s.off, message: s.message };
    }
    return best && best.hosts * 2 >= this.hosts.size ? best : undefined;
  }
}

export interface OutcomeRow {
  baseline?: string;
  resource?: string;
  change?: readonly string[];
  rule?: string;
  actor?: string;
  risk?: Risk;
  drifts: number;
  hosts: number;
  autoRepairs: number;
  held: number;
  recurrences: number;
  escalations: number;
  approvals: number;
  rejections: number;
  timeToDecision: { medianMs: number; p90Ms: number; n: number } | null;
  fights: number;
  opponents: { opponent: string; hosts: number; changes: number }[];
  deferrals: number;
  deferralsApproved: number;
  deferralsRejected: number;
  firstSeen: number;
  lastSeen: number;
  confidence: Confidence;
}

export interface ResourceKey {
  baseline: string;
  resource: string;
  change: readonly string[];
}

export interface Outcomes {
  since: number;
  until: number;
  recurrenceWindowMs: number;
  /** Records walked. */
  records: number;
  byResource: Map<string, { key: ResourceKey; acc: OutcomeAcc }>;
  byRule: Map<string, OutcomeAcc>;
  byActor: Map<string, OutcomeAcc>;
}

export function resourceKey(k: ResourceKey): string {
  return `${k.baseline}\u0000${k.resource}\u0000${k.change.join(',')}`;
}

/** Drifts kept per host and resource for fights and schedules: the most recent ones. */
const PATTERN_HISTORY = 2000;
/** A fight is looked for only among a resource's most recent attributed drifts on a host. */
const FIGHT_HISTORY = 64;

export async function computeOutcomes(deps: { store: ControllerStore; log: Logger }, opts: OutcomeOptions): Promise<Outcomes> {
  const policies = new ResourcePolicies(deps.store, deps.log);
  const decisions = indexDecisions(await deps.store.tuning.escalationDecisions(opts.since));
  const out: Outcomes = { since: opts.since, until: opts.until, recurrenceWindowMs: opts.recurrenceWindowMs, records: 0, byResource: new Map(), byRule: new Map(), byActor: new Map() };
  // Per host and resource, while that host is walked: drift history for fights and schedules.
  let host: string | undefined;
  let drifts = new Map<string, { key: ResourceKey; events: DriftEvent[]; attributed: DriftEvent[]; flapMs: number }>();

  const accOf = (ep: Episode): OutcomeAcc[] => {
    const key: ResourceKey = { baseline: ep.baseline, resource: ep.resource, change: ep.drift.changes };
    const k = resourceKey(key);
    let byRes = out.byResource.get(k);
    if (!byRes) out.byResource.set(k, (byRes = { key, acc: new OutcomeAcc() }));
    const actor = namedActor(ep.drift.actor);
    const who = actor ? (actorIdentity(actor) ?? 'unknown') : 'unknown';
    let byRule = out.byRule.get(ep.rule);
    if (!byRule) out.byRule.set(ep.rule, (byRule = new OutcomeAcc()));
    let byActor = out.byActor.get(who);
    if (!byActor) out.byActor.set(who, (byActor = new OutcomeAcc()));
    return [byRes.acc, byRule, byActor];
  };

  const tracker = new EpisodeTracker({
    opened: (ep, r) => {
      let h = drifts.get(ep.resource);
      if (!h) drifts.set(ep.resource, (h = { key: { baseline: ep.baseline, resource: ep.resource, change: r.changes }, events: [], attributed: [], flapMs: ep.info.policy.flap.windowMs }));
      h.key = { baseline: ep.baseline, resource: ep.resource, change: r.changes };
      const e: DriftEvent = { time: r.time, changes: r.changes, ...(r.actor ? { actor: r.actor } : {}) };
      h.events.push(e);
      if (h.events.length > PATTERN_HISTORY * 2) h.events.splice(0, h.events.length - PATTERN_HISTORY);
      const actor = namedActor(r.actor);
      if (!actor) return;
      h.attributed.push(e);
      if (h.attributed.length > FIGHT_HISTORY) h.attributed.shift();
      const fight = findFight(h.attributed, { now: r.time, windowMs: h.flapMs });
      if (!fight) return;
      for (const acc of accOf(ep)) {
        const o = acc.opponents.get(fight.opponent) ?? { actor: fight.actor, hosts: new HostCount(), changes: 0, message: fight.message };
        o.hosts.add(ep.agentId);
        o.changes = Math.max(o.changes, fight.changes);
        o.message = fight.message;
        acc.opponents.set(fight.opponent, o);
      }
    },
    closed: (ep) => {
      if (ep.drift.time < opts.since) return;
      const decisionMs = ep.human ? timeToDecision(decisions, ep) : undefined;
      for (const acc of accOf(ep)) count(acc, ep, decisionMs, opts);
    },
  });

  const endHost = (): void => {
    tracker.end();
    if (host === undefined) return;
    for (const h of drifts.values()) {
      if (h.events.length < 3) continue;
      const events = h.events.slice(-PATTERN_HISTORY);
      for (const p of predictDrift(events, { now: opts.until, since: opts.since })) {
        const k = out.byResource.get(resourceKey({ ...h.key, change: p.change === '' ? [] : p.change.split(',') }));
        if (!k) continue;
        const bucket = `${p.period}:${Math.round(p.phaseMs / (p.period === 'hour' ? 4 * 60_000 : 30 * 60_000))}`;
        const s = k.acc.schedules.get(bucket) ?? { period: p.period, phases: [], hosts: new HostCount(), occurrences: 0, on: 0, off: 0, message: p.message };
        const rule = PREDICTION_RULES[p.period];
        for (const e of events) {
          if (e.changes.join(',') !== p.change) continue;
          const d = Math.abs((e.time % rule.ms) - p.phaseMs) % rule.ms;
          if (Math.min(d, rule.ms - d) <= rule.toleranceMs) s.on++;
          else s.off++;
        }
        s.phases.push(p.phaseMs);
        s.hosts.add(host);
        s.occurrences = Math.max(s.occurrences, p.occurrences);
        s.message = p.message;
        k.acc.schedules.set(bucket, s);
      }
    }
    drifts = new Map();
  };

  for await (const page of readHistory(deps.store, { since: opts.since, until: opts.until }, opts.stopped)) {
    for (const r of page) {
      if (r.agentId !== host) {
        endHost();
        host = r.agentId;
      }
      out.records++;
      tracker.push(r, r.event === 'drift_detected' ? (policies.info(r) ?? (await policies.load(r))) : undefined);
    }
  }
  endHost();
  return out;
}

function count(acc: OutcomeAcc, ep: Episode, decisionMs: number | undefined, opts: OutcomeOptions): void {
  const t = ep.drift.time;
  acc.drifts++;
  acc.hosts.add(ep.agentId);
  acc.first = Math.min(acc.first, t);
  acc.last = Math.max(acc.last, t);
  if (RISKS.indexOf(ep.info.policy.risk) > RISKS.indexOf(acc.risk)) acc.risk = ep.info.policy.risk;
  const actor = namedActor(ep.drift.actor);
  if (actor) {
    acc.attributed++;
    if (actor.loginUser !== undefined || actor.loginUid !== undefined) acc.byPerson++;
  }
  if (ep.before === 'escalate') acc.escalations++;
  if (ep.before === 'repair' && ep.autoRepairedAt !== undefined) {
    acc.autoRepairs++;
    if (ep.recurredAt !== undefined && ep.recurredAt - ep.autoRepairedAt <= opts.recurrenceWindowMs) acc.recurrences++;
    else if (ep.recurredAt !== undefined || opts.until - ep.autoRepairedAt >= opts.recurrenceWindowMs) acc.held++;
  }
  if (ep.human?.action === 'approved') acc.approvals++;
  if (ep.human?.action === 'rejected') acc.rejections++;
  if (decisionMs !== undefined) acc.decisionMs.push(decisionMs);
  if (ep.before === 'defer') {
    acc.deferrals++;
    if (ep.human?.action === 'approved') acc.deferralsApproved++;
    if (ep.human?.action === 'rejected') acc.deferralsRejected++;
  }
}

type DecisionIndex = Map<string, (EscalationDecisionRow & { used: boolean })[]>;

function indexDecisions(rows: EscalationDecisionRow[]): DecisionIndex {
  const out: DecisionIndex = new Map();
  for (const r of rows) {
    if (r.decidedBy === 'agent') continue;
    const k = `${r.agentId}\u0000${r.resource}`;
    const list = out.get(k) ?? [];
    list.push({ ...r, used: false });
    out.set(k, list);
  }
  return out;
}

/**
 * How long the operator took: the escalation's opening to its decision, for the escalation of this host and resource decided
 * (by the controller's clock) before the host recorded the answer. Without one, from the drift to the host's record.
 */
function timeToDecision(index: DecisionIndex, ep: Episode): number {
  const human = ep.human as NonNullable<Episode['human']>;
  const status = human.action === 'approved' ? 'approved' : 'rejected';
  const list = index.get(`${ep.agentId}\u0000${ep.resource}`);
  if (list) {
    for (let i = list.length - 1; i >= 0; i--) {
      const d = list[i] as EscalationDecisionRow & { used: boolean };
      if (d.used || d.status !== status || d.decidedAt > human.receivedAt) continue;
      d.used = true;
      return Math.max(0, d.decidedAt - d.openedAt);
    }
  }
  return Math.max(0, human.time - ep.drift.time);
}

export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}

export function rowOf(acc: OutcomeAcc, group: Partial<Pick<OutcomeRow, 'baseline' | 'resource' | 'change' | 'rule' | 'actor'>>): OutcomeRow {
  const ms = [...acc.decisionMs].sort((a, b) => a - b);
  return {
    ...group,
    ...(group.resource !== undefined ? { risk: acc.risk } : {}),
    drifts: acc.drifts,
    hosts: acc.hosts.size,
    autoRepairs: acc.autoRepairs,
    held: acc.held,
    recurrences: acc.recurrences,
    escalations: acc.escalations,
    approvals: acc.approvals,
    rejections: acc.rejections,
    timeToDecision: ms.length === 0 ? null : { medianMs: quantile(ms, 0.5), p90Ms: quantile(ms, 0.9), n: ms.length },
    fights: acc.fights(),
    opponents: acc.topOpponents().map(({ opponent, hosts, changes }) => ({ opponent, hosts, changes })),
    deferrals: acc.deferrals,
    deferralsApproved: acc.deferralsApproved,
    deferralsRejected: acc.deferralsRejected,
    firstSeen: acc.first,
    lastSeen: acc.last,
    confidence: acc.confidence(),
  };
}

/** The rows of one grouping, most drifts first. */
export function outcomeRows(o: Outcomes, groupBy: GroupBy): OutcomeRow[] {
  const rows =
    groupBy === 'resource'
      ? [...o.byResource.values()].map(({ key, acc }) => rowOf(acc, { baseline: key.baseline, resource: key.resource, change: key.change }))
      : groupBy === 'rule'
        ? [...o.byRule].map(([rule, acc]) => rowOf(acc, { rule }))
        : [...o.byActor].map(([actor, acc]) => rowOf(acc, { actor }));
  return rows.sort((a, b) => b.drifts - a.drifts || (a.resource ?? a.rule ?? a.actor ?? '').localeCompare(b.resource ?? b.rule ?? b.actor ?? ''));
}

/** The mean of phases on a circle of `period` (a schedule around midnight averages to midnight, not noon). */
function circularMean(phases: readonly number[], period: number): number {
  let x = 0;
  let y = 0;
  for (const p of phases) {
    x += Math.cos((2 * Math.PI * p) / period);
    y += Math.sin((2 * Math.PI * p) / period);
  }
  const a = Math.atan2(y, x);
  return Math.round((((a / (2 * Math.PI)) * period) % period + period) % period);
}

