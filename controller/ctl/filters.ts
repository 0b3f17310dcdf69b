// homeostatctl's filters, read the way the baseline reads the same things: resource ids normalised (`/etc/motd` is
// `file:/etc/motd`, `service:web` is `service:web.service`), event names checked against the ones agents record, and
// times that say what they mean. A filter that could only match nothing is refused with a hint, never run silently.
import { AUDIT_EVENTS } from '../../lib/audit-events.js';
import { HsError } from '../../lib/errors.js';
import { normaliseSysctl, normaliseUnit, pathProblem, sysctlProblem } from '../../lib/baseline/names.js';
import { suggestion } from '../../lib/baseline/suggest.js';
import { parseDuration } from '../../lib/clock.js';

/** The events agents record: what `--event` accepts. */
export const AGENT_EVENTS = AUDIT_EVENTS;

const RESOURCE_TYPES = ['file', 'directory', 'sysctl', 'service'] as const;
const EXAMPLES = 'file:/etc/motd, directory:/etc/app, sysctl:net.ipv4.ip_forward, service:nginx.service';

/**
 * The resource ids a filter names, as the baseline writes them. A bare absolute path may be a file or a directory, so it
 * names both.
 */
export function resourceIds(text: string, flag = '--resource'): string[] {
  const t = text.trim();
  if (t.startsWith('/')) {
    const bad = pathProblem(t);
    if (bad) throw new HsError('HS_CONFIG', `${flag} ${t}: ${bad}`);
    return [`file:${t}`, `directory:${t}`];
  }
  const colon = t.indexOf(':');
  if (colon <= 0) throw new HsError('HS_CONFIG', `${flag} ${JSON.stringify(t)}: write a resource id as TYPE:NAME, e.g. ${EXAMPLES}`);
  const type = t.slice(0, colon);
  const name = t.slice(colon + 1);
  switch (type) {
    case 'file':
    case 'directory': {
      const bad = pathProblem(name);
      if (bad) throw new HsError('HS_CONFIG', `${flag} ${t}: ${bad}`);
      return [`${type}:${name}`];
    }
    case 'sysctl': {
      const bad = sysctlProblem(name);
      if (bad) throw new HsError('HS_CONFIG', `${flag} ${t}: ${bad}`);
      return [`sysctl:${normaliseSysctl(name)}`];
    }
    case 'service':
      if (name === '') throw new HsError('HS_CONFIG', `${flag} ${t}: name the unit, e.g. service:nginx.service`);
      return [`service:${normaliseUnit(name)}`];
    default:
      throw new HsError('HS_CONFIG', `${flag} ${t}: no resource type "${type}"${suggestion(type, RESOURCE_TYPES)}; the types are ${RESOURCE_TYPES.join(', ')}`);
  }
}

/** An event name agents record, or a refusal that names the closest. */
export function eventName(text: string, flag = '--event'): string {
  const t = text.trim();
  if ((AGENT_EVENTS as readonly string[]).includes(t)) return t;
  const near = suggestion(t, AGENT_EVENTS) || sharedStart(t, AGENT_EVENTS);
  throw new HsError('HS_CONFIG', `${flag} ${JSON.stringify(t)}: agents record no such event${near}; the events are ${AGENT_EVENTS.join(', ')}`);
}

/** ` (did you mean "escalation_resolved"?)` for `escalation`: the one event sharing the longest start (4 characters at least). */
function sharedStart(t: string, words: readonly string[]): string {
  const common = (w: string): number => {
    let i = 0;
    while (i < w.length && i < t.length && w[i] === t[i]) i++;
    return i;
  };
  const best = Math.max(0, ...words.map(common));
  const hits = words.filter((w) => common(w) === best);
  return best >= 4 && hits.length === 1 ? ` (did you mean "${hits[0] ?? ''}"?)` : '';
}

/**
 * A point in time for the API: a duration back (`10m`, `2h`, `7d`), an ISO 8601 time, or epoch milliseconds (13 digits).
 * A bare small number would be read as milliseconds after 1970 and match everything: it is refused.
 */
export function timeFilter(text: string, flag = '--since'): string {
  const t = text.trim();
  if (parseDuration(t) !== undefined) return t;
  if (/^\d+$/.test(t)) {
    if (t.length >= 12) return t;
    throw new HsError('HS_CONFIG', `${flag} ${t}: a number without a unit; write a duration back (${t}s, ${t}m, ${t}h, ${t}d), an ISO time (2025-01-31T12:00:00Z), or epoch milliseconds`);
  }
  if (!Number.isNaN(Date.parse(t)) && /^\d{4}-\d\d-\d\d/.test(t)) return t;
  throw new HsError('HS_CONFIG', `${flag} ${JSON.stringify(t)}: expected a duration back (10m, 2h, 7d), an ISO time (2025-01-31T12:00:00Z) or epoch milliseconds`);
}

/** A positive count, e.g. --limit. */
export function count(text: string, flag: string, max: number): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1 || n > max) throw new HsError('HS_CONFIG', `${flag} ${JSON.stringify(text)}: expected a whole number from 1 to ${max}`);
  return n;
}
