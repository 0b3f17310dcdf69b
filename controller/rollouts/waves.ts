// Rollout strategies and wave assignment, pure: reading a strategy from a request with its defaults, and placing each
// targeted host in a wave deterministically (canaries first, then by a hash of rollout seed and agent id).
import { createHash } from 'node:crypto';
import { HsError } from '../../lib/errors.js';
import { parseDuration } from '../../lib/clock.js';
import { selectorMatches, type Labels } from '../../lib/labels.js';
import type { RolloutHostRecord, RolloutHostStatus, RolloutRecord, RolloutStrategy, WaveStep } from '../store/types.js';

export const DEFAULT_STRATEGY: RolloutStrategy = {
  waves: [{ hosts: 1 }, 10, 50, 100],
  gate: { maxFailedHosts: 0, soakSeconds: 60, ackTimeoutSeconds: 300 },
  canary: null,
  onFailure: 'rollback',
  onEscalation: 'pause',
};

/**
 * Everything at once, ungated: `"strategy": "all-at-once"`. Host failures are reported per host but never stop or roll
 * back the rollout, nor do escalations wait for decisions (there is no later wave to protect).
 */
export const ALL_AT_ONCE: RolloutStrategy = {
  ...DEFAULT_STRATEGY,
  waves: [100],
  gate: { maxFailedHosts: Number.MAX_SAFE_INTEGER, soakSeconds: 0, ackTimeoutSeconds: 300 },
  onEscalation: 'ignore',
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function seconds(v: unknown, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v;
  if (typeof v === 'string') {
    const ms = parseDuration(v);
    if (ms !== undefined) return ms / 1000;
  }
  throw new HsError('HS_CONFIG', `${name}: expected a number of seconds or a duration like 30s`);
}

/**
 * One wave as text: `10%` or `10` (a cumulative percentage of the targeted hosts), `1host`, `3hosts` or `hosts:3` (a number
 * of hosts). `1h` is refused: it reads as one hour as easily as one host.
 */
export function parseWave(text: string, where: string): WaveStep {
  const t = text.trim();
  const pct = /^(\d+(?:\.\d+)?)%?$/.exec(t);
  if (pct) {
    const n = Number(pct[1]);
    if (n > 0 && n <= 100) return n;
    throw new HsError('HS_CONFIG', `${where}: ${JSON.stringify(t)} is not a percentage from 0 (excluded) to 100`);
  }
  const hosts = /^(\d+)\s*hosts?$/.exec(t) ?? /^hosts:(\d+)$/.exec(t);
  if (hosts) {
    const n = Number(hosts[1]);
    if (Number.isSafeInteger(n) && n >= 1) return { hosts: n };
    throw new HsError('HS_CONFIG', `${where}: ${JSON.stringify(t)}: a wave reaches at least 1 host`);
  }
  const ambiguous = /^(\d+)h$/.exec(t);
  if (ambiguous) {
    throw new HsError('HS_CONFIG', `${where}: ${JSON.stringify(t)} is ambiguous (${ambiguous[1]} host${ambiguous[1] === '1' ? '' : 's'}, or ${ambiguous[1]} hour${ambiguous[1] === '1' ? '' : 's'}?); write ${ambiguous[1]}host${ambiguous[1] === '1' ? '' : 's'} (or hosts:${ambiguous[1]}) for a number of hosts, ${ambiguous[1]}% for a share of them`);
  }
  throw new HsError('HS_CONFIG', `${where}: ${JSON.stringify(t)}: expected a percentage (10%, or 10) or a number of hosts (1host, 5hosts, hosts:5)`);
}

/** A wave of a request: a percentage, `{"hosts": N}`, or the same as text (parseWave). */
function step(v: unknown, i: number): WaveStep {
  if (typeof v === 'number' && v > 0 && v <= 100) return v;
  if (isObject(v) && typeof v.hosts === 'number' && Number.isInteger(v.hosts) && v.hosts >= 1) return { hosts: v.hosts };
  if (typeof v === 'string') return parseWave(v, `strategy.waves[${i}]`);
  throw new HsError('HS_CONFIG', `strategy.waves[${i}]: expected a cumulative percentage (0 < p ≤ 100), {"hosts": N}, or text such as "10%" or "1host"`);
}

const STRATEGY_KEYS = ['waves', 'gate', 'canary', 'onFailure', 'onEscalation'];

/** Reads `strategy` from a rollout request: absent = the defaults, "all-at-once", or an object overriding any key. */
export function parseStrategy(raw: unknown): { kind: 'all-at-once' | 'waves'; spec: RolloutStrategy } {
  if (raw === undefined || raw === null) return { kind: 'waves', spec: DEFAULT_STRATEGY };
  if (raw === 'all-at-once') return { kind: 'all-at-once', spec: ALL_AT_ONCE };
  if (!isObject(raw)) throw new HsError('HS_CONFIG', 'strategy: expected "all-at-once" or {"waves", "gate", "canary", "onFailure", "onEscalation"}');
  for (const k of Object.keys(raw)) {
    if (!STRATEGY_KEYS.includes(k)) throw new HsError('HS_CONFIG', `strategy.${k}: unknown key; allowed: ${STRATEGY_KEYS.join(', ')}`);
  }
  let waves = DEFAULT_STRATEGY.waves;
  if (raw.waves !== undefined) {
    if (!Array.isArray(raw.waves) || raw.waves.length === 0) throw new HsError('HS_CONFIG', 'strategy.waves: expected a non-empty list');
    waves = raw.waves.map((v, i) => step(v, i));
    // The last wave always reaches everyone.
    if (waves[waves.length - 1] !== 100) waves = [...waves, 100];
  }
  const g = raw.gate === undefined ? {} : raw.gate;
  if (!isObject(g)) throw new HsError('HS_CONFIG', 'strategy.gate: expected {"maxFailedHosts", "soakSeconds", "ackTimeoutSeconds"}');
  const maxFailed = g.maxFailedHosts ?? DEFAULT_STRATEGY.gate.maxFailedHosts;
  if (typeof maxFailed !== 'number' || !Number.isInteger(maxFailed) || maxFailed < 0) throw new HsError('HS_CONFIG', 'strategy.gate.maxFailedHosts: expected a non-negative integer');
  let canary: RolloutStrategy['canary'] = null;
  if (raw.canary !== undefined && raw.canary !== null) {
    const c = raw.canary;
    if (!isObject(c) || !isObject(c.matchLabels) || !Object.values(c.matchLabels).every((x) => typeof x === 'string')) {
      throw new HsError('HS_CONFIG', 'strategy.canary: expected {"matchLabels": {"key": "value"}}');
    }
    canary = { matchLabels: c.matchLabels as Labels };
  }
  const onFailure = raw.onFailure ?? 'rollback';
  if (onFailure !== 'rollback' && onFailure !== 'pause') throw new HsError('HS_CONFIG', 'strategy.onFailure: "rollback" or "pause"');
  const onEscalation = raw.onEscalation ?? DEFAULT_STRATEGY.onEscalation;
  if (onEscalation !== 'pause' && onEscalation !== 'ignore' && onEscalation !== 'fail') {
    throw new HsError('HS_CONFIG', `strategy.onEscalation: ${JSON.stringify(onEscalation)}; expected "pause" (wait for the operator's decisions), "ignore" or "fail"`);
  }
  return {
    kind: 'waves',
    spec: {
      waves,
      gate: {
        maxFailedHosts: maxFailed,
        soakSeconds: seconds(g.soakSeconds, 'strategy.gate.soakSeconds', DEFAULT_STRATEGY.gate.soakSeconds),
        ackTimeoutSeconds: seconds(g.ackTimeoutSeconds, 'strategy.gate.ackTimeoutSeconds', DEFAULT_STRATEGY.gate.ackTimeoutSeconds),
      },
      canary,
      onFailure,
      onEscalation,
    },
  };
}

/** A stable rank for a host within one rollout: the same seed and id always give the same place. */
export function rank(seed: string, agentId: string): string {
  return createHash('sha256').update(`${seed}\0${agentId}`).digest('hex');
}

/**
 * Places hosts in waves: canaries (by label) first, then the rest, each group ordered by `rank`; wave i reaches the first
 * ceil(p_i % of all) hosts (or N hosts for {"hosts": N}), at least every canary in the first wave. Waves that would add
 * nobody are dropped, so the wave numbers returned are consecutive from 0.
 */
export function assignWaves(hosts: { id: string; labels: Labels }[], spec: RolloutStrategy, seed: string): Map<string, number> {
  const byRank = (a: { id: string; r: string }, b: { id: string; r: string }): number => (a.r < b.r ? -1 : a.r > b.r ? 1 : a.id.localeCompare(b.id));
  const ranked = hosts.map((h) => ({ id: h.id, r: rank(seed, h.id), canary: spec.canary !== null && selectorMatches(spec.canary, h.labels) }));
  const canaries = ranked.filter((h) => h.canary).sort(byRank);
  const order = [...canaries, ...ranked.filter((h) => !h.canary).sort(byRank)];
  const n = order.length;
  const bounds: number[] = [];
  let prev = 0;
  spec.waves.forEach((s, i) => {
    let upto = typeof s === 'number' ? Math.ceil((s * n) / 100) : s.hosts;
    if (i === 0) upto = Math.max(upto, canaries.length);
    if (i === spec.waves.length - 1) upto = n;
    upto = Math.min(Math.max(upto, prev), n);
    if (upto > prev) bounds.push(upto);
    prev = upto;
  });
  const out = new Map<string, number>();
  let wave = 0;
  order.forEach((h, i) => {
    while ((bounds[wave] ?? n) <= i) wave++;
    out.set(h.id, wave);
  });
  return out;
}

/** Hosts of the current wave in these states hold it up. */
export const UNSETTLED: readonly RolloutHostStatus[] = ['waiting', 'sent', 'acknowledged', 'escalated'];

/**
 * When the current wave's soak ends: `soakSeconds` after its last host converged (or after the wave started, if none
 * did). Undefined while a host of the wave has not settled yet.
 */
export function soakEnd(r: Pick<RolloutRecord, 'spec' | 'waveStartedAt'>, wave: readonly RolloutHostRecord[], now: number): number | undefined {
  if (wave.some((h) => UNSETTLED.includes(h.status))) return undefined;
  const settled = wave.reduce((m, h) => Math.max(m, h.status === 'converged' ? h.updatedAt : 0), r.waveStartedAt ?? now);
  return settled + r.spec.gate.soakSeconds * 1000;
}
