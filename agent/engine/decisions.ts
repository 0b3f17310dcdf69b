// What to do about a drift, and what the engine remembers to decide it: the operator's answers (approvals, accepted
// drifts with their expiry), the flap window, failures and their backoff, deferrals, and the per-rule repair ledger. The
// decision itself is lib/policy's pure `decide`, consulted with the active policy documents (then the baseline's own
// policy) and the drift's actor.
import { backoffDelay, type BackoffOptions } from '../../lib/backoff.js';
import type { Clock } from '../../lib/clock.js';
import { errorMessage, type HsError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { Actor } from '../../lib/policy/actor.js';
import { decide, PolicySet, type PolicyDecision } from '../../lib/policy/decide.js';
import { RepairLedger } from '../../lib/policy/ledger.js';
import type { Change } from '../resources/resource.js';
import type { Trigger } from '../store/types.js';
import type { Recorder } from './recorder.js';
import { driftState, type Runtime } from './runtime.js';

/** A drift an operator accepted: left alone while it stays exactly this drift (same fingerprint) and has not expired. */
export interface AcceptedDrift {
  resource: string;
  fingerprint: string;
  reason: string;
  expiresAt: number;
}

/** Where accepted drifts are kept across restarts (the agent store); absent for one-shot commands. */
export interface ExceptionStore {
  putException(e: AcceptedDrift): void;
  deleteException(resource: string): void;
  listExceptions(): AcceptedDrift[];
}

/** Consecutive failures after which a failing repair is escalated to a human (it keeps being retried). */
export const ESCALATE_AFTER_FAILURES = 5;

/** Retries of a failed repair: from 1 s, doubling, capped at 5 min, ±20 %. */
export const REPAIR_RETRY: BackoffOptions = { baseMs: 1000, maxMs: 300_000, jitter: [0.8, 1.2] };

/** Delay before retry number `failures` (1-based) of a failed repair. */
export function retryDelayMs(failures: number, random?: () => number): number {
  return backoffDelay(failures - 1, random ? { ...REPAIR_RETRY, random } : REPAIR_RETRY);
}

/** What a policy change may not do to an escalated drift: repair it, let it stand deferred, or stop showing it. */
const WAITING_OVERRIDES: ReadonlySet<string> = new Set(['repair', 'defer', 'monitor', 'ignore']);

export class Decisions {
  /** The policy documents consulted before each baseline's own policy. */
  policies = new PolicySet();
  /** Repairs per policy rule within the last hour, for rules with maxRepairsPerHour. */
  readonly ledger = new RepairLedger();
  private readonly exceptions = new Map<string, AcceptedDrift>();
  paused = false;

  constructor(
    private readonly store: ExceptionStore | undefined,
    private readonly recorder: Recorder,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    try {
      for (const e of store?.listExceptions() ?? []) this.exceptions.set(e.resource, e);
    } catch (err) {
      // Unreadable exceptions mean drifts an operator accepted are judged again (escalated, not repaired, when risky).
      log.error({ err: errorMessage(err) }, 'accepted drifts not loaded');
    }
  }

  /** Decides one drift of `rt`. Records an accepted drift's expiry when it is found expired. */
  decide(rt: Runtime, changes: Change[], fp: string, trigger: Trigger, actor?: Actor): PolicyDecision {
    const now = this.clock.now();
    const d = rt.drift;
    const policy = rt.decl.policy;
    if (d) {
      const windowStart = now - policy.flap.windowMs;
      if (d.repairs.length > 0 && (d.repairs[0] as number) <= windowStart) d.repairs = d.repairs.filter((t) => t > windowStart);
    }
    const decision = decide(
      this.policies,
      { resource: rt.id, kind: rt.decl.type, baseline: rt.baseline.name, changes: changes.map((c) => c.field), time: now, ...(actor ? { actor } : {}) },
      {
        policy,
        paused: this.paused,
        approved: d?.approved ?? false,
        suppressed: d?.suppressed ?? false,
        excepted: this.excepted(rt, fp, now, trigger),
        backingOff: d !== undefined && d.failures > 0 && now < d.retryAt,
        recentRepairs: d?.repairs.length ?? 0,
        ...(d?.deferredSince !== undefined ? { deferredSince: d.deferredSince } : {}),
        ruleRepairs: (key) => this.ledger.count(key, now),
      },
    );
    // A drift escalated and not yet answered keeps waiting whatever changed since (a new version, a rollback, a policy):
    // only an operator's answer or the drift going away ends the wait.
    if (d?.awaitingHuman !== undefined && WAITING_OVERRIDES.has(decision.action) && decision.cause !== 'approved') {
      return {
        ...decision,
        action: 'escalate',
        reason: `escalated under ${d.awaitingHuman} and not answered yet: it waits for an operator to approve or reject it, whatever ${rt.baseline.name} v${rt.baseline.version} says`,
      };
    }
    return decision;
  }

  /** The drift is left for a human (escalated or suppressed): it waits for an answer across version changes. */
  awaitHuman(rt: Runtime, under = `${rt.baseline.name} v${rt.baseline.version}`): void {
    driftState(rt).awaitingHuman ??= under;
  }

  /** The drift stands deferred from now on (or since earlier, when it already did). */
  deferred(rt: Runtime): void {
    const d = driftState(rt);
    d.deferredSince ??= this.clock.now();
  }

  /** A repair held: the flap window and the rule's hourly count take it, failures and approval are cleared. */
  repaired(rt: Runtime, decision: PolicyDecision): void {
    const now = this.clock.now();
    const d = driftState(rt);
    d.repairs.push(now);
    d.failures = 0;
    d.approved = false;
    d.recordedDrift = undefined;
    d.deferredSince = undefined;
    d.awaitingHuman = undefined;
    d.actor = undefined;
    if (decision.countsAgainst !== undefined) this.ledger.record(decision.countsAgainst, now);
  }

  /**
   * The resource is compliant: an approval answers one drift, so the next one is judged by the policy again. A drift
   * that was waiting for a human is gone (put back by hand, or the baseline now asks for what is there): its escalation
   * is closed with the reason.
   */
  compliant(rt: Runtime, trigger: Trigger): void {
    const d = rt.drift;
    if (!d) return;
    d.failures = 0;
    d.recordedDrift = undefined;
    d.approved = false;
    d.deferredSince = undefined;
    if (d.awaitingHuman !== undefined) {
      const detail = `the drift escalated under ${d.awaitingHuman} is gone: compliant under ${rt.baseline.name} v${rt.baseline.version}; nothing left to decide`;
      d.awaitingHuman = undefined;
      this.recorder.resource(rt, 'escalation_resolved', trigger, { detail });
      this.log.warn({ resource: rt.id, baseline: `${rt.baseline.name}@${rt.baseline.version}`, reason: detail }, 'escalation resolved');
    }
    d.actor = undefined;
  }

  /**
   * A repair failed: counts it, and says whether to escalate now (the fifth failure in a row, or the first that will
   * not go away by retrying) and when to retry. Retried whatever the cause: a new baseline may fix a non-retryable one.
   */
  failed(rt: Runtime, e: HsError): { escalate: boolean; retryInMs: number } {
    const d = driftState(rt);
    d.failures++;
    d.approved = false;
    const retryInMs = retryDelayMs(d.failures);
    d.retryAt = this.clock.now() + retryInMs;
    return { escalate: d.failures === ESCALATE_AFTER_FAILURES || (!e.retryable && d.failures === 1), retryInMs };
  }

  /** The next reconcile repairs at once instead of waiting out the backoff of earlier failures. */
  liftBackoff(rt: Runtime): void {
    if (rt.drift) rt.drift.retryAt = 0;
  }

  /** An operator approved a repair: lift suppression and backoff, repair once. */
  approve(rt: Runtime): void {
    const d = driftState(rt);
    d.approved = true;
    d.suppressed = false;
    d.repairs = [];
    d.retryAt = 0;
    this.exceptions.delete(rt.id);
    this.persist(() => this.store?.deleteException(rt.id), rt.id);
  }

  /** An operator accepted the current drift until `expiresAt`. */
  accept(rt: Runtime, fp: string, reason: string, expiresAt: number): void {
    const accepted: AcceptedDrift = { resource: rt.id, fingerprint: fp, reason, expiresAt };
    this.exceptions.set(rt.id, accepted);
    if (rt.drift) {
      rt.drift.suppressed = false;
      // Answered: once the accepted drift expires or changes, the policy decides it again.
      rt.drift.awaitingHuman = undefined;
    }
    this.persist(() => this.store?.putException(accepted), rt.id);
  }

  private excepted(rt: Runtime, fp: string, now: number, trigger: Trigger): boolean {
    const e = this.exceptions.get(rt.id);
    if (!e) return false;
    if (now >= e.expiresAt) {
      this.exceptions.delete(rt.id);
      this.persist(() => this.store?.deleteException(rt.id), rt.id);
      this.recorder.resource(rt, 'exception_expired', trigger, { detail: `accepted drift expired: ${e.reason}` });
      return false;
    }
    return e.fingerprint === fp;
  }

  /** The in-memory answer holds for this run whatever the store says; a failed write is logged, never thrown. */
  private persist(write: () => void, resource: string): void {
    try {
      write();
    } catch (err) {
      this.log.error({ resource, err: errorMessage(err) }, 'operator decision not saved; it holds until the agent restarts');
    }
  }
}
