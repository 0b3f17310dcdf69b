// The pure decision on one drift: the ordered policy rules, then the baseline's own policy as the last rules, under the
// operator's answers and the engine's guards. No I/O and no clock: time is the drift's, counters are given. The agent's
// engine calls it on every drift; a backtest replays recorded drifts through it.
import { RISKS, type Policy, type Risk } from '../baseline/types.js';
import { UNKNOWN_ACTOR, type Actor } from './actor.js';
import type { Glob } from './glob.js';
import { actionText, changeKindOf, type PolicyDocument, type PolicyRule } from './types.js';
import type { MaintenanceWindow } from './windows.js';

/** A policy version active on a host. */
export interface ActivePolicy {
  document: PolicyDocument;
  version: number;
}

/** What decided: a rule of a policy document (its index in spec.rules), or the baseline's own policy. */
export type RuleRef = { document: string; version: number; index: number } | { baseline: string };

/** One drift, as an audit record keeps it: enough to decide it again later. */
export interface Drift {
  /** `file:/etc/motd` */
  resource: string;
  /** The resource type: file, directory, sysctl, service. */
  kind: string;
  baseline: string;
  /** The fields the resource's diff reports (`content`, `mode`, `active`, ...). */
  changes: readonly string[];
  actor?: Actor;
  /** When it was seen (ms since the epoch): windows and grace periods are judged at this time. */
  time: number;
}

/** What the engine knows about the resource beyond the drift itself; a replay computes the same from the record stream. */
export interface ResourceState {
  /** The resource's effective baseline policy: mode, risk, escalateAt, flap. */
  policy: Policy;
  /** Enforcement paused agent-wide (expired signed baselines): detect and record, change nothing. */
  paused: boolean;
  /** An operator approved one repair of this resource. */
  approved: boolean;
  /** Suppressed for flapping and nobody has approved a repair since. */
  suppressed: boolean;
  /** An operator accepted exactly this drift until a time not yet reached. */
  excepted: boolean;
  /** A failed repair is waiting for its backoff to pass. */
  backingOff: boolean;
  /** Repairs of this resource within its flap window. */
  recentRepairs: number;
  /** The resource has stood deferred (pending under a grace period) since this time. */
  deferredSince?: number;
  /** Repairs counted against a rule (by ruleKey) on this host within the hour before the drift. */
  ruleRepairs?: (key: string) => number;
}

export type PolicyAction = 'repair' | 'escalate' | 'monitor' | 'ignore' | 'defer' | 'suppress' | 'hold';

/**
 * Why the action is what it is: `rule` (a document rule's own action), `enforce` and `risk` (the baseline's policy),
 * `monitor-mode` (the baseline's mode: monitor caps a rule that would change something), an operator's answer
 * (`approved`, `excepted`) or state (`paused`), or a guard on repairs (`limit`, `flapping`, `backoff`, `suppressed`);
 * `grace-over` is a deferred drift whose grace period has passed.
 */
export type DecisionCause =
  | 'rule'
  | 'enforce'
  | 'risk'
  | 'monitor-mode'
  | 'paused'
  | 'approved'
  | 'excepted'
  | 'suppressed'
  | 'limit'
  | 'flapping'
  | 'backoff'
  | 'grace-over';

export interface PolicyDecision {
  action: PolicyAction;
  cause: DecisionCause;
  /** The rule that matched the drift (the baseline's policy when no document rule did), whatever overrode its action. */
  rule: RuleRef;
  reason: string;
  /** For `defer`: when the grace period ends and the drift is decided again. */
  until?: number;
  /** The earliest time at which the same drift may be decided differently (a window opening or closing, a grace period ending). */
  reconsiderAt?: number;
  /** For `repair`: the rule whose maxRepairsPerHour this repair counts against (a ruleKey). */
  countsAgainst?: string;
}

/** The active policies in the order they are consulted: highest priority first, equal priorities by name. */
export class PolicySet {
  readonly policies: readonly ActivePolicy[];

  constructor(active: Iterable<ActivePolicy> = []) {
    this.policies = [...active].sort(
      (a, b) => b.document.priority - a.document.priority || (a.document.name < b.document.name ? -1 : a.document.name > b.document.name ? 1 : 0),
    );
  }

  /** The first rule, in order, that matches the drift. */
  firstMatch(drift: Drift, risk: Risk): { policy: ActivePolicy; rule: PolicyRule; windows: MaintenanceWindow[] } | undefined {
    const consulted: MaintenanceWindow[] = [];
    for (const policy of this.policies) {
      for (const rule of policy.document.rules) {
        const w = rule.match.window;
        if (w) consulted.push(...(w.kind === 'in' ? w.names.flatMap((n) => windowOf(policy.document, n)) : [...policy.document.windows.values()]));
        if (ruleMatches(rule, policy.document, drift, risk)) return { policy, rule, windows: consulted };
      }
    }
    return undefined;
  }

  /** The windows of every rule, for a caller that needs every boundary (all consulted when no rule matched). */
  allWindows(): MaintenanceWindow[] {
    return this.policies.flatMap((p) => [...p.document.windows.values()]);
  }
}

/** Identifies a rule for counters: `fleet-governance@3#2`. A new version of a document starts its counters afresh. */
export function ruleKey(ref: RuleRef): string {
  return 'baseline' in ref ? `baseline:${ref.baseline}` : `${ref.document}@${ref.version}#${ref.index}`;
}

/** `fleet-governance v3 spec.rules[2]`, `baseline web-hardening` */
export function ruleLabel(ref: RuleRef): string {
  return 'baseline' in ref ? `baseline ${ref.baseline}` : `${ref.document} v${ref.version} spec.rules[${ref.index}]`;
}

function windowOf(doc: PolicyDocument, name: string): MaintenanceWindow[] {
  const w = doc.windows.get(name);
  return w ? [w] : [];
}

function anyGlob(globs: readonly Glob[] | undefined, value: string | undefined): boolean {
  if (value === undefined || globs === undefined) return false;
  for (const g of globs) if (g.matches(value)) return true;
  return false;
}

/** A user pattern matches the name or the numeric id: `root` and `"0"` both name uid 0. */
function namedOrNumbered(globs: readonly Glob[], name: string | undefined, id: number | undefined): boolean {
  return anyGlob(globs, name) || anyGlob(globs, id === undefined ? undefined : String(id));
}

export function ruleMatches(rule: PolicyRule, doc: PolicyDocument, drift: Drift, risk: Risk): boolean {
  const m = rule.match;
  if (m.kind && !m.kind.has(drift.kind)) return false;
  if (m.risk && !m.risk.has(risk)) return false;
  if (m.change) {
    const wanted = m.change;
    if (!drift.changes.some((c) => wanted.has(changeKindOf(c)))) return false;
  }
  if (m.resource && !anyGlob(m.resource, drift.resource)) return false;
  if (m.baseline && !anyGlob(m.baseline, drift.baseline)) return false;
  if (m.actor) {
    const a = drift.actor ?? UNKNOWN_ACTOR;
    if (m.actor.source && !m.actor.source.has(a.source)) return false;
    if (m.actor.exe && !anyGlob(m.actor.exe, a.exe)) return false;
    if (m.actor.user && !namedOrNumbered(m.actor.user, a.user, a.uid)) return false;
    if (m.actor.loginUser && !namedOrNumbered(m.actor.loginUser, a.loginUser, a.loginUid)) return false;
    if (m.actor.unit && !anyGlob(m.actor.unit, a.unit)) return false;
  }
  if (m.window) {
    const w = m.window;
    const windows = w.kind === 'in' ? w.names.flatMap((n) => windowOf(doc, n)) : [...doc.windows.values()];
    const inside = windows.some((x) => x.contains(drift.time));
    if (w.kind === 'none' ? inside : !inside) return false;
  }
  return true;
}

function rank(r: Risk): number {
  return RISKS.indexOf(r);
}

function iso(t: number): string {
  return new Date(t).toISOString();
}

/** Decides one drift. Pure: the same inputs give the same decision. */
export function decide(set: PolicySet, drift: Drift, state: ResourceState): PolicyDecision {
  const p = state.policy;
  const found = set.firstMatch(drift, p.risk);
  const rule = found?.rule;
  const ref: RuleRef = found && rule ? { document: found.policy.document.name, version: found.policy.version, index: rule.index } : { baseline: drift.baseline };
  const label = ruleLabel(ref);
  const what = rule ? `${label}${rule.description ? ` (${rule.description})` : ''} matched ${rule.matchText}` : `no policy rule matched; ${label}`;
  const reconsiderAt = found ? boundary(found.windows, drift.time) : boundary(set.allWindows(), drift.time);
  const at = (d: Omit<PolicyDecision, 'rule'>): PolicyDecision => ({
    ...d,
    rule: ref,
    ...(d.reconsiderAt === undefined && reconsiderAt !== undefined ? { reconsiderAt } : {}),
  });

  // The action the matched rule, or the baseline as the last rule, asks for.
  const base = rule ? rule.action.type : rank(p.risk) >= rank(p.escalateAt) ? 'escalate' : 'repair';

  if (state.excepted) return at({ action: 'hold', cause: 'excepted', reason: `an operator accepted this drift until its exception expires (${what})` });
  if (p.mode === 'monitor') {
    if (!rule || base === 'repair' || base === 'defer') {
      const said = rule ? `; ${what}: ${actionText(rule.action)}` : '';
      return at({ action: 'monitor', cause: 'monitor-mode', reason: `baseline ${drift.baseline} puts this resource in monitor mode: recorded, never changed${said}` });
    }
    // Escalating, recording or ignoring changes nothing: a monitor-mode resource keeps what the rule says.
    return at({ action: base as 'escalate' | 'monitor' | 'ignore', cause: 'rule', reason: `${what}: ${base}` });
  }
  if (state.paused) {
    if (base === 'ignore') return at({ action: 'ignore', cause: 'rule', reason: `${what}: ignore` });
    return at({ action: 'monitor', cause: 'paused', reason: `enforcement is paused on this host: recorded, not changed (${what})` });
  }
  // An approval is the human answer to an escalation or a deferral: it outranks rules, windows, limits, flap and backoff, once.
  if (state.approved) return at({ action: 'repair', cause: 'approved', reason: `an operator approved one repair (${what})` });
  if (state.suppressed) return at({ action: 'hold', cause: 'suppressed', reason: 'repairs are stopped for flapping until an operator approves one' });

  const repairPath = (cause: 'rule' | 'enforce' | 'grace-over', why: string): PolicyDecision => {
    const key = rule?.limits ? ruleKey(ref) : undefined;
    if (rule?.limits && key !== undefined) {
      const done = state.ruleRepairs?.(key) ?? 0;
      const max = rule.limits.maxRepairsPerHour;
      if (done >= max) {
        return at({
          action: 'escalate',
          cause: 'limit',
          reason: `${label} allows ${max} repair${max === 1 ? '' : 's'} per hour on this host and ${done} were made in the last hour: escalated instead`,
        });
      }
    }
    if (state.recentRepairs >= p.flap.maxRepairs) {
      return at({
        action: 'suppress',
        cause: 'flapping',
        reason: `${state.recentRepairs} repairs within ${Math.round(p.flap.windowMs / 1000)} s (maxRepairs ${p.flap.maxRepairs}): repairs stopped`,
      });
    }
    if (state.backingOff) return at({ action: 'hold', cause: 'backoff', reason: `a failed repair waits for its retry (${why})` });
    return at({ action: 'repair', cause, reason: why, ...(key !== undefined ? { countsAgainst: key } : {}) });
  };

  if (!rule) {
    if (base === 'escalate') return at({ action: 'escalate', cause: 'risk', reason: `${what}: risk ${p.risk} is at or above escalateAt ${p.escalateAt}: left for a human` });
    return repairPath('enforce', `${what}: risk ${p.risk} is below escalateAt ${p.escalateAt}: repair`);
  }
  const action = rule.action;
  switch (action.type) {
    case 'ignore':
      return at({ action: 'ignore', cause: 'rule', reason: `${what}: ignore` });
    case 'monitor':
      return at({ action: 'monitor', cause: 'rule', reason: `${what}: monitor` });
    case 'escalate':
      return at({ action: 'escalate', cause: 'rule', reason: `${what}: escalate` });
    case 'repair':
      return repairPath('rule', `${what}: repair`);
    case 'defer': {
      if ('endOfWindow' in action) {
        const until = windowEnd(found.windows, rule, found.policy.document, drift.time);
        return at({ action: 'defer', cause: 'rule', until, reconsiderAt: until, reason: `${what}: deferred to the end of the window, ${iso(until)}` });
      }
      const since = state.deferredSince ?? drift.time;
      const until = since + action.ms;
      if (drift.time < until) {
        return at({ action: 'defer', cause: 'rule', until, reconsiderAt: until, reason: `${what}: the change stands for ${action.text}, until ${iso(until)}, unless an operator decides` });
      }
      return repairPath('grace-over', `${what}: its grace period of ${action.text} (since ${iso(since)}) is over: repair`);
    }
  }
}

/** The latest end among the rule's windows that hold `t` (the rule matched, so at least one does). */
function windowEnd(consulted: MaintenanceWindow[], rule: PolicyRule, doc: PolicyDocument, t: number): number {
  const w = rule.match.window;
  const own = w?.kind === 'in' ? w.names.flatMap((n) => windowOf(doc, n)) : [...doc.windows.values()];
  let end = t;
  for (const x of own.length > 0 ? own : consulted) end = Math.max(end, x.currentEnd(t) ?? t);
  return end;
}

/** The next time any of these windows opens or closes after `t`. */
function boundary(windows: MaintenanceWindow[], t: number): number | undefined {
  let best: number | undefined;
  for (const w of new Set(windows)) {
    const b = w.currentEnd(t) ?? w.nextStart(t);
    if (b !== undefined && (best === undefined || b < best)) best = b;
  }
  return best;
}
