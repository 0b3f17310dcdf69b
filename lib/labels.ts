// Host labels and baseline selectors: parsing `k=v,k2=v2` and matching `matchLabels` against an agent's labels.
import { HsError } from './errors.js';

export type Labels = Record<string, string>;

const KEY = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;
const VALUE = /^[A-Za-z0-9._-]{0,63}$/;

/** Parses `role=web,zone=a` (also accepts several flags' worth already joined); throws HS_CONFIG on a malformed pair. */
export function parseLabels(text: string | string[] | undefined): Labels {
  const out: Labels = {};
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
  return out;
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
    if (labels[k] !== v) return false;
  }
  return true;
}
