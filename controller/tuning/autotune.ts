// The bounds of automatic tuning: what a proposal must show before the controller applies it by itself. Pure, so the
// verdict shown with every proposal is the one autotuning acts on.
import type { Confidence } from '../../lib/tuning/confidence.js';
import type { ProposalKind } from '../store/tuning.js';
import type { BacktestCounts } from './replay.js';

export interface Verdict {
  eligible: boolean;
  /** Why not, in words; empty when eligible. */
  reasons: string[];
}

/** What each kind may change: escalations become repairs or grace periods; an exception stops escalating and records. */
const ALLOWED: Partial<Record<ProposalKind, ReadonlySet<string>>> = {
  'auto-repair': new Set(['escalate->repair']),
  defer: new Set(['escalate->defer', 'escalate->repair']),
  exception: new Set(['escalate->monitor']),
};

/** How many times operators must have granted an exception before autotuning adds it. */
export const EXCEPTION_GRANTS = 2;

export interface VerdictInput {
  kind: ProposalKind;
  evidence: Record<string, unknown>;
  confidence: Confidence;
  backtest: Pick<BacktestCounts, 'overriddenRejections' | 'criticalAutoRepaired' | 'transitions' | 'affected' | 'change'> | null;
}

export function autotuneVerdict(p: VerdictInput, minConfidence: number): Verdict {
  const reasons: string[] = [];
  const allowed = ALLOWED[p.kind];
  if (!allowed) reasons.push(`a ${p.kind} proposal is never applied automatically`);
  const rejections = Number(p.evidence.rejections ?? 0);
  if (p.kind === 'exception' && rejections < EXCEPTION_GRANTS) reasons.push(`operators granted this exception ${rejections} time(s); autotuning adds one granted at least ${EXCEPTION_GRANTS} times`);
  if (p.kind !== 'exception' && (p.evidence.rejectedEver === true || rejections > 0)) reasons.push('an operator once rejected drift of this resource');
  if (p.kind !== 'exception' && p.evidence.risk === 'critical') reasons.push('the resource is critical-risk');
  // What the change itself does: against the policies in force when the backtest has that, else against what hosts did.
  const b = p.backtest ? (p.backtest.change ?? p.backtest) : null;
  if (!b) reasons.push('it has no backtest');
  else {
    if (b.overriddenRejections > 0) reasons.push(`its backtest overrides ${b.overriddenRejections} operator rejection(s)`);
    if (b.criticalAutoRepaired > 0) reasons.push(`its backtest repairs ${b.criticalAutoRepaired} critical-risk drift(s) without an operator`);
    if (b.affected === 0) reasons.push('its backtest changes no decision');
    if (allowed) {
      for (const [t, n] of Object.entries(b.transitions)) if (n > 0 && !allowed.has(t)) reasons.push(`its backtest also changes ${n} decision(s) ${t.replace('->', ' to ')}`);
    }
  }
  if (p.confidence.low < minConfidence) reasons.push(`its confidence interval starts at ${p.confidence.low.toFixed(3)}, below ${minConfidence}`);
  return { eligible: reasons.length === 0, reasons };
}
