// Time-bounded property runs for the fuzz suites (test/fuzz): each suite runs for HOMEOSTAT_FUZZ_SECONDS (default 60 s
// under `npm test`, longer under `npm run fuzz`) and reports the seed of any failure so it can be replayed.
import fc from 'fast-check';

/** How long one fuzz property may run, in milliseconds. */
export function fuzzBudgetMs(): number {
  const s = Number(process.env.HOMEOSTAT_FUZZ_SECONDS ?? 60);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 60_000;
}

/**
 * Parameters for `fc.assert`: as many runs as fit in `share` of the budget (a suite with several properties splits it),
 * an interrupted run counts as a pass, and HOMEOSTAT_FUZZ_SEED replays a reported failure.
 */
export function fuzzParams<T>(share = 1): fc.Parameters<T> {
  const seed = process.env.HOMEOSTAT_FUZZ_SEED;
  return {
    numRuns: Number.MAX_SAFE_INTEGER,
    interruptAfterTimeLimit: Math.max(1000, Math.floor(fuzzBudgetMs() * share)),
    markInterruptAsFailure: false,
    ...(seed ? { seed: Number(seed) } : {}),
  };
}

/** A mocha timeout that leaves room for the property's budget plus its set-up. */
export function fuzzTimeoutMs(share = 1, slackMs = 30_000): number {
  return Math.floor(fuzzBudgetMs() * share) + slackMs;
}
