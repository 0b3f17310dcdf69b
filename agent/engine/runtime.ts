// What the engine keeps per managed resource, the outcomes of a reconcile, and the fingerprints that recognise a drift or a
// declaration again. Kept small: a host with 10,000 resources holds 10,000 of these, almost all compliant.
import { createHash } from 'node:crypto';
import type { ResourceDecl } from '../../lib/baseline/types.js';
import type { Actor } from '../../lib/policy/actor.js';
import type { DriftEvent } from '../../lib/policy/patterns.js';
import type { Change, Disposer, Resource } from '../resources/resource.js';

/** The baseline version a resource came from; one object per activated baseline, shared by its resources. */
export interface BaselineRef {
  readonly name: string;
  readonly version: number;
}

/** A declared resource and the baseline version it came from. */
export interface ManagedResource {
  decl: ResourceDecl;
  baseline: BaselineRef;
}

/** The fixed set of outcomes of one reconcile; when several resources are summed up, the worst wins. */
export type Outcome = 'kept' | 'repaired' | 'drifted' | 'excepted' | 'escalated' | 'suppressed' | 'failed';

export interface ResourceResult {
  id: string;
  outcome: Outcome;
  changes: Change[];
  observed?: Record<string, unknown>;
  desired?: Record<string, unknown>;
  error?: { code: string; message: string };
}

/** A drift's particulars as records carry them. */
export interface DriftRecord {
  observed: Record<string, unknown> | null;
  desired: Record<string, unknown> | null;
  diff: string | null;
  detail: string;
}

/**
 * What the engine remembers about a resource that has drifted: repair history for the flap window, an operator's
 * approval, failures and their backoff, and the drift last recorded without a repair. Created on the first drift, so a
 * resource that never drifts costs nothing here.
 */
export interface DriftState {
  repairs: number[];
  suppressed: boolean;
  approved: boolean;
  failures: number;
  retryAt: number;
  cancelRetry: (() => void) | undefined;
  /** Fingerprint of the drift last recorded without a repair (report, escalate, fail), so a standing drift is recorded once. */
  recordedDrift: string | undefined;
  /** Since when the current drift has stood deferred (a policy's grace period), for the decision to count from. */
  deferredSince: number | undefined;
  /**
   * The escalation this drift waits on (`web v2`, the version it was escalated under), until an operator answers or the
   * drift is gone: no new version, rollback or policy repairs it meanwhile.
   */
  awaitingHuman: string | undefined;
  /** Who made the drift last attributed, kept while the same drift stands so it is not looked up again. */
  actor: Actor | undefined;
  /** The latest attributed drifts (at most DRIFT_HISTORY), for fights and predictions; `undefined` until first loaded. */
  history: DriftEvent[] | undefined;
  /** The last prediction recorded (`change@next`), so each one is recorded once. */
  predicted: string | undefined;
}

/** Drifts of one resource kept for fights and predictions: a day's habit over weeks, or a flap window's fight. */
export const DRIFT_HISTORY = 64;

export interface Runtime {
  readonly id: string;
  decl: ResourceDecl;
  baseline: BaselineRef;
  resource: Resource;
  /** Identity of the declaration (its fields are released once the resource exists: this stands for them). */
  key: string;
  disposeWatch: Disposer | undefined;
  /** The outcome of the last reconcile; `result` holds its particulars unless it was `kept`. */
  outcome: Outcome | undefined;
  result: ResourceResult | undefined;
  drift: DriftState | undefined;
  /** A reconcile that outlived its deadline and has not returned yet: nothing else runs for this resource until it does. */
  stuck: { since: number; recorded: boolean } | undefined;
  retired: boolean;
  /** When the resource was last seen as it should be: who changed it is looked for after this. */
  keptAt: number | undefined;
}

export function newRuntime(m: ManagedResource, resource: Resource, key: string): Runtime {
  return {
    id: m.decl.id,
    decl: m.decl,
    baseline: m.baseline,
    resource,
    key,
    disposeWatch: undefined,
    outcome: undefined,
    result: undefined,
    drift: undefined,
    stuck: undefined,
    retired: false,
    keptAt: undefined,
  };
}

export function driftState(rt: Runtime): DriftState {
  rt.drift ??= {
    repairs: [],
    suppressed: false,
    approved: false,
    failures: 0,
    retryAt: 0,
    cancelRetry: undefined,
    recordedDrift: undefined,
    deferredSince: undefined,
    awaitingHuman: undefined,
    actor: undefined,
    history: undefined,
    predicted: undefined,
  };
  return rt.drift;
}

export const NO_CHANGES: Change[] = [];

/** The result of the last reconcile, made on demand for a compliant resource. */
export function resultOf(rt: Runtime): ResourceResult | undefined {
  if (rt.outcome === undefined) return undefined;
  return rt.result ?? { id: rt.id, outcome: rt.outcome, changes: NO_CHANGES };
}

const WORST: Outcome[] = ['kept', 'repaired', 'excepted', 'drifted', 'escalated', 'suppressed', 'failed'];

export function worstOutcome(outcomes: Iterable<Outcome>): Outcome {
  let worst: Outcome = 'kept';
  for (const o of outcomes) if (WORST.indexOf(o) > WORST.indexOf(worst)) worst = o;
  return worst;
}

export function describeChanges(changes: Change[]): string {
  return changes.map((c) => `${c.field}: ${fmt(c.observed)} -> ${fmt(c.desired)}`).join('; ');
}

function fmt(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** Identifies one drift (what differs and how) so the same standing drift is recognised across reconciles. */
export function fingerprint(changes: Change[]): string {
  const h = createHash('sha256');
  for (const c of changes) h.update(`${c.field}\0${fmt(c.observed)}\0${fmt(c.desired)}\n`);
  return h.digest('hex').slice(0, 32);
}

/** Identifies a declaration, so an unchanged resource keeps its runtime across activations. */
export function declKey(d: ResourceDecl): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ id: d.id, policy: d.policy }));
  for (const k of Object.keys(d.fields).sort()) {
    const v = d.fields[k];
    h.update(`\0${k}\0`);
    h.update(Buffer.isBuffer(v) ? v : JSON.stringify(v) ?? '');
  }
  return h.digest('hex');
}
