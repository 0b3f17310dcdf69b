// A resource's recent attributed drifts, kept by the engine for the two patterns lib/policy finds in them: a named actor
// that keeps re-creating the drift (a fight, named in the flap escalation) and drift that returns on a schedule (a
// prediction). Loaded from the audit log on a resource's first drift of a run, then kept in memory, bounded.
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { Actor } from '../../lib/policy/actor.js';
import { findFight, predictDrift, PREDICTION_RULES, type DriftEvent, type Fight, type Prediction } from '../../lib/policy/patterns.js';
import { DRIFT_HISTORY, driftState, type Runtime } from './runtime.js';

/** Where earlier drifts of a resource are read from (the agent store); absent for one-shot commands. */
export interface DriftHistorySource {
  driftHistory(resource: string, limit: number): DriftEvent[];
}

export class DriftHistory {
  constructor(
    private readonly source: DriftHistorySource | undefined,
    private readonly log: Logger,
  ) {}

  /** Adds a drift seen now to the resource's history. */
  add(rt: Runtime, time: number, changes: readonly string[], actor: Actor | undefined): DriftEvent[] {
    const d = driftState(rt);
    const h = (d.history ??= this.load(rt.id));
    h.push({ time, changes, ...(actor ? { actor } : {}) });
    if (h.length > DRIFT_HISTORY) h.splice(0, h.length - DRIFT_HISTORY);
    return h;
  }

  /** The actor fighting the agent over this resource within its flap window, if one is named. */
  fight(rt: Runtime, now: number): Fight | undefined {
    const h = rt.drift?.history;
    return h ? findFight(h, { now, windowMs: rt.decl.policy.flap.windowMs }) : undefined;
  }

  /** A schedule the drift follows that has not been recorded yet (once per change and period it is expected in). */
  newPrediction(rt: Runtime, now: number): Prediction | undefined {
    const d = rt.drift;
    if (!d?.history) return undefined;
    const p = predictDrift(d.history, { now })[0];
    if (!p) return undefined;
    const key = `${p.change}@${p.period}@${Math.floor(p.next / PREDICTION_RULES[p.period].ms)}`;
    if (d.predicted === key) return undefined;
    d.predicted = key;
    return p;
  }

  private load(resource: string): DriftEvent[] {
    if (!this.source) return [];
    try {
      return this.source.driftHistory(resource, DRIFT_HISTORY);
    } catch (err) {
      this.log.warn({ resource, err: errorMessage(err) }, 'drift history not read; patterns start from this run');
      return [];
    }
  }
}
