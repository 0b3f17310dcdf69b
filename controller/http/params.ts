// Reading query and body parameters: integers, times (epoch ms, ISO 8601, or a duration ago like `10m`), durations.
import { parseDuration } from '../../lib/clock.js';
import { HsError } from '../../lib/errors.js';

export function intParam(value: string | null | undefined, name: string): number | undefined {
  if (value === null || value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new HsError('HS_CONFIG', `${name} must be a non-negative integer`);
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
  if (/^\d+$/.test(value)) return Number(value);
  const ago = parseDuration(value);
  if (ago !== undefined) return now - ago;
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new HsError('HS_CONFIG', `${name}: expected epoch ms, an ISO 8601 time or a duration like 10m`);
  return t;
}

/** A duration given as `7d`/`10m` text or a number of milliseconds. */
export function durationParam(value: unknown, name: string): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'number' && value > 0) return value;
  if (typeof value === 'string') {
    const d = parseDuration(value);
    if (d !== undefined && d > 0) return d;
  }
  throw new HsError('HS_CONFIG', `${name}: expected a duration like 24h or 7d`);
}
