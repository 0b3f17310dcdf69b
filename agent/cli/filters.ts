// `audit`'s filters read like the baseline: resource ids normalised as validation writes them, event names and times
// checked, so an input that can never match is refused with a hint instead of printing nothing.
import { parseDuration } from '../../lib/clock.js';
import { HsError } from '../../lib/errors.js';
import { normaliseName, RESOURCE_TYPES } from '../../lib/baseline/kinds.js';
import { distance } from '../../lib/baseline/suggest.js';
import { AUDIT_EVENTS } from '../store/types.js';

/** The resource ids `--resource` names: `file:/etc/motd` as given, a bare path its file or directory, unit names with their suffix. */
export function resourceIds(text: string): string[] {
  const t = text.trim();
  if (t.startsWith('/')) return [`file:${t}`, `directory:${t}`];
  const colon = t.indexOf(':');
  if (colon <= 0) {
    throw new HsError('HS_CONFIG', `--resource '${text}' names no resource type: write TYPE:NAME (${RESOURCE_TYPES.map((k) => `${k}:`).join(', ')}), or an absolute path for a file or directory`);
  }
  const type = t.slice(0, colon);
  const name = t.slice(colon + 1);
  if (!RESOURCE_TYPES.includes(type)) {
    throw new HsError('HS_CONFIG', `--resource '${text}': unknown resource type '${type}'${suggest(type, RESOURCE_TYPES)} (known: ${RESOURCE_TYPES.join(', ')})`);
  }
  if (name === '') throw new HsError('HS_CONFIG', `--resource '${text}': the name after '${type}:' is missing`);
  return [`${type}:${normaliseName(type, name)}`];
}

export function eventName(text: string): string {
  const t = text.trim();
  if ((AUDIT_EVENTS as readonly string[]).includes(t)) return t;
  throw new HsError('HS_CONFIG', `--event '${text}' is not an event the agent records${suggest(t, AUDIT_EVENTS)} (events: ${AUDIT_EVENTS.join(', ')})`);
}

/** `--since` takes an ISO time or a duration back from now (`10m`, `2h`); a bare number is refused, its unit unknown. */
export function parseSince(text: string, now = Date.now()): number {
  const t = text.trim();
  const ago = parseDuration(t);
  if (ago !== undefined) return now - ago;
  if (/^\d+(\.\d+)?$/.test(t)) throw new HsError('HS_CONFIG', `--since '${text}' has no unit: write ${t}m, ${t}h or ${t}d (or an ISO time such as 2025-01-31T10:00:00Z)`);
  // Only ISO-like dates: Date.parse reads many other texts ('10', 'May') as some unintended time.
  const ms = /^\d{4}-\d{2}-\d{2}/.test(t) ? Date.parse(t) : Number.NaN;
  if (Number.isNaN(ms)) throw new HsError('HS_CONFIG', `--since '${text}' is neither an ISO time (2025-01-31T10:00:00Z) nor a duration like 10m, 2h, 7d`);
  return ms;
}

function suggest(word: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(word.toLowerCase(), k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  // Close enough to be a slip, or the name an operator reaches for (repair → repaired).
  const near = best !== undefined && (bestD <= Math.max(2, Math.floor(word.length / 3)) || best.startsWith(word.toLowerCase()));
  return near ? `; did you mean '${best}'?` : '';
}
