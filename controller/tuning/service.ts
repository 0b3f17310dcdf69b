// Adaptive tuning on the controller: outcomes on request, proposals refreshed periodically and on request with a backtest
// each, operators' accept / reject / revert, backtests of any policy, and bounded autotuning. Changes to proposals and to
// the tuning document happen one at a time; walks over the history yield between pages so agents and the API keep going.
import type { Clock } from '../../lib/clock.js';
import { HsError, errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { parsePolicy, PolicySet, type ActivePolicy } from '../../lib/policy/index.js';
import type { ControllerStore } from '../store/types.js';
import type { ProposalRecord, ProposalState } from '../store/tuning.js';
import { Announcer, type TuningEventKind } from './announce.js';
import { autotuneVerdict } from './autotune.js';
import { runBacktest } from './backtest.js';
import { renderTuningDocument, TUNING_POLICY, withTuning, type Applied } from './document.js';
import { computeOutcomes, outcomeRows, type GroupBy, type OutcomeRow } from './outcomes.js';
import { propose } from './propose.js';
import type { PolicyPublisher } from './publisher.js';
import type { BacktestResult, Candidate } from './replay.js';
import { checkPatch, ms, settingsFrom, SETTINGS_NAME, type AutotuneMode, type TuningSettings } from './settings.js';

export interface TuningDeps {
  store: ControllerStore;
  publisher: PolicyPublisher;
  clock: Clock;
  log: Logger;
}

export interface BacktestRequest {
  /** A policy document's YAML: replayed in place of the version of that name in force (or beside them). */
  policy?: string;
  /** A proposal: replayed as if accepted (an accepted one: as things are). */
  proposal?: number;
  since?: number;
  until?: number;
  maxEvents?: number;
}

/** Walks of the history (backtests, outcomes) that may run at once; more are refused, to be retried. */
const MAX_WALKS = 2;
/** Automatic changes in one refresh: after each, proposals are computed again against the new policy. */
const MAX_AUTOTUNE_STEPS = 10;
/** Affected events kept with a stored proposal's backtest. */
const STORED_EVENTS = 50;
export const BACKTEST_MAX_EVENTS = 10_000;

export class TuningService {
  private readonly announcer: Announcer;
  private chain: Promise<unknown> = Promise.resolve();
  private walks = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly deps: TuningDeps) {
    this.announcer = new Announcer(deps.store, deps.clock, deps.log);
  }

  /** Applies the command line's `--autotune` (when given) and starts the periodic refresh. */
  async start(autotune?: AutotuneMode): Promise<void> {
    if (autotune !== undefined) {
      const s = await this.settings();
      if (s.mode !== autotune) await this.updateSettings({ mode: autotune }, 'command line');
    }
    await this.exclusive(() => this.restoreDocument()).catch((err: unknown) => this.deps.log.error({ err: errorMessage(err) }, 'tuning policy not stored again from the accepted proposals'));
    await this.schedule();
  }

  /**
   * A controller upgraded from schema 6 kept the tuning document in a table of its own, which schema 7 dropped: the
   * document is a function of the accepted proposals, so it is stored again from them as a policy version (counted in force
   * for replays until rolled out, as before the upgrade). Not rolled out here: agents never had it, and whether they get it
   * now is the operator's rollout to start, or the next accept's.
   */
  private async restoreDocument(): Promise<void> {
    if ((await this.deps.publisher.current(TUNING_POLICY)) !== undefined) return;
    const accepted = await this.list('accepted');
    if (accepted.length === 0) return;
    const pushed = await this.deps.publisher.push(renderTuningDocument(accepted), 'upgrade');
    this.deps.log.warn({ policy: pushed.name, version: pushed.version, rules: accepted.length }, 'tuning policy stored again from the accepted proposals; roll it out to put it on the hosts');
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.chain.catch(() => undefined);
  }

  async settings(): Promise<TuningSettings & { updatedAt: number | null; updatedBy: string | null }> {
    const rec = await this.deps.store.tuning.getSetting(SETTINGS_NAME);
    return { ...settingsFrom(rec?.value), updatedAt: rec?.updatedAt ?? null, updatedBy: rec?.updatedBy ?? null };
  }

  updateSettings(patch: Record<string, unknown>, by: string): Promise<TuningSettings & { updatedAt: number | null; updatedBy: string | null }> {
    const checked = checkPatch(patch);
    return this.exclusive(async () => {
      const { updatedAt: _a, updatedBy: _b, ...current } = await this.settings();
      const next: TuningSettings = { ...current, ...checked };
      await this.deps.store.tuning.putSetting(SETTINGS_NAME, next, this.deps.clock.now(), by);
      this.deps.log.info({ mode: next.mode, minConfidence: next.minConfidence, by }, 'tuning settings changed');
      if (!this.closed && this.timer) await this.schedule();
      return this.settings();
    });
  }

  async outcomes(q: { groupBy: GroupBy; since?: number; until?: number; recurrenceWindowMs?: number }): Promise<Record<string, unknown>> {
    const s = await this.settings();
    const now = this.deps.clock.now();
    const until = q.until ?? now;
    const since = q.since ?? until - ms(s.lookback);
    if (since >= until) throw new HsError('HS_CONFIG', 'since must be before until');
    const o = await this.walk(() => computeOutcomes(this.deps, { since, until, recurrenceWindowMs: q.recurrenceWindowMs ?? ms(s.recurrenceWindow), stopped: () => this.closed }));
    const rows: OutcomeRow[] = outcomeRows(o, q.groupBy);
    return { groupBy: q.groupBy, since, until, recurrenceWindowMs: o.recurrenceWindowMs, records: o.records, rows };
  }

  async backtest(req: BacktestRequest): Promise<Record<string, unknown>> {
    if ((req.policy === undefined) === (req.proposal === undefined)) throw new HsError('HS_CONFIG', 'give "policy" (a policy document\'s YAML) or "proposal" (an id), one of them');
    const s = await this.settings();
    const until = req.until ?? this.deps.clock.now();
    const since = req.since ?? until - ms(s.lookback);
    if (since >= until) throw new HsError('HS_CONFIG', 'since must be before until');
    let set: PolicySet;
    let policy: { name: string; sha256: string };
    if (req.policy !== undefined) {
      const doc = parsePolicy(req.policy, { file: 'policy.yaml' });
      const active = await this.deps.publisher.active();
      const current = await this.deps.publisher.current(doc.name);
      set = new PolicySet([...active.filter((a) => a.document.name !== doc.name), { document: doc, version: (current?.version ?? 0) + 1 }]);
      policy = { name: doc.name, sha256: doc.origin.sha256 };
    } else {
      const p = await this.get(req.proposal as number);
      const built = await this.setWith(p);
      set = built.set;
      policy = { name: TUNING_POLICY, sha256: built.sha256 };
    }
    const maxEvents = Math.min(req.maxEvents ?? 1000, BACKTEST_MAX_EVENTS);
    const { results, stats } = await this.walk(() => runBacktest(this.deps, { base: set, since, until, maxEvents, stopped: () => this.closed }));
    return { policy, ...(results[0] as BacktestResult), replayed: stats };
  }

  async list(state?: ProposalState): Promise<ProposalRecord[]> {
    return this.deps.store.tuning.listProposals({ ...(state ? { state } : {}), limit: 10_000 });
  }

  async get(id: number): Promise<ProposalRecord> {
    const p = await this.deps.store.tuning.getProposal(id);
    if (!p) throw new HsError('HS_NOT_FOUND', `no proposal ${id}`);
    return p;
  }

  /** Computes proposals again now; with autotuning bounded, applies what its bounds allow, one change at a time. */
  refresh(by = 'operator'): Promise<ProposalRecord[]> {
    return this.exclusive(async () => {
      for (let step = 0; step < MAX_AUTOTUNE_STEPS && !this.closed; step++) {
        if (!(await this.refreshOnce(by))) break;
      }
      return this.list();
    });
  }

  accept(id: number, by: string, reason = ''): Promise<ProposalRecord> {
    return this.exclusive(async () => {
      const p = await this.get(id);
      if (p.state !== 'open') throw new HsError('HS_CONFLICT', `proposal ${id} is ${p.state}; only an open proposal can be accepted`);
      return this.apply(p, by, reason);
    });
  }

  reject(id: number, by: string, reason = ''): Promise<ProposalRecord> {
    return this.exclusive(async () => {
      const p = await this.get(id);
      if (p.state !== 'open' && p.state !== 'withdrawn') throw new HsError('HS_CONFLICT', `proposal ${id} is ${p.state}; only an open proposal can be rejected`);
      const now = this.deps.clock.now();
      const patch = { state: 'rejected' as const, decidedAt: now, decidedBy: by, reason, updatedAt: now };
      await this.deps.store.tuning.updateProposal(id, patch);
      await this.announce('proposal_rejected', { ...p, ...patch }, null, by, reason);
      return { ...p, ...patch };
    });
  }

  /** Takes an accepted proposal's rule out again: a new version of the tuning document without it, rolled out. */
  revert(id: number, by: string, reason = ''): Promise<ProposalRecord> {
    return this.exclusive(async () => {
      const p = await this.get(id);
      if (p.state !== 'accepted') throw new HsError('HS_CONFLICT', `proposal ${id} is ${p.state}; only an accepted proposal can be reverted`);
      const rest = (await this.list('accepted')).filter((x) => x.id !== id);
      const published = await this.publish(rest, by);
      const now = this.deps.clock.now();
      const patch = { state: 'reverted' as const, reverted: { name: published.name, version: published.version, at: now, by, reason }, updatedAt: now };
      await this.deps.store.tuning.updateProposal(id, patch);
      const s = await this.settings();
      await this.announce(p.decidedBy === 'autotune' ? 'autotune_reverted' : 'proposal_reverted', { ...p, ...patch }, published, by, reason, s.webhook);
      return { ...p, ...patch };
    });
  }

  private async apply(p: ProposalRecord, by: string, reason: string): Promise<ProposalRecord> {
    const rest = (await this.list('accepted')).filter((x) => x.id !== p.id);
    const published = await this.publish([...rest, p], by);
    const now = this.deps.clock.now();
    const patch = { state: 'accepted' as const, decidedAt: now, decidedBy: by, reason, applied: { name: published.name, version: published.version }, updatedAt: now };
    await this.deps.store.tuning.updateProposal(p.id, patch);
    const s = await this.settings();
    await this.announce(by === 'autotune' ? 'autotune_applied' : 'proposal_accepted', { ...p, ...patch }, published, by, reason, s.webhook);
    return { ...p, ...patch };
  }

  /** A new version of the tuning document holding exactly `applied`, rolled out like any policy version. */
  private async publish(applied: readonly Applied[], by: string): Promise<{ name: string; version: number; rollout: number }> {
    const pushed = await this.deps.publisher.push(renderTuningDocument(applied), by);
    const { rollout } = await this.deps.publisher.rollout(pushed.name, pushed.version, by, (await this.settings()).rolloutStrategy ?? undefined);
    return { name: pushed.name, version: pushed.version, rollout };
  }

  private async announce(kind: TuningEventKind, p: ProposalRecord, policy: { name: string; version: number; rollout: number } | null, by: string, reason: string, webhook: string | null = null): Promise<void> {
    try {
      await this.announcer.announce({ kind, proposal: { id: p.id, kind: p.kind, target: p.target, rationale: p.rationale }, policy, by, ...(reason ? { reason } : {}) }, webhook);
    } catch (err) {
      this.deps.log.error({ err: errorMessage(err), proposal: p.id, kind }, 'tuning change not announced');
    }
  }

  /** The policies in force with the tuning document holding what is accepted and `p` as well. */
  private async setWith(p: ProposalRecord): Promise<{ set: PolicySet; sha256: string }> {
    const active = await this.deps.publisher.active();
    const accepted = await this.list('accepted');
    const applied = p.state === 'accepted' ? accepted : [...accepted, p];
    const version = (await this.deps.publisher.current(TUNING_POLICY))?.version ?? 0;
    const { set, document } = withTuning(active, applied, version);
    return { set, sha256: document.origin.sha256 };
  }

  /** One pass: outcomes, proposals, their backtests in one replay, then (bounded) at most one automatic change. */
  private async refreshOnce(by: string): Promise<boolean> {
    const { store, clock, log } = this.deps;
    const s = await this.settings();
    const until = clock.now();
    const since = until - ms(s.lookback);
    const outcomes = await this.walk(() => computeOutcomes(this.deps, { since, until, recurrenceWindowMs: ms(s.recurrenceWindow), stopped: () => this.closed }));
    const drafts = propose(outcomes, { rejectedResources: new Set(await store.tuning.rejectedResources()) });
    const all = await this.list();
    const latest = new Map<string, ProposalRecord>();
    for (const p of all) latest.set(p.key, p);
    const now = clock.now();
    // A proposal accepted, rejected or reverted is not made again: people (or autotuning, once) decided it.
    const live: ProposalRecord[] = [];
    for (const d of drafts) {
      const prev = latest.get(d.key);
      if (prev && prev.state !== 'open' && prev.state !== 'withdrawn') continue;
      const fields = { kind: d.kind, target: d.target, rationale: d.rationale, evidence: d.evidence, confidence: d.confidence, rule: d.rule, window: d.window, state: 'open' as const, updatedAt: now };
      if (prev) {
        await store.tuning.updateProposal(prev.id, fields);
        live.push({ ...prev, ...fields });
      } else {
        live.push(
          await store.tuning.addProposal({
            key: d.key,
            ...fields,
            backtest: null,
            autotune: { eligible: false, reasons: ['not backtested yet'] },
            createdAt: now,
            decidedAt: null,
            decidedBy: null,
            reason: null,
            applied: null,
            reverted: null,
          }),
        );
      }
    }
    const keys = new Set(live.map((p) => p.key));
    for (const p of all) {
      if (p.state === 'open' && !keys.has(p.key)) await store.tuning.updateProposal(p.id, { state: 'withdrawn', reason: 'the history no longer argues for it', updatedAt: now });
    }

    // Every proposal's backtest in one replay: each candidate is what is in force plus that proposal's rule.
    const active: ActivePolicy[] = await this.deps.publisher.active();
    const accepted = all.filter((p) => p.state === 'accepted');
    const version = (await this.deps.publisher.current(TUNING_POLICY))?.version ?? 0;
    const candidates: { p: ProposalRecord; c: Candidate }[] = [];
    for (const p of live) {
      try {
        const { set } = withTuning(active, [...accepted, p], version);
        candidates.push({ p, c: { set, resources: p.window ? undefined : [p.target.resource] } });
      } catch (err) {
        log.error({ proposal: p.id, err: errorMessage(err) }, 'proposal does not make a valid policy; withdrawn');
        await store.tuning.updateProposal(p.id, { state: 'withdrawn', reason: `not a valid policy: ${errorMessage(err)}`, updatedAt: now });
      }
    }
    const { results } = await this.walk(() =>
      runBacktest(this.deps, { base: new PolicySet(active), candidates: candidates.map((x) => x.c), since, until, maxEvents: STORED_EVENTS, stopped: () => this.closed }),
    );
    const eligible: ProposalRecord[] = [];
    for (let i = 0; i < candidates.length; i++) {
      const { p } = candidates[i] as { p: ProposalRecord };
      const b = results[i + 1] as BacktestResult;
      const autotune = autotuneVerdict({ ...p, backtest: b }, s.minConfidence);
      const backtest = { ...b, policy: { name: TUNING_POLICY } };
      await store.tuning.updateProposal(p.id, { backtest, autotune });
      if (autotune.eligible) eligible.push({ ...p, backtest, autotune });
    }
    log.info({ proposals: candidates.length, eligible: eligible.length, records: outcomes.records, by }, 'proposals refreshed');
    if (s.mode !== 'bounded' || eligible.length === 0) return false;
    // The surest first; after it, everything is computed again against the policy now in force.
    eligible.sort((a, b) => b.confidence.low - a.confidence.low || a.id - b.id);
    await this.apply(eligible[0] as ProposalRecord, 'autotune', 'within the bounds of autotuning');
    return true;
  }

  private async walk<T>(fn: () => Promise<T>): Promise<T> {
    if (this.walks >= MAX_WALKS) throw new HsError('HS_RATE_LIMITED', `${MAX_WALKS} replays of the history are already running; retry when they are done`, { retryable: true });
    this.walks++;
    try {
      const out = await fn();
      // A walk cut short by shutdown saw part of the history: nothing may be concluded from it.
      if (this.closed) throw new HsError('HS_STORE', 'the controller is stopping; the history was not read to the end', { retryable: true });
      return out;
    } finally {
      this.walks--;
    }
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async schedule(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    const every = ms((await this.settings()).refreshInterval);
    this.timer = setTimeout(() => {
      this.refresh('schedule')
        .catch((err: unknown) => {
          if (!this.closed) this.deps.log.error({ err: errorMessage(err) }, 'proposal refresh failed');
        })
        .finally(() => {
          if (!this.closed) void this.schedule().catch((err: unknown) => this.deps.log.error({ err: errorMessage(err) }, 'proposal refresh not scheduled'));
        });
    }, every);
    this.timer.unref();
  }
}
