// A backtest run: the stored history of [since, until) streamed from the store page by page, each drift's baseline policy
// looked up once per baseline version, and replayed under a base policy set and any candidates (replay.ts).
import type { Logger } from '../../lib/log.js';
import type { ControllerStore } from '../store/types.js';
import { readHistory, ResourcePolicies } from './history.js';
import { Replay, type BacktestResult, type ReplayOptions } from './replay.js';

/** History before `since` that is replayed only to build state: a flap window or a rule's hour of repairs. */
export const WARMUP_MS = 3_600_000;

export interface RunStats {
  records: number;
  ms: number;
}

export async function runBacktest(
  deps: { store: ControllerStore; log: Logger },
  opts: ReplayOptions & { stopped?: () => boolean },
): Promise<{ results: BacktestResult[]; stats: RunStats }> {
  const t0 = performance.now();
  const policies = new ResourcePolicies(deps.store, deps.log);
  const replay = new Replay(opts);
  let records = 0;
  for await (const page of readHistory(deps.store, { since: opts.since - WARMUP_MS, until: opts.until }, opts.stopped)) {
    for (const r of page) {
      records++;
      replay.push(r, r.event === 'drift_detected' ? (policies.info(r) ?? (await policies.load(r))) : undefined);
    }
  }
  return { results: replay.finish(), stats: { records, ms: Math.round(performance.now() - t0) } };
}
