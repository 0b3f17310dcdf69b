// Tuning settings: whether bounded autotuning runs, its confidence threshold, the webhook that hears of automatic changes,
// how proposals are computed (how often, over how much history, how long a repair must hold), and how tuning's policy
// versions roll out. Kept in the store;
// `PUT /api/v1/settings/autotune` changes any of them and refuses unknown keys and bad values by name.
import { parseDuration } from '../../lib/clock.js';
import { HsError } from '../../lib/errors.js';
import { parseStrategy } from '../rollouts/waves.js';

export type AutotuneMode = 'off' | 'bounded';
export const AUTOTUNE_MODES: readonly AutotuneMode[] = ['off', 'bounded'];

export interface TuningSettings {
  /** `bounded`: the controller applies proposals itself, within the bounds of docs/tuning.md. Off by default. */
  mode: AutotuneMode;
  /** The lower end of a proposal's 90 % credible interval must reach this for autotuning to apply it. */
  minConfidence: number;
  /** Told of every automatic change and every revert of one (POST, JSON); null for none. */
  webhook: string | null;
  /** How often proposals are refreshed. */
  refreshInterval: string;
  /** How much history outcomes and proposals look at. */
  lookback: string;
  /** An automatic repair held when the resource did not drift again on that host within this long. */
  recurrenceWindow: string;
  /** How each new tuning version rolls out, as `POST /api/v1/rollouts` takes `strategy`; null: its default waves and gates. */
  rolloutStrategy: unknown;
}

export const DEFAULT_SETTINGS: TuningSettings = {
  mode: 'off',
  minConfidence: 0.8,
  webhook: null,
  refreshInterval: '1h',
  lookback: '30d',
  recurrenceWindow: '1h',
  rolloutStrategy: null,
};

export const SETTINGS_NAME = 'tuning';
const MIN_REFRESH_MS = 60_000;
const MAX_LOOKBACK_MS = 366 * 86_400_000;

/** The stored settings over the defaults: a setting added later reads as its default. */
export function settingsFrom(stored: unknown): TuningSettings {
  const s = { ...DEFAULT_SETTINGS };
  if (stored === null || typeof stored !== 'object') return s;
  try {
    return { ...s, ...checkPatch(stored as Record<string, unknown>) };
  } catch {
    return s;
  }
}

/** The settings a `PUT` body asks for, each key checked; HS_CONFIG naming the key and what it takes. */
export function checkPatch(body: Record<string, unknown>): Partial<TuningSettings> {
  const out: Partial<TuningSettings> = {};
  const bad = (key: string, what: string): HsError => new HsError('HS_CONFIG', `${key}: expected ${what}; got ${JSON.stringify(body[key])?.slice(0, 100)}`);
  for (const key of Object.keys(body)) {
    const v = body[key];
    switch (key) {
      case 'mode':
        if (!AUTOTUNE_MODES.includes(v as AutotuneMode)) throw bad(key, `one of ${AUTOTUNE_MODES.join(', ')}`);
        out.mode = v as AutotuneMode;
        break;
      case 'minConfidence':
        if (typeof v !== 'number' || !(v >= 0.5 && v < 1)) throw bad(key, 'a number from 0.5 to below 1');
        out.minConfidence = v;
        break;
      case 'webhook':
        if (v !== null && !(typeof v === 'string' && webhookOk(v))) throw bad(key, 'null or an http:// or https:// URL without credentials, at most 2048 characters');
        out.webhook = v;
        break;
      case 'refreshInterval':
      case 'lookback':
      case 'recurrenceWindow': {
        const ms = typeof v === 'string' ? parseDuration(v) : undefined;
        const [min, max] = key === 'refreshInterval' ? [MIN_REFRESH_MS, 30 * 86_400_000] : key === 'lookback' ? [3_600_000, MAX_LOOKBACK_MS] : [60_000, 30 * 86_400_000];
        if (ms === undefined || ms < min || ms > max) throw bad(key, `a duration from ${words(min)} to ${words(max)}, such as 1h or 30d`);
        out[key] = v as string;
        break;
      }
      case 'rolloutStrategy':
        // Checked by the rollouts' own parser now, so an accept never fails on it later.
        try {
          parseStrategy(v);
        } catch (err) {
          throw new HsError('HS_CONFIG', `rolloutStrategy: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        }
        out.rolloutStrategy = v ?? null;
        break;
      case 'updatedAt':
      case 'updatedBy':
        break; // what GET returned, sent back as is
      default:
        throw new HsError('HS_CONFIG', `unknown setting ${JSON.stringify(key.slice(0, 100))}; known: mode, minConfidence, webhook, refreshInterval, lookback, recurrenceWindow, rolloutStrategy`);
    }
  }
  return out;
}

function webhookOk(text: string): boolean {
  if (text.length > 2048) return false;
  try {
    const u = new URL(text);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.username === '' && u.password === '';
  } catch {
    return false;
  }
}

function words(ms: number): string {
  return ms >= 86_400_000 ? `${ms / 86_400_000}d` : ms >= 3_600_000 ? `${ms / 3_600_000}h` : `${ms / 60_000}m`;
}

export function ms(text: string): number {
  return parseDuration(text) ?? 0;
}
