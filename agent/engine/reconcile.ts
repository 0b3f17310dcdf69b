// The one reconcile path for every resource kind: observe → diff → decide → apply → observe again to verify → record.
// It never throws: whatever a resource kind or the store does wrong is recorded as that resource's failure, retried with
// backoff and escalated if it lasts, while every other resource goes on being enforced. A reconcile that outlives its
// deadline is recorded as timed out and the engine stops waiting for it (nothing else runs for that resource until it
// returns); observation itself must not block the event loop for that to help (host/fsguard.ts).
import { HsError, errorMessage } from '../../lib/errors.js';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import type { Actor } from '../../lib/policy/actor.js';
import type { PolicyDecision } from '../../lib/policy/decide.js';
import { changeKindOf } from '../../lib/policy/types.js';
import type { Change } from '../resources/resource.js';
import type { DecisionFields, DecisionRecord, Trigger } from '../store/types.js';
import type { Decisions } from './decisions.js';
import type { DriftHistory } from './history.js';
import type { Polls } from './polls.js';
import type { Recorder } from './recorder.js';
import { describeChanges, driftState, fingerprint, type DriftRecord, type Outcome, type ResourceResult, type Runtime } from './runtime.js';

export interface EngineStats {
  reconciles: number;
  repairs: number;
  failures: number;
  timeouts: number;
}

/** Who made a drift (agent/actor's Actors in the daemon): answers within its own bounded wait, never throws. */
export interface ActorLookup {
  actorFor(q: { kind: string; name: string; changes: readonly string[]; time: number; since?: number; waitMs?: number }): Promise<Actor>;
}

/**
 * How long a lookup may wait for an audit record still on its way when no rule decides by the actor, for a drift a watch
 * event just reported. The event comes with the change, its audit record 0.3 ms (p50) to 4 ms (p99) later
 * (bench/audit-latency.ts): not waiting at all often left a scripted change `unknown`. The lookup takes the record the
 * moment the log gives it, so a found actor costs only the time it was late; only a change with no record at all waits
 * this long. Drifts found by a poll, the resync or at start are older than any record in flight: no wait. The records
 * are written before the repair, so a kill between the repair and its record still leaves `repair_interrupted`.
 */
const RECORD_ONLY_WAIT_MS = 10;

/** A retry or reconsideration further away than this is looked at then, and planned again (timers have a range). */
const MAX_WAIT_MS = 6 * 3_600_000;

export interface ReconcileContext {
  decisions: Decisions;
  /** Absent: drifts carry no actor (one-shot commands). */
  actors: () => ActorLookup | undefined;
  history: DriftHistory;
  recorder: Recorder;
  polls: Polls;
  clock: Clock;
  log: Logger;
  stats: EngineStats;
  /** How long one reconcile may take before the engine records it as timed out and stops waiting. */
  deadlineMs: number;
  /** Whether failures schedule retries (the daemon) or not (a one-shot command). */
  retries: () => boolean;
  /** Keeps the content a repair replaced, tied to its `repaired` record (for `audit --replaced`); failures are the callee's to contain. */
  keepReplaced: (rt: Runtime, content: Buffer, seq: number) => void;
}

/** Reconciles `rt` once, within the deadline. Never rejects. */
export async function reconcile(ctx: ReconcileContext, rt: Runtime, trigger: Trigger): Promise<void> {
  // A reconcile still running past its deadline holds the resource: another would race it on the same host object.
  if (rt.stuck) return;
  const run = attempt(ctx, rt, trigger);
  const done = await finishedWithin(run, ctx.deadlineMs);
  // Counted once finished (or given up on): a test or a probe waiting for this count knows the reconcile has had its say.
  ctx.stats.reconciles++;
  if (done) return;
  ctx.stats.timeouts++;
  rt.stuck = { since: ctx.clock.now(), recorded: true };
  const s = Math.round(ctx.deadlineMs / 100) / 10;
  fail(ctx, rt, trigger, new HsError('HS_HOST_TIMEOUT', `the reconcile of ${rt.id} did not finish within ${s} s; it is not tried again until it returns`, { resource: rt.id, retryable: true }), undefined);
  void run.then(() => {
    rt.stuck = undefined;
    ctx.log.warn({ resource: rt.id }, 'a timed-out reconcile returned');
  });
}

/** Whether `p` settled within `ms`. */
export async function finishedWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}

async function attempt(ctx: ReconcileContext, rt: Runtime, trigger: Trigger): Promise<void> {
  const r = rt.resource;
  const t0 = ctx.clock.monotonic();
  let observed: unknown;
  let changes: Change[];
  try {
    observed = await r.observe();
    changes = r.diff(observed);
  } catch (err) {
    fail(ctx, rt, trigger, err, undefined);
    return;
  }
  if (changes.length === 0) {
    try {
      r.commit?.(observed);
    } catch (err) {
      ctx.log.warn({ resource: rt.id, err: errorMessage(err) }, 'observation not remembered');
    }
    ctx.decisions.compliant(rt, trigger);
    rt.keptAt = ctx.clock.now();
    // A compliant resource keeps no summaries: with 10,000 files they would be the largest thing in the daemon's heap.
    rt.outcome = 'kept';
    rt.result = undefined;
    return;
  }
  let drift: DriftRecord | undefined;
  let fp: string | undefined;
  try {
    fp = fingerprint(changes);
    const actor = await actorOf(ctx, rt, changes, fp, trigger);
    let decision = ctx.decisions.decide(rt, changes, fp, trigger, actor);
    if (decision.action === 'suppress') {
      const fight = ctx.history.fight(rt, ctx.clock.now());
      if (fight) decision = { ...decision, reason: `${fight.message}; ${decision.reason}` };
    }
    const facts = factsOf(rt, changes, decision);
    const observedSummary = r.summarize(observed);
    const desired = r.desired();
    drift = { observed: observedSummary, desired, diff: changes.flatMap((c) => (c.diff ? [c.diff] : [])).join('\n') || null, detail: describeChanges(changes) };
    const result = (outcome: Outcome): void => {
      rt.outcome = outcome;
      rt.result = { id: rt.id, outcome, changes, observed: observedSummary, desired };
    };
    if (decision.action !== 'repair') {
      result(holdOrReport(ctx, rt, trigger, decision, fp, drift, facts, actor));
      return;
    }
    const d = driftState(rt);
    if (d.recordedDrift !== fp || decision.cause === 'approved' || d.failures === 0) {
      ctx.recorder.resource(rt, 'drift_detected', trigger, { ...drift, ...facts, ...(actor ? { actor } : {}) });
    }
    const applied = await r.apply(observed, changes);
    // Verification happens here, once, for every kind: the state read back is what counts, never what apply believed.
    const after = await r.observe();
    const remaining = r.diff(after);
    if (remaining.length > 0) {
      throw new HsError('HS_VERIFY_FAILED', `the repair did not hold: read back ${describeChanges(remaining)}`, { resource: rt.id, retryable: true });
    }
    r.commit?.(after);
    const ms = ctx.clock.monotonic() - t0;
    ctx.decisions.repaired(rt, decision);
    rt.keptAt = ctx.clock.now();
    ctx.stats.repairs++;
    const record = ctx.recorder.resource(rt, 'repaired', trigger, { observed: r.summarize(after), desired, diff: null, detail: `verified in ${ms.toFixed(2)} ms`, ...facts });
    if (applied && applied.replaced) ctx.keepReplaced(rt, applied.replaced, record.seq);
    ctx.log.info({ resource: rt.id, trigger, ms: Number(ms.toFixed(2)) }, 'repaired');
    result('repaired');
    predict(ctx, rt, trigger);
  } catch (err) {
    if (fp !== undefined && drift) driftState(rt).recordedDrift = fp;
    fail(ctx, rt, trigger, err, drift);
  }
}

/**
 * Who made the drift: looked up once per standing drift (the lookup may wait for its audit record), kept while it stands.
 * Each attributed drift joins the resource's history.
 */
async function actorOf(ctx: ReconcileContext, rt: Runtime, changes: Change[], fp: string, trigger: Trigger): Promise<Actor | undefined> {
  const d = rt.drift;
  if (d && d.recordedDrift === fp && d.actor) return d.actor;
  const lookup = ctx.actors();
  const now = ctx.clock.now();
  const fields = changes.map((c) => c.field);
  let actor: Actor | undefined;
  if (lookup) {
    const colon = rt.id.indexOf(':');
    const decides = ctx.decisions.policies.policies.some((p) => p.document.rules.some((r) => r.match.actor));
    const wait = decides ? {} : { waitMs: trigger === 'watch' ? RECORD_ONLY_WAIT_MS : 0 };
    actor = await lookup.actorFor({ kind: rt.decl.type, name: rt.id.slice(colon + 1), changes: fields, time: now, ...(rt.keptAt !== undefined ? { since: rt.keptAt } : {}), ...wait });
    driftState(rt).actor = actor;
  }
  ctx.history.add(rt, now, fields, actor);
  return actor;
}

/** What every record of a decision carries: the decision and its rule, the kinds of change, the resource's risk. */
function factsOf(rt: Runtime, changes: Change[], decision: PolicyDecision): DecisionFields {
  const record: DecisionRecord = { action: decision.action, cause: decision.cause, rule: decision.rule, reason: decision.reason };
  if (decision.until !== undefined) record.until = decision.until;
  if (decision.reconsiderAt !== undefined) record.reconsiderAt = decision.reconsiderAt;
  return { decision: record, changes: [...new Set(changes.map((c) => changeKindOf(c.field)))], risk: rt.decl.policy.risk };
}

/** Records a schedule the resource's drift follows, once per period it is expected in. Never throws. */
function predict(ctx: ReconcileContext, rt: Runtime, trigger: Trigger): void {
  try {
    const p = ctx.history.newPrediction(rt, ctx.clock.now());
    if (p) ctx.recorder.resource(rt, 'drift_predicted', trigger, { detail: p.message, changes: p.change.split(',') });
  } catch (err) {
    ctx.log.warn({ resource: rt.id, err: errorMessage(err) }, 'drift not predicted');
  }
}

/** Records a drift the decision leaves alone (report, escalate, suppress, defer), once per standing drift. */
function holdOrReport(
  ctx: ReconcileContext,
  rt: Runtime,
  trigger: Trigger,
  decision: PolicyDecision,
  fp: string,
  drift: DriftRecord,
  facts: DecisionFields,
  actor: Actor | undefined,
): Outcome {
  const outcome = outcomeOf(decision);
  if (decision.action === 'hold') return outcome;
  const d = driftState(rt);
  // Looked at again when the decision may change: a grace period or a window ending, a window opening.
  const again = decision.action === 'defer' ? decision.until : decision.reconsiderAt;
  if (again !== undefined) ctx.polls.retry(rt, Math.min(MAX_WAIT_MS, Math.max(0, again - ctx.clock.now())), d, 'poll');
  if (decision.action === 'ignore') return outcome;
  if (decision.action === 'defer') ctx.decisions.deferred(rt);
  // A standing drift is recorded once, not on every event or poll that sees it again.
  if (d.recordedDrift === fp) return outcome;
  d.recordedDrift = fp;
  ctx.recorder.resource(rt, 'drift_detected', trigger, { ...drift, ...facts, ...(actor ? { actor } : {}) });
  const baseline = `${rt.baseline.name}@${rt.baseline.version}`;
  if (decision.action === 'escalate') {
    const p = rt.decl.policy;
    const detail = decision.cause === 'risk' ? `risk ${p.risk} is at or above escalateAt ${p.escalateAt}: left for a human` : decision.reason;
    ctx.decisions.awaitHuman(rt);
    ctx.recorder.resource(rt, 'escalated', trigger, { ...drift, detail, ...facts });
    ctx.log.warn({ resource: rt.id, baseline, trigger, drift: drift.detail, reason: detail }, 'escalated');
  } else if (decision.action === 'defer') {
    ctx.recorder.resource(rt, 'deferred', trigger, { ...drift, detail: decision.reason, ...facts });
  } else if (decision.action === 'suppress') {
    d.suppressed = true;
    ctx.decisions.awaitHuman(rt);
    ctx.recorder.resource(rt, 'suppressed_flapping', trigger, { ...drift, detail: decision.reason, ...facts });
    ctx.recorder.resource(rt, 'escalated', trigger, { ...drift, detail: `flapping: ${decision.reason}`, ...facts });
    ctx.log.warn({ resource: rt.id, baseline, trigger, drift: drift.detail, reason: decision.reason }, 'suppressed for flapping');
  }
  predict(ctx, rt, trigger);
  return outcome;
}

function outcomeOf(d: PolicyDecision): Outcome {
  switch (d.action) {
    case 'monitor':
    case 'defer':
      return 'drifted';
    case 'escalate':
      return 'escalated';
    case 'suppress':
      return 'suppressed';
    case 'ignore':
      return 'excepted';
    case 'hold':
      return d.cause === 'excepted' ? 'excepted' : d.cause === 'suppressed' ? 'suppressed' : 'failed';
    case 'repair':
      return 'repaired';
  }
}

/** Records a failure of `rt`, escalates a lasting one, and schedules the retry. Never throws. */
function fail(ctx: ReconcileContext, rt: Runtime, trigger: Trigger, err: unknown, drift: DriftRecord | undefined): void {
  const e = err instanceof HsError ? err : new HsError('HS_HOST_IO', errorMessage(err), { cause: err, resource: rt.id, retryable: true });
  ctx.stats.failures++;
  const { escalate, retryInMs } = ctx.decisions.failed(rt, e);
  let desired = drift?.desired ?? null;
  if (desired === null) {
    try {
      desired = rt.resource.desired();
    } catch {
      // the kind cannot even say what it wants: the record carries the error alone
    }
  }
  ctx.recorder.resource(rt, 'repair_failed', trigger, { observed: drift?.observed ?? null, desired, diff: drift?.diff ?? null, detail: `${e.code}: ${e.message}` });
  const failures = rt.drift?.failures ?? 1;
  ctx.log.warn({ resource: rt.id, baseline: `${rt.baseline.name}@${rt.baseline.version}`, trigger, code: e.code, reason: e.message, failures }, 'repair failed');
  const result: ResourceResult = { id: rt.id, outcome: 'failed', changes: [], ...(drift?.observed ? { observed: drift.observed } : {}), ...(desired ? { desired } : {}), error: errorJson(e) };
  rt.outcome = 'failed';
  rt.result = result;
  if (escalate) {
    const detail = `repair failed ${failures} time(s): ${e.code}: ${e.message}`;
    ctx.recorder.resource(rt, 'escalated', trigger, { detail });
    ctx.log.warn({ resource: rt.id, baseline: `${rt.baseline.name}@${rt.baseline.version}`, trigger, reason: detail }, 'escalated');
  }
  if (ctx.retries() && !rt.retired) ctx.polls.retry(rt, retryInMs, driftState(rt));
}

export function errorJson(err: unknown): { code: string; message: string } {
  if (err instanceof HsError) return { code: err.code, message: err.message };
  return { code: 'HS_HOST_IO', message: errorMessage(err) };
}
