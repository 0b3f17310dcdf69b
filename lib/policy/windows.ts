// Maintenance windows: a cron expression says when each window starts, a duration how long it lasts. Answers "is time t
// inside", "when does the current window end" and "when does the next one start" for any t given, never the clock.
import { createTask, validateDetailed } from 'node-cron';

export interface WindowSpec {
  name: string;
  /** Five fields (minute hour day-of-month month day-of-week) or a nickname such as @daily. */
  cron: string;
  durationMs: number;
  /** An IANA zone name (`Europe/Paris`) or `UTC`; the cron fields are read in it. */
  timezone: string;
}

/** Longest window: `contains` looks back this far for the start of the current window. */
export const MAX_WINDOW_MS = 7 * 86_400_000;
/** How far `nextStart` looks ahead: far enough for yearly windows. */
export const NEXT_START_HORIZON_MS = 366 * 86_400_000;

const MINUTE = 60_000;
const DAY = 86_400_000;
/** Days of starts kept per window: a backtest walks forward through months, a daemon stays within a few days. */
const CACHED_DAYS = 512;

/** Why `expr` is not a cron expression a window can use, or undefined. */
export function cronProblem(expr: string): string | undefined {
  const fields = expr.trim().split(/\s+/);
  if (fields.length === 6) return `cron ${quote(expr)} has six fields; a window starts on a minute, so write five: minute hour day-of-month month day-of-week`;
  const checked = validateDetailed(expr);
  if (!checked.valid) {
    const e = checked.errors[0];
    if (e === undefined) return `cron ${quote(expr)} is not a valid expression`;
    if (e.field === 'expression') return `cron ${quote(expr)}: ${e.message}; write five fields: minute hour day-of-month month day-of-week`;
    return `cron ${quote(expr)}: ${quote(e.value ?? '')} is not a valid ${FIELD_WORDS[e.field] ?? e.field}`;
  }
  const resolved = expr.trim().startsWith('@') ? undefined : fields;
  // node-cron needs both day fields to match where classic cron takes either; an expression restricting both would be read
  // differently by people who know cron, so it is refused rather than silently narrowed.
  if (resolved && resolved[2] !== '*' && resolved[2] !== '?' && resolved[4] !== '*' && resolved[4] !== '?') {
    return `cron ${quote(expr)} restricts both day-of-month and day-of-week, which cron implementations read differently; restrict one of them and use another window for the other`;
  }
  return undefined;
}

/** Text from the document in a message: quoted, cut short. */
function quote(text: string): string {
  return JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}...` : text);
}

const FIELD_WORDS: Record<string, string> = {
  minute: 'minute (0-59)',
  hour: 'hour (0-23)',
  dayOfMonth: 'day of month (1-31, L, LW, 15W, L-2)',
  month: 'month (1-12 or jan-dec)',
  dayOfWeek: 'day of week (0-7 or sun-sat, 1#2 for the second Monday, 5L for the last Friday)',
};

/** Why `tz` is not a time zone the host's Intl knows, or undefined. */
export function timezoneProblem(tz: string): string | undefined {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return undefined;
  } catch {
    return `${quote(tz)} is not a time zone name; use UTC or an IANA name such as Europe/Paris`;
  }
}

export class MaintenanceWindow {
  readonly name: string;
  readonly cron: string;
  readonly durationMs: number;
  readonly timezone: string;
  private readonly matcher: (d: Date) => boolean;
  private readonly minutes: ReadonlySet<number>;
  private readonly hours: ReadonlySet<number>;
  private readonly offsets: OffsetReader;
  /** Start instants per UTC day number, oldest computed first (evicted first). */
  private readonly starts = new Map<number, readonly number[]>();

  /** The spec must have passed cronProblem and timezoneProblem; the policy parser sees to that. */
  constructor(spec: WindowSpec) {
    this.name = spec.name;
    this.cron = spec.cron;
    this.durationMs = spec.durationMs;
    this.timezone = spec.timezone;
    // node-cron's matcher is reached through a task that is created and destroyed at once: it is never started, so it
    // schedules nothing, and destroying it takes it out of node-cron's task registry.
    const task = createTask(spec.cron, () => undefined, { timezone: spec.timezone, name: `homeostat-window-${spec.name}` });
    void task.destroy();
    this.matcher = (d) => task.match(d);
    const fields = validateDetailed(spec.cron).fields;
    this.minutes = new Set((fields?.minute ?? []).filter((m): m is number => typeof m === 'number'));
    this.hours = new Set((fields?.hour ?? []).filter((h): h is number => typeof h === 'number'));
    this.offsets = offsetReader(spec.timezone);
  }

  /** The start of the latest window occurrence that contains `t`, or undefined when `t` is outside every occurrence. */
  currentStart(t: number): number | undefined {
    const from = t - this.durationMs; // exclusive: a window [s, s + d) no longer holds t = s + d
    for (let day = dayOf(t); day >= dayOf(from); day--) {
      const list = this.startsOn(day);
      for (let i = list.length - 1; i >= 0; i--) {
        const s = list[i] as number;
        if (s <= t && s > from) return s;
        if (s <= from) return undefined;
      }
    }
    return undefined;
  }

  contains(t: number): boolean {
    return this.currentStart(t) !== undefined;
  }

  /** When the window holding `t` ends (the latest occurrence's start plus the duration), or undefined when outside. */
  currentEnd(t: number): number | undefined {
    const s = this.currentStart(t);
    return s === undefined ? undefined : s + this.durationMs;
  }

  /** The first start after `t`, within NEXT_START_HORIZON_MS. */
  nextStart(t: number): number | undefined {
    const last = dayOf(t + NEXT_START_HORIZON_MS);
    for (let day = dayOf(t); day <= last; day++) {
      for (const s of this.startsOn(day)) if (s > t) return s;
    }
    return undefined;
  }

  /** Every start within [from, to), oldest first. */
  startsBetween(from: number, to: number): number[] {
    const out: number[] = [];
    for (let day = dayOf(from); day <= dayOf(to - 1); day++) {
      for (const s of this.startsOn(day)) if (s >= from && s < to) out.push(s);
    }
    return out;
  }

  private startsOn(day: number): readonly number[] {
    const cached = this.starts.get(day);
    if (cached) return cached;
    const list = this.computeDay(day);
    if (this.starts.size >= CACHED_DAYS) {
      const oldest = this.starts.keys().next().value;
      if (oldest !== undefined) this.starts.delete(oldest);
    }
    this.starts.set(day, list);
    return list;
  }

  /**
   * The starts within one UTC day, asking node-cron's matcher minute by minute. When the zone's offset is whole hours all day
   * (nearly every zone, always UTC), minute-of-hour and hour are known without the matcher, and only candidates are asked.
   */
  private computeDay(day: number): number[] {
    const begin = day * DAY;
    const off0 = this.offsets(begin);
    const off1 = this.offsets(begin + DAY - MINUTE);
    const wholeHours = off0 % 60 === 0 && off1 % 60 === 0;
    const out: number[] = [];
    for (let m = 0; m < 1440; m++) {
      const t = begin + m * MINUTE;
      if (wholeHours) {
        if (this.minutes.size > 0 && !this.minutes.has(m % 60)) continue;
        if (this.hours.size > 0 && off0 === off1) {
          const localHour = (((Math.floor(m / 60) + off0 / 60) % 24) + 24) % 24;
          if (!this.hours.has(localHour)) continue;
        }
      }
      if (this.matcher(new Date(t))) out.push(t);
    }
    return out;
  }
}

function dayOf(t: number): number {
  return Math.floor(t / DAY);
}

type OffsetReader = (t: number) => number;

/** The zone's offset from UTC in minutes at instant t (+60 for Paris in winter). */
function offsetReader(timezone: string): OffsetReader {
  if (timezone === 'UTC' || timezone === 'Etc/UTC') return () => 0;
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone: timezone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
  });
  return (t) => {
    const p: Record<string, number> = {};
    for (const part of fmt.formatToParts(new Date(t))) if (part.type !== 'literal') p[part.type] = Number(part.value);
    const local = Date.UTC(p.year ?? 1970, (p.month ?? 1) - 1, p.day ?? 1, p.hour ?? 0, p.minute ?? 0);
    return Math.round((local - Math.floor(t / MINUTE) * MINUTE) / MINUTE);
  };
}
