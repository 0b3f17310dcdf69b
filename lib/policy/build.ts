// The rules a schema cannot express — durations, cron expressions, time zones, windows referenced and defined, resource
// patterns, rules that can never match, reserved actions — then the validated document becomes a PolicyDocument.
import { parseDuration } from '../clock.js';
import { RISKS, type Risk } from '../baseline/types.js';
import { RESOURCE_TYPES } from '../baseline/kinds.js';
import { suggestion } from '../baseline/suggest.js';
import type { IssueList } from '../baseline/issues.js';
import type { Path } from '../baseline/yaml-doc.js';
import type { ActorSource } from './actor.js';
import { compileGlob, globProblem, type Glob } from './glob.js';
import { shown } from './schema.js';
import { cronProblem, MaintenanceWindow, MAX_WINDOW_MS, timezoneProblem } from './windows.js';
import type { ActorMatch, PolicyDocument, PolicyRule, RuleAction, RuleMatch, WindowMatch } from './types.js';

/** Longest grace period a `defer` may give: past it, a drift is a decision to take, not a hotfix to let stand. */
export const MAX_DEFER_MS = 30 * 86_400_000;
const MIN_WINDOW_MS = 60_000;
/** Window names with a meaning of their own in `match.window`. */
const RESERVED_WINDOWS = new Set(['any', 'none']);

type Rec = Record<string, unknown>;

function isRecord(v: unknown): v is Rec {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function own(r: Rec, key: string): unknown {
  return Object.hasOwn(r, key) ? r[key] : undefined;
}

/** A value written as one item or a list of them, as a list; undefined when absent or not strings. */
function list(v: unknown): string[] | undefined {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  return undefined;
}

/** Checks what the schema cannot and, when nothing is wrong, returns the document's windows and rules. */
export function checkAndBuild(
  value: unknown,
  issues: IssueList,
  origin: PolicyDocument['origin'],
): PolicyDocument | undefined {
  const root = isRecord(value) ? value : {};
  const spec = isRecord(own(root, 'spec')) ? (own(root, 'spec') as Rec) : {};
  const windows = checkWindows(own(spec, 'maintenanceWindows'), issues);
  const rawRules = Array.isArray(own(spec, 'rules')) ? (own(spec, 'rules') as unknown[]) : [];
  const rules: PolicyRule[] = [];
  let catchAll: number | undefined;
  rawRules.forEach((raw, index) => {
    const path: Path = ['spec', 'rules', index];
    if (!isRecord(raw)) return;
    if (catchAll !== undefined) {
      const at = issues.position(['spec', 'rules', catchAll], 'key');
      issues.add(
        'HS_POLICY_INVALID',
        `this rule can never match: spec.rules[${catchAll}] (line ${at.line}) matches every drift and comes first; move this rule above it or remove it`,
        path,
        'key',
      );
    }
    const rule = checkRule(raw, index, path, windows, issues);
    if (rule && Object.keys(rule.match).length === 0) catchAll ??= index;
    if (rule) rules.push(rule);
  });
  if (issues.items.length > 0) return undefined;
  const metadata = own(root, 'metadata') as Rec;
  const selector = own(spec, 'selector') as { matchLabels: Rec } | undefined;
  const description = own(metadata, 'description');
  const labels = own(metadata, 'labels');
  return {
    apiVersion: 'homeostat/v1',
    kind: 'Policy',
    name: own(metadata, 'name') as string,
    ...(typeof description === 'string' ? { description } : {}),
    ...(isRecord(labels) ? { labels: plainMap(labels) } : {}),
    ...(selector ? { selector: { matchLabels: plainMap(selector.matchLabels) } } : {}),
    priority: typeof own(spec, 'priority') === 'number' ? (own(spec, 'priority') as number) : 0,
    windows: new Map([...windows].flatMap(([name, w]) => (w ? [[name, w] as const] : []))),
    rules,
    origin,
  };
}

/** Labels as data: a key such as `constructor` is a label, never an inherited property. */
function plainMap(r: Rec): Record<string, string> {
  const out = Object.create(null) as Record<string, string>;
  for (const [k, v] of Object.entries(r)) if (typeof v === 'string') out[k] = v;
  return out;
}

/** Windows by name; a name whose window is invalid maps to undefined, so rules naming it are not reported again. */
function checkWindows(value: unknown, issues: IssueList): Map<string, MaintenanceWindow | undefined> {
  const out = new Map<string, MaintenanceWindow | undefined>();
  const firstAt = new Map<string, number>();
  if (!Array.isArray(value)) return out;
  value.forEach((raw, i) => {
    if (!isRecord(raw)) return;
    const path: Path = ['spec', 'maintenanceWindows', i];
    const name = own(raw, 'name');
    const cron = own(raw, 'cron');
    const duration = own(raw, 'duration');
    const tz = own(raw, 'timezone');
    let ok = typeof name === 'string' && typeof cron === 'string' && typeof duration === 'string' && (tz === undefined || typeof tz === 'string');
    if (typeof name === 'string') {
      if (RESERVED_WINDOWS.has(name)) {
        issues.add('HS_POLICY_INVALID', `${shown(name)} has a meaning of its own in match.window; give this window another name`, [...path, 'name'], 'value');
        ok = false;
      }
      const first = firstAt.get(name);
      if (first !== undefined) {
        const at = issues.position(['spec', 'maintenanceWindows', first, 'name'], 'value');
        issues.add('HS_POLICY_DUPLICATE', `window name ${shown(name)} is already used by spec.maintenanceWindows[${first}] (line ${at.line}); each window needs its own name`, [...path, 'name'], 'value');
        ok = false;
      } else {
        firstAt.set(name, i);
      }
    }
    if (typeof cron === 'string') {
      const problem = cronProblem(cron);
      if (problem) {
        issues.add('HS_POLICY_INVALID', problem, [...path, 'cron'], 'value');
        ok = false;
      }
    }
    let ms: number | undefined;
    if (typeof duration === 'string') {
      ms = parseDuration(duration);
      if (ms !== undefined && (ms < MIN_WINDOW_MS || ms > MAX_WINDOW_MS)) {
        issues.add('HS_POLICY_INVALID', `a window lasts from 1m to 7d; got ${shown(duration)}`, [...path, 'duration'], 'value');
        ok = false;
      }
    }
    if (typeof tz === 'string') {
      const problem = timezoneProblem(tz);
      if (problem) {
        issues.add('HS_POLICY_INVALID', problem, [...path, 'timezone'], 'value');
        ok = false;
      }
    }
    if (typeof name !== 'string' || firstAt.get(name) !== i) return;
    out.set(
      name,
      ok && ms !== undefined
        ? new MaintenanceWindow({ name, cron: cron as string, durationMs: ms, timezone: typeof tz === 'string' ? tz : 'UTC' })
        : undefined,
    );
  });
  return out;
}

function checkRule(
  raw: Rec,
  index: number,
  path: Path,
  windows: Map<string, MaintenanceWindow | undefined>,
  issues: IssueList,
): PolicyRule | undefined {
  const before = issues.items.length;
  const rawMatch = own(raw, 'match');
  const match = isRecord(rawMatch) ? checkMatch(rawMatch, [...path, 'match'], windows, issues) : rawMatch === undefined ? {} : undefined;
  const action = checkAction(own(raw, 'action'), [...path, 'action'], match, issues);
  const limits = own(raw, 'limits');
  const max = isRecord(limits) ? own(limits, 'maxRepairsPerHour') : undefined;
  if (isRecord(limits) && action && action.type !== 'repair' && action.type !== 'defer') {
    issues.add('HS_POLICY_INVALID', `limits cap repairs, and this rule's action ${action.type} never repairs; remove limits or change the action`, [...path, 'limits'], 'key');
  }
  if (!match || !action || issues.items.length > before) return undefined;
  const description = own(raw, 'description');
  const at = issues.position(path, 'key');
  return {
    index,
    ...(typeof description === 'string' ? { description } : {}),
    match,
    matchText: isRecord(rawMatch) ? flow(rawMatch) : '{}',
    action,
    ...(typeof max === 'number' ? { limits: { maxRepairsPerHour: max } } : {}),
    location: { file: issues.file, line: at.line, column: at.column, field: `spec.rules[${index}]` },
  };
}

function checkMatch(raw: Rec, path: Path, windows: Map<string, MaintenanceWindow | undefined>, issues: IssueList): RuleMatch | undefined {
  const out: {
    resource?: Glob[];
    kind?: Set<string>;
    baseline?: Glob[];
    change?: Set<string>;
    risk?: Set<Risk>;
    window?: WindowMatch;
    actor?: ActorMatch;
  } = {};
  const resource = globs(own(raw, 'resource'), [...path, 'resource'], issues, resourcePatternProblem);
  if (resource) out.resource = resource;
  const kind = list(own(raw, 'kind'));
  if (kind) out.kind = new Set(kind);
  const baseline = globs(own(raw, 'baseline'), [...path, 'baseline'], issues);
  if (baseline) out.baseline = baseline;
  const change = list(own(raw, 'change'));
  if (change) out.change = new Set(change);
  const risk = list(own(raw, 'risk')) as Risk[] | undefined;
  const atLeast = own(raw, 'riskAtLeast');
  if (risk || typeof atLeast === 'string') {
    const floor = typeof atLeast === 'string' ? RISKS.indexOf(atLeast as Risk) : 0;
    const set = new Set((risk ?? RISKS).filter((r) => RISKS.indexOf(r) >= floor));
    if (set.size === 0) {
      issues.add('HS_POLICY_INVALID', `risk ${(risk ?? []).join(', ')} and riskAtLeast ${String(atLeast)} exclude each other: this rule can never match`, [...path, 'riskAtLeast'], 'value');
    }
    out.risk = set;
  }
  const window = own(raw, 'window');
  if (window !== undefined) out.window = checkWindowMatch(window, [...path, 'window'], windows, issues);
  const actor = own(raw, 'actor');
  if (isRecord(actor)) {
    const a: { exe?: Glob[]; user?: Glob[]; loginUser?: Glob[]; unit?: Glob[]; source?: Set<ActorSource> } = {};
    for (const key of ['exe', 'user', 'loginUser', 'unit'] as const) {
      const patterns = globs(own(actor, key), [...path, 'actor', key], issues);
      if (patterns) a[key] = patterns;
    }
    const sources = list(own(actor, 'source'));
    if (sources) a.source = new Set(sources as ActorSource[]);
    out.actor = a;
  }
  return out;
}

function checkWindowMatch(value: unknown, path: Path, windows: Map<string, MaintenanceWindow | undefined>, issues: IssueList): WindowMatch | undefined {
  const names = list(value);
  if (!names) return undefined;
  const special = names.filter((n) => RESERVED_WINDOWS.has(n));
  if (special.length > 0 && names.length > 1) {
    issues.add('HS_POLICY_INVALID', `window: ${special[0]} stands alone; it cannot be listed with other windows`, path, 'value');
    return undefined;
  }
  if (names[0] === 'none') return { kind: 'none' };
  if (names[0] === 'any') {
    if (windows.size === 0) issues.add('HS_POLICY_INVALID', 'window: any can never match: this policy defines no spec.maintenanceWindows', path, 'value');
    return { kind: 'any' };
  }
  names.forEach((name, i) => {
    if (windows.has(name)) return;
    const defined = [...windows.keys()];
    const where = Array.isArray(value) ? [...path, i] : path;
    const known = defined.length > 0 ? `; defined: ${defined.join(', ')}` : '; this policy defines no spec.maintenanceWindows';
    issues.add('HS_POLICY_INVALID', `window ${shown(name)} is not defined in spec.maintenanceWindows${name.length > 80 ? '' : suggestion(name, defined)}${known}`, where, 'value');
  });
  return { kind: 'in', names };
}

function checkAction(value: unknown, path: Path, match: RuleMatch | undefined, issues: IssueList): RuleAction | undefined {
  if (value === 'repair' || value === 'escalate' || value === 'monitor' || value === 'ignore') return { type: value };
  if (!isRecord(value)) return undefined;
  if (own(value, 'ask') !== undefined) {
    issues.add('HS_POLICY_UNSUPPORTED', 'action ask: opa is reserved for a later version and not supported yet; use repair, escalate, monitor, ignore or defer', [...path, 'ask'], 'key');
    return undefined;
  }
  const defer = own(value, 'defer');
  if (typeof defer !== 'string') return undefined;
  if (defer === 'end-of-window') {
    const w = match?.window;
    if (match && (!w || w.kind === 'none')) {
      issues.add('HS_POLICY_INVALID', 'defer: end-of-window needs a window to end: add match: { window: NAME } (or any) to this rule', [...path, 'defer'], 'value');
      return undefined;
    }
    return { type: 'defer', endOfWindow: true, text: 'end-of-window' };
  }
  const ms = parseDuration(defer);
  if (ms === undefined) return undefined; // the schema's pattern reported it
  if (ms <= 0 || ms > MAX_DEFER_MS) {
    issues.add('HS_POLICY_INVALID', `a grace period lasts more than 0 and at most 30d; got ${shown(defer)}`, [...path, 'defer'], 'value');
    return undefined;
  }
  return { type: 'defer', ms, text: defer };
}

/** Compiles the pattern or list of patterns at `path`, reporting each bad one at its own place. */
function globs(raw: unknown, path: Path, issues: IssueList, extra?: (p: string) => string | undefined): Glob[] | undefined {
  const values = list(raw);
  if (!values) return undefined;
  const out: Glob[] = [];
  values.forEach((p, i) => {
    const problem = globProblem(p) ?? extra?.(p);
    if (problem) issues.add('HS_POLICY_INVALID', problem, Array.isArray(raw) ? [...path, i] : path, 'value');
    else out.push(compileGlob(p));
  });
  return out;
}

/** A resource pattern names the type first, as ids do: `file:/etc/ssh/*`, `sysctl:net.ipv4.*`, `*:/etc/**`. */
function resourcePatternProblem(p: string): string | undefined {
  const colon = p.indexOf(':');
  if (colon <= 0) {
    const guess = p.startsWith('/') ? `; did you mean ${shown(`file:${p}`)}?` : '';
    return `a resource pattern starts with the resource type, as ids do: file:/etc/ssh/*, sysctl:net.ipv4.*, service:nginx.service; got ${shown(p)}${guess}`;
  }
  const type = p.slice(0, colon);
  if (/[*?\\]/.test(type) || RESOURCE_TYPES.includes(type)) return undefined;
  return `${shown(type)} is not a resource type${type.length > 80 ? '' : suggestion(type, RESOURCE_TYPES)}; a resource pattern starts with one of ${RESOURCE_TYPES.join(', ')} and a colon`;
}

/** The match as people write it, in flow style: `{ kind: [file, sysctl], actor: { exe: /usr/bin/vim* } }`. */
function flow(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(flow).join(', ')}]`;
  if (isRecord(v)) {
    const entries = Object.entries(v).map(([k, x]) => `${k}: ${flow(x)}`);
    return entries.length === 0 ? '{}' : `{ ${entries.join(', ')} }`;
  }
  return String(v);
}
