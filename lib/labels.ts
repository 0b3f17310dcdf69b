// Host labels and baseline selectors: parsing `k=v,k2=v2`, matching `matchLabels`, and the patterns a join token uses to say
// which labels an agent may ask for (`role`, `zone=eu-*`, `tier=web`).
import { HsError } from './errors.js';

export type Labels = Record<string, string>;

const KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;
const VALUE = /^[A-Za-z0-9._-]{0,63}$/;
const VALUE_PATTERN = /^[A-Za-z0-9._*-]{0,63}$/;
/** The most labels one agent may carry or ask for: a bound on what a hello can make the controller store and match. */
export const MAX_LABELS = 64;
/** Labels the agent derives from its host facts; they select baselines only where the join token allows their key. */
export const FACT_LABEL_KEYS = ['hostname', 'os', 'kernel', 'arch'] as const;

/** Parses `role=web,zone=a` (also accepts several flags' worth already joined); throws HS_CONFIG on a malformed pair. */
export function parseLabels(text: string | string[] | undefined): Labels {
  const out: Labels = Object.create(null) as Labels;
  const parts = (Array.isArray(text) ? text : [text ?? '']).flatMap((t) => t.split(','));
  for (const raw of parts) {
    const part = raw.trim();
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    if (!KEY.test(key) || !VALUE.test(value)) throw new HsError('HS_CONFIG', `bad label ${JSON.stringify(part)}: expected key=value`);
    out[key] = value;
  }
  if (Object.keys(out).length > MAX_LABELS) throw new HsError('HS_CONFIG', `more than ${MAX_LABELS} labels`);
  return { ...out };
}

/** Checks labels that arrived from outside (an agent's hello): well-formed and at most MAX_LABELS; the first problem or null. */
export function labelProblem(labels: Record<string, string>): string | null {
  const entries = Object.entries(labels);
  if (entries.length > MAX_LABELS) return `${entries.length} labels (at most ${MAX_LABELS})`;
  for (const [k, v] of entries) if (!KEY.test(k) || !VALUE.test(v)) return `malformed label ${JSON.stringify(`${k}=${v}`.slice(0, 140))}`;
  return null;
}

export function formatLabels(labels: Labels): string {
  return Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/** A selector matches when every one of its labels is present with the same value; no selector matches every agent. */
export function selectorMatches(selector: { matchLabels: Labels } | undefined, labels: Labels): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels)) {
    if (!Object.hasOwn(labels, k) || labels[k] !== v) return false;
  }
  return true;
}

/**
 * Parses what a join token lets agents ask for: `key` (any value), `key=value`, or `key=pattern` where `*` stands for any
 * run of characters (`zone=eu-*`). Comma-separated text or a list; throws HS_CONFIG naming the bad entry.
 */
export function parseLabelAllowance(input: string | string[] | undefined): string[] {
  const parts = (Array.isArray(input) ? input : [input ?? '']).flatMap((t) => t.split(',')).map((p) => p.trim()).filter((p) => p !== '');
  const out: string[] = [];
  for (const part of parts) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '*' : part.slice(eq + 1);
    if (!KEY.test(key) || !VALUE_PATTERN.test(value)) {
      throw new HsError('HS_CONFIG', `bad label allowance ${JSON.stringify(part)}: expected key, key=value or key=pattern with *`);
    }
    out.push(`${key}=${value}`);
  }
  if (out.length > MAX_LABELS) throw new HsError('HS_CONFIG', `more than ${MAX_LABELS} label allowances`);
  return [...new Set(out)];
}

/** True when one of the allowance patterns (as parseLabelAllowance returns them) admits `key=value`. */
export function labelAllowed(allow: readonly string[], key: string, value: string): boolean {
  for (const p of allow) {
    const eq = p.indexOf('=');
    if ((eq < 0 ? p : p.slice(0, eq)) !== key) continue;
    const pattern = eq < 0 ? '*' : p.slice(eq + 1);
    if (pattern === '*' || pattern === value) return true;
    if (pattern.includes('*')) {
      // Only [A-Za-z0-9._-] and * can be in a pattern: escaping the dot is all a regex needs.
      const re = new RegExp(`^${pattern.replace(/\./g, '\\.').replace(/\*/g, '.*')}$`);
      if (re.test(value)) return true;
    }
  }
  return false;
}

const clean = (v: string): string =>
  v
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63);

/** `hostname`, `os`, `kernel` and `arch` as label values, from host facts. */
export function labelsFromFacts(facts: { hostname: string; os: string; kernel: string; arch: string }): Labels {
  return { hostname: clean(facts.hostname), os: clean(facts.os), kernel: clean(facts.kernel), arch: clean(facts.arch) };
}
