// The pure policy decision: given a drift and what the engine knows about the resource, what to do. No I/O, no clock reads.
import { RISKS, type Policy, type Risk } from '../../lib/baseline/types.js';

export type Decision =
  | { action: 'repair'; reason: 'enforce' | 'approved' }
  | { action: 'report'; reason: 'monitor' | 'paused' }
  | { action: 'escalate'; reason: 'risk' }
  | { action: 'suppress'; reason: 'flapping' }
  | { action: 'hold'; reason: 'suppressed' | 'excepted' | 'backoff' };

export interface DecisionInput {
  policy: Policy;
  /** Enforcement paused agent-wide (expired signed baselines): detect and report, change nothing. */
  paused: boolean;
  /** An operator approved one repair of this resource. */
  approved: boolean;
  /** The resource was suppressed for flapping and nobody has approved a repair since. */
  suppressed: boolean;
  /** An operator accepted exactly this drift until a time not yet reached. */
  excepted: boolean;
  /** Repairs of this resource within its flap window. */
  recentRepairs: number;
  /** A failed repair is waiting for its backoff to pass. */
  backingOff: boolean;
}

export function riskRank(r: Risk): number {
  return RISKS.indexOf(r);
}

export function decide(i: DecisionInput): Decision {
  if (i.excepted) return { action: 'hold', reason: 'excepted' };
  if (i.policy.mode === 'monitor') return { action: 'report', reason: 'monitor' };
  if (i.paused) return { action: 'report', reason: 'paused' };
  // An approval is the human answer to an escalation: it outranks risk, flap and backoff, once.
  if (i.approved) return { action: 'repair', reason: 'approved' };
  if (i.suppressed) return { action: 'hold', reason: 'suppressed' };
  if (riskRank(i.policy.risk) >= riskRank(i.policy.escalateAt)) return { action: 'escalate', reason: 'risk' };
  if (i.recentRepairs >= i.policy.flap.maxRepairs) return { action: 'suppress', reason: 'flapping' };
  if (i.backingOff) return { action: 'hold', reason: 'backoff' };
  return { action: 'repair', reason: 'enforce' };
}

/** Delay before retry number `failures` (1-based) of a failed repair: exponential from 1 s, capped at 5 min, with jitter. */
export function retryDelayMs(failures: number, random: () => number = Math.random): number {
  const base = Math.min(300_000, 1000 * 2 ** Math.max(0, failures - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}

/** Consecutive failures after which a failing repair is escalated to a human (it keeps being retried). */
export const ESCALATE_AFTER_FAILURES = 5;
