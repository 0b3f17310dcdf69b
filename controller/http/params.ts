// Reading query and body parameters: integers, times (epoch ms, ISO 8601, or a duration ago like `10m`), durations.
// Every value must be a safe integer number of milliseconds, so nothing out of range reaches the store or a signature.
import { parseDuration } from '../../lib/clock.js';
import { HsError } from '../../lib/errors.js';

export function intParam(value: string | null | undefined, name: string): number | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new HsError('HS_CONFIG', `${name} must be a non-negative integer`);
  return n;
}

export function requiredInt(value: string | undefined, name: string): number {
  const n = intParam(value, name);
  if (n === undefined) throw new HsError('HS_CONFIG', `${name} is required`);
  return n;
}

/** A point in time: epoch milliseconds, an ISO 8601 date, or a duration meaning that long before `now`. */
export function timeParam(value: string | null | undefined, name: string, now: number): number | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  const bad = (): HsError => new HsError('HS_CONFIG', `${name}: expected epoch ms, an ISO 8601 time or a duration like 10m`);
  if (/^\d+$/.test(value)) {
    const n = Number(value);
    if (!Number.isSafeInteger(n)) throw bad();
    return n;
  }
  const ago = parseDuration(value);
  if (ago !== undefined) {
    if (!Number.isSafeInteger(Math.round(now - ago))) throw bad();
    return Math.round(now - ago);
  }
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw bad();
  return t;
}

/** A duration given as `7d`/`10m` text or a number of milliseconds. */
export function durationParam(value: unknown, name: string): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const d = typeof value === 'number' ? value : typeof value === 'string' ? parseDuration(value) : undefined;
  if (d !== undefined && d > 0 && Number.isSafeInteger(Math.round(d))) return Math.round(d);
  throw new HsError('HS_CONFIG', `${name}: expected a duration like 24h or 7d`);
}
