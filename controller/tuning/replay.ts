// Backtests: the fleet's recorded drifts decided again, host by host in each host's own order, by lib/policy's decide() —
// the one decision function agents use — under other policies, and compared with what the hosts did. Several candidate
// policies replay in one walk: a candidate shares the base policy's decisions on a host until that host drifts on a
// resource the candidate names, and from then on keeps its own state there (docs/tuning.md, "How a backtest replays").
import { decide, RepairLedger, type Drift, type PolicyDecision, type PolicySet, type ResourceState } from '../../lib/policy/index.js';
import type { Episode } from './episodes.js';
import { EpisodeTracker } from './episodes.js';
import type { HistoryRecord, ResourceInfo } from './history.js';
import { addCounts, countEpisode, zero, type BacktestCounts, type BacktestEvent, type BacktestResult, type LaneTally, type ReplayedEpisode } from './results.js';

export type { BacktestCounts, BacktestEvent, BacktestResult, ChangeCounts } from './results.js';

/** A policy set to replay: the base set plus a few rules, and the resources those rules name (empty: any resource). */
export interface Candidate {
  set: PolicySet;
  /** Exact resource ids the added rules can match; undefined when they may match anything (the lane decides every drift). */
  resources: readonly string[] | undefined;
}

export interface ReplayOptions {
  base: PolicySet;
  candidates?: readonly Candidate[];
  /** Drifts before `since` only build state (flap counts, limits, standing deferrals): they are not counted. */
  since: number;
  until: number;
  maxEvents?: number;
}

/** Re-decisions of one standing drift at its reconsider times, at most: a window boundary or a grace period each time. */
const MAX_RECONSIDER = 32;
const DEFAULT_MAX_EVENTS = 1000;

/** A resource's state in one lane: what that lane's own decisions made of it. */
interface LaneResource {
  repairs: number[];
  suppressed: boolean;
  deferredSince: number | undefined;
  /** The drift left standing by this lane's last decision (repaired, rejected or replaced: undefined). */
  standing: Drift | undefined;
  pendingAt: number | undefined;
  reconsidered: number;
}


/** One lane's state on the host being walked. */
class LaneHost implements LaneTally {
  readonly res = new Map<string, LaneResource>();
  ledger = new RepairLedger();
  /** What the ledger holds (rule, time), so a fork can copy it; pruned to the hour. */
  ledgerLog: [string, number][] = [];
  pending: { at: number; resource: string }[] = [];
  eps = new Map<Episode, ReplayedEpisode>();
  counts = zero();
  events: BacktestEvent[] = [];
  eventsTruncated = false;

  resource(id: string): LaneResource {
    let r = this.res.get(id);
    if (!r) {
      r = { repairs: [], suppressed: false, deferredSince: undefined, standing: undefined, pendingAt: undefined, reconsidered: 0 };
      this.res.set(id, r);
    }
    return r;
  }

  fork(): LaneHost {
    const f = new LaneHost();
    for (const [id, r] of this.res) f.res.set(id, { ...r, repairs: [...r.repairs] });
    for (const [key, time] of this.ledgerLog) f.ledger.record(key, time);
    f.ledgerLog = [...this.ledgerLog];
    f.pending = this.pending.map((p) => ({ ...p }));
    for (const [ep, le] of this.eps) f.eps.set(ep, { ...le });
    f.counts = zero();
    addCounts(f.counts, this.counts);
    f.events = [...this.events];
    f.eventsTruncated = this.eventsTruncated;
    return f;
  }
}

/**
 * Feed it records in (agent, seq) order with each record's resource info; `finish` gives one result per policy set: the base
 * first, then each candidate.
 */
export class Replay {
  private readonly sets: PolicySet[];
  private readonly totals: BacktestCounts[];
  private readonly events: BacktestEvent[][];
  private readonly truncated: boolean[];
  private readonly maxEvents: number;
  /** Candidates (by lane index) to fork when a host drifts on a resource; `everywhere` fork at the first drift of a host. */
  private readonly byResource = new Map<string, number[]>();
  private readonly everywhere: number[] = [];
  private agent: string | undefined;
  private lanes: (LaneHost | undefined)[] = [];
  private readonly failures = new Map<string, { n: number; last: number }>();
  private readonly tracker: EpisodeTracker;

  constructor(private readonly opts: ReplayOptions) {
    this.sets = [opts.base, ...(opts.candidates ?? []).map((c) => c.set)];
    this.totals = this.sets.map(zero);
    this.events = this.sets.map(() => []);
    this.truncated = this.sets.map(() => false);
    this.maxEvents = opts.maxEvents ?? DEFAULT_MAX_EVENTS;
    (opts.candidates ?? []).forEach((c, i) => {
      if (c.resources === undefined) this.everywhere.push(i + 1);
      else for (const r of c.resources) this.byResource.set(r, [...(this.byResource.get(r) ?? []), i + 1]);
    });
    this.tracker = new EpisodeTracker({
      opened: (ep, r) => this.opened(ep, r),
      redetected: (ep, r) => this.redetected(ep, r),
      record: (ep, r) => this.record(ep, r),
      closed: (ep) => this.closed(ep),
    });
  }

  /** One record; `info` is its resource's baseline policy (ResourcePolicies). */
  push(r: HistoryRecord, info: ResourceInfo | undefined): void {
    if (r.agentId !== this.agent) {
      this.endHost();
      this.agent = r.agentId;
      this.lanes = this.sets.map((_, i) => (i === 0 ? new LaneHost() : undefined));
    }
    this.reconsider(r.time);
    this.tracker.push(r, info);
  }

  finish(): BacktestResult[] {
    this.endHost();
    return this.sets.map((_, i) => {
      const { change, ...counts } = this.totals[i] as BacktestCounts;
      return {
        since: this.opts.since,
        until: this.opts.until,
        ...counts,
        ...(i > 0 && change ? { change } : {}),
        events: this.events[i] as BacktestEvent[],
        eventsTruncated: this.truncated[i] as boolean,
      };
    });
  }

  private endHost(): void {
    if (this.agent === undefined) return;
    this.reconsider(this.opts.until - 1);
    this.tracker.end();
    const base = this.lanes[0] as LaneHost;
    this.sets.forEach((_, i) => {
      const lane = this.lanes[i] ?? base;
      addCounts(this.totals[i] as BacktestCounts, lane.counts);
      const out = this.events[i] as BacktestEvent[];
      for (const e of lane.events) {
        if (out.length < this.maxEvents) out.push(e);
        else this.truncated[i] = true;
      }
      if (lane.eventsTruncated) this.truncated[i] = true;
    });
    this.agent = undefined;
    this.failures.clear();
  }

  private opened(ep: Episode, r: HistoryRecord): void {
    const base = this.lanes[0] as LaneHost;
    // Candidates whose rules name this resource take their own state from here on, copied from the base before it decides.
    for (const i of [...(this.byResource.get(ep.resource) ?? []), ...this.everywhere]) if (!this.lanes[i]) this.lanes[i] = base.fork();
    const drift: Drift = {
      resource: ep.resource,
      kind: ep.info.kind,
      baseline: ep.baseline,
      changes: r.changes,
      time: r.time,
      ...(r.actor ? { actor: r.actor } : {}),
    };
    this.lanes.forEach((lane, i) => {
      if (!lane) return;
      const rs = lane.resource(ep.resource);
      rs.pendingAt = undefined;
      rs.reconsidered = 0;
      rs.standing = drift;
      const d = this.decideIn(i, lane, ep, drift, r.time, false);
      lane.eps.set(ep, { first: d, repairedAt: undefined, autoRepair: false, overridden: false });
      this.apply(lane, ep, rs, d, r.time);
    });
  }

  /** The host sees an approved drift again before repairing it: lanes where the drift still stands repair it now. */
  private redetected(ep: Episode, r: HistoryRecord): void {
    this.lanes.forEach((lane, i) => {
      const rs = lane?.res.get(ep.resource);
      if (!lane || !rs?.standing) return;
      const drift = { ...rs.standing, time: r.time };
      this.apply(lane, ep, rs, this.decideIn(i, lane, ep, drift, r.time, true), r.time);
    });
  }

  private record(ep: Episode | undefined, r: HistoryRecord): void {
    const resource = r.resource ?? '';
    switch (r.event) {
      case 'repaired':
        this.failures.delete(resource);
        return;
      case 'repair_failed': {
        const f = this.failures.get(resource);
        this.failures.set(resource, { n: (f?.n ?? 0) + 1, last: r.time });
        return;
      }
      case 'approved':
        // The operator's answer resets the flap count and lifts suppression, as on the host.
        for (const lane of this.lanes) {
          const rs = lane?.res.get(resource);
          if (!rs) continue;
          rs.repairs = [];
          rs.suppressed = false;
          rs.pendingAt = undefined;
        }
        return;
      case 'rejected':
        // The drift is accepted: a lane that had already repaired it by itself overrode the operator.
        for (const lane of this.lanes) {
          if (!lane) continue;
          const le = ep ? lane.eps.get(ep) : undefined;
          if (le?.autoRepair && le.repairedAt !== undefined && le.repairedAt <= r.time) le.overridden = true;
          const rs = lane.res.get(resource);
          if (!rs) continue;
          rs.standing = undefined;
          rs.deferredSince = undefined;
          rs.suppressed = false;
          rs.pendingAt = undefined;
        }
        return;
    }
  }

  private closed(ep: Episode): void {
    const counted = ep.drift.time >= this.opts.since;
    const base = this.lanes[0]?.eps.get(ep);
    this.lanes.forEach((lane, i) => {
      const le = lane?.eps.get(ep);
      if (!lane || !le) return;
      lane.eps.delete(ep);
      if (counted) countEpisode(lane, ep, le, i > 0 ? base : undefined, this.maxEvents);
    });
  }

  private decideIn(i: number, lane: LaneHost, ep: Episode, drift: Drift, t: number, approved: boolean): PolicyDecision {
    const rs = lane.resource(ep.resource);
    const p = ep.info.policy;
    const from = t - p.flap.windowMs;
    if (rs.repairs.length > 0 && (rs.repairs[0] as number) <= from) rs.repairs = rs.repairs.filter((x) => x > from);
    const f = this.failures.get(ep.resource);
    const state: ResourceState = {
      policy: p,
      paused: this.tracker.paused,
      approved,
      suppressed: rs.suppressed,
      // A recorded drift was never under an exception: the host records none while one holds.
      excepted: false,
      backingOff: f !== undefined && t < f.last + retryBaseMs(f.n),
      recentRepairs: rs.repairs.length,
      ...(rs.deferredSince !== undefined ? { deferredSince: rs.deferredSince } : {}),
      ruleRepairs: (k) => lane.ledger.count(k, t),
    };
    return decide(this.sets[i] as PolicySet, drift, state);
  }

  private apply(lane: LaneHost, ep: Episode, rs: LaneResource, d: PolicyDecision, t: number): void {
    const le = lane.eps.get(ep);
    switch (d.action) {
      case 'repair':
        rs.repairs.push(t);
        if (d.countsAgainst !== undefined) {
          lane.ledger.record(d.countsAgainst, t);
          lane.ledgerLog.push([d.countsAgainst, t]);
          if (lane.ledgerLog.length > 64 && (lane.ledgerLog[0] as [string, number])[1] <= t - 3_600_000) lane.ledgerLog = lane.ledgerLog.filter(([, x]) => x > t - 3_600_000);
        }
        if (d.cause === 'approved') rs.suppressed = false;
        rs.deferredSince = undefined;
        rs.standing = undefined;
        rs.pendingAt = undefined;
        if (le && le.repairedAt === undefined) {
          le.repairedAt = t;
          le.autoRepair = d.cause !== 'approved';
        }
        return;
      case 'suppress':
        rs.suppressed = true;
        break;
      case 'defer':
        rs.deferredSince ??= t;
        break;
    }
    if (d.reconsiderAt !== undefined && d.reconsiderAt > t && rs.reconsidered < MAX_RECONSIDER) {
      rs.pendingAt = d.reconsiderAt;
      lane.pending.push({ at: d.reconsiderAt, resource: ep.resource });
    }
  }

  /** Decides again, in time order, the standing drifts whose reconsider time has come by `t` (a window ended, a grace period ran out). */
  private reconsider(t: number): void {
    this.lanes.forEach((lane, i) => {
      if (!lane || lane.pending.length === 0) return;
      for (;;) {
        let best = -1;
        for (let k = 0; k < lane.pending.length; k++) {
          const p = lane.pending[k] as { at: number; resource: string };
          if (p.at <= t && (best < 0 || p.at < (lane.pending[best] as { at: number }).at)) best = k;
        }
        if (best < 0) break;
        const [p] = lane.pending.splice(best, 1) as [{ at: number; resource: string }];
        const rs = lane.res.get(p.resource);
        const ep = this.tracker.episodeOf(p.resource);
        if (!rs || rs.pendingAt !== p.at || !rs.standing || !ep) continue;
        rs.pendingAt = undefined;
        rs.reconsidered++;
        const drift = { ...rs.standing, time: p.at };
        this.apply(lane, ep, rs, this.decideIn(i, lane, ep, drift, p.at, false), p.at);
      }
    });
  }
}

/** The host's retry delay after `failures` failed repairs, without its jitter (agent/engine/decisions.ts REPAIR_RETRY). */
function retryBaseMs(failures: number): number {
  return Math.min(300_000, 1000 * 2 ** Math.max(0, failures - 1));
}
