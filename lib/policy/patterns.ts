// Patterns in the drift history of one resource: a named opponent that keeps re-creating the same drift (a fight), and
// drift that comes back at about the same time each hour or each day (predicted). Pure functions of the history given.
import { actorIdentity, actorLabel, type Actor } from './actor.js';
import { changeKindOf } from './types.js';

/** One attributed drift of a resource, as the audit log keeps it. */
export interface DriftEvent {
  time: number;
  /** The fields the resource's diff reported. */
  changes: readonly string[];
  actor?: Actor;
}

export interface Fight {
  /** The opponent as people name it: `/usr/bin/puppet (puppet.service)`. */
  opponent: string;
  actor: Actor;
  /** Drifts this opponent made within the window. */
  changes: number;
  /** From its first to its last drift within the window. */
  spanMs: number;
  /** `fighting /usr/bin/puppet (puppet.service): 6 changes in 10 min` */
  message: string;
}

export interface FightOptions {
  /** When the question is asked; only drifts in (now - windowMs, now] count. */
  now: number;
  windowMs: number;
  /** Drifts by one actor before it is a fight; default 3. */
  minChanges?: number;
}

/**
 * The actor that keeps re-creating the same drift: at least `minChanges` drifts of the same kind of change by one named actor
 * within the window, and more than half of the attributed drifts of that window. Unknown actors and the agent itself are
 * never named as opponents.
 */
export function findFight(history: readonly DriftEvent[], opts: FightOptions): Fight | undefined {
  const min = opts.minChanges ?? 3;
  const from = opts.now - opts.windowMs;
  const groups = new Map<string, { actor: Actor; times: number[] }>();
  let attributed = 0;
  for (const e of history) {
    if (e.time <= from || e.time > opts.now || !e.actor) continue;
    const who = actorIdentity(e.actor);
    if (who === undefined) continue;
    attributed++;
    const key = `${who}\0${signature(e.changes)}`;
    const g = groups.get(key) ?? { actor: e.actor, times: [] };
    g.times.push(e.time);
    g.actor = e.actor; // the latest drift's details (pid, cmdline) are the most useful
    groups.set(key, g);
  }
  let best: { actor: Actor; times: number[] } | undefined;
  for (const g of groups.values()) if (!best || g.times.length > best.times.length) best = g;
  if (!best || best.times.length < min || best.times.length * 2 <= attributed) return undefined;
  const span = Math.max(...best.times) - Math.min(...best.times);
  const opponent = actorLabel(best.actor);
  return {
    opponent,
    actor: best.actor,
    changes: best.times.length,
    spanMs: span,
    message: `fighting ${opponent}: ${best.times.length} changes in ${spanText(span)}`,
  };
}

/** The kinds of change of a drift, order-free: `content,mode`. */
function signature(changes: readonly string[]): string {
  return [...new Set(changes.map(changeKindOf))].sort().join(',');
}

/** `42 s`, `10 min`, `3 h`: how long a run of changes took, rounded up so a fight never looks shorter than it was. */
export function spanText(ms: number): string {
  if (ms < 60_000) return `${Math.max(1, Math.ceil(ms / 1000))} s`;
  if (ms < 2 * 3_600_000) return `${Math.ceil(ms / 60_000)} min`;
  return `${Math.ceil(ms / 3_600_000)} h`;
}

export type Period = 'hour' | 'day';

export interface Prediction {
  period: Period;
  /** The kinds of change that recur: `content`, `content,mode`. */
  change: string;
  /** Milliseconds into each UTC hour or day at which it recurs. */
  phaseMs: number;
  /** Distinct hours or days it happened in, at that phase. */
  occurrences: number;
  /** The first expected time after `now`. */
  next: number;
  /** `changes every day at about 03:00 UTC (5 days since 2025-01-01); next expected 2025-01-06T03:00:00.000Z` */
  message: string;
}

/**
 * How close to the same time counts as "the same time", and how many distinct hours or days make a pattern: a job run by
 * cron drifts by its run time; three days or four hours in a row is a habit, two is a coincidence.
 */
export const PREDICTION_RULES: Record<Period, { ms: number; toleranceMs: number; minOccurrences: number }> = {
  hour: { ms: 3_600_000, toleranceMs: 2 * 60_000, minOccurrences: 4 },
  day: { ms: 86_400_000, toleranceMs: 15 * 60_000, minOccurrences: 3 },
};

/** The most recent drifts of one kind of change a prediction looks at: the search is quadratic in them. */
const MAX_PATTERN_EVENTS = 2000;

export interface PredictOptions {
  now: number;
  /** Only the history since this time is looked at (default: 30 days before now). */
  since?: number;
}

/**
 * The drift that comes back on a schedule, per kind of change: the same change at about the same time (within the tolerance)
 * in at least `minOccurrences` distinct hours or days, the latest of them no more than two periods ago, and in at least half
 * of the periods from the first to the last. Hourly patterns are looked for first: anything hourly also looks daily.
 */
export function predictDrift(history: readonly DriftEvent[], opts: PredictOptions): Prediction[] {
  const since = opts.since ?? opts.now - 30 * 86_400_000;
  const byChange = new Map<string, number[]>();
  for (const e of history) {
    if (e.time < since || e.time > opts.now) continue;
    const sig = signature(e.changes);
    const times = byChange.get(sig) ?? [];
    times.push(e.time);
    byChange.set(sig, times);
  }
  const out: Prediction[] = [];
  for (const [change, all] of byChange) {
    const times = all.slice(-MAX_PATTERN_EVENTS);
    for (const period of ['hour', 'day'] as const) {
      const p = recurring(times, period, opts.now);
      if (p) {
        out.push({ ...p, change, message: predictionMessage(p, change) });
        break;
      }
    }
  }
  return out.sort((a, b) => a.next - b.next);
}

function recurring(times: number[], period: Period, now: number): Omit<Prediction, 'change' | 'message'> | undefined {
  const rule = PREDICTION_RULES[period];
  const P = rule.ms;
  let best: { phase: number; members: number[] } | undefined;
  for (const center of times) {
    const c = center % P;
    const members = times.filter((t) => circularDistance(t % P, c, P) <= rule.toleranceMs);
    if (!best || members.length > best.members.length) best = { phase: c, members };
  }
  if (!best) return undefined;
  const periods = new Set(best.members.map((t) => Math.floor(t / P)));
  if (periods.size < rule.minOccurrences) return undefined;
  const first = Math.min(...periods);
  const last = Math.max(...periods);
  if (Math.floor(now / P) - last > 2) return undefined; // the habit stopped
  if (periods.size * 2 < last - first + 1) return undefined; // scattered, not a schedule
  // The mean offset of the members from the centre, which may wrap around the period's end.
  let sum = 0;
  for (const t of best.members) sum += signedOffset(t % P, best.phase, P);
  const phase = (((best.phase + Math.round(sum / best.members.length)) % P) + P) % P;
  let next = Math.floor(now / P) * P + phase;
  if (next <= now) next += P;
  return { period, phaseMs: phase, occurrences: periods.size, next };
}

function circularDistance(a: number, b: number, P: number): number {
  const d = Math.abs(a - b) % P;
  return Math.min(d, P - d);
}

/** a - b on the circle, in (-P/2, P/2]. */
function signedOffset(a: number, b: number, P: number): number {
  let d = (a - b) % P;
  if (d > P / 2) d -= P;
  if (d <= -P / 2) d += P;
  return d;
}

function predictionMessage(p: Omit<Prediction, 'change' | 'message'>, change: string): string {
  const at = new Date(p.phaseMs);
  const hh = String(at.getUTCHours()).padStart(2, '0');
  const mm = String(at.getUTCMinutes()).padStart(2, '0');
  const when = p.period === 'hour' ? `every hour at about :${mm}` : `every day at about ${hh}:${mm} UTC`;
  const unit = p.period === 'hour' ? 'hours' : 'days';
  return `${change} changes ${when} (seen in ${p.occurrences} ${unit}); next expected ${new Date(p.next).toISOString()}`;
}
