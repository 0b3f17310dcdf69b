// /api/v1/backtest: the recorded drifts of a time range replayed under a policy document (or a proposal) by the decision
// function agents use, compared with what the hosts did.
import { HsError } from '../../../lib/errors.js';
import { MAX_POLICY_BYTES } from '../../../lib/policy/index.js';
import { BACKTEST_MAX_EVENTS } from '../../tuning/service.js';
import type { ApiContext } from '../context.js';
import { timeParam } from '../params.js';
import { json, jsonBody, type Route } from '../router.js';

/** A policy (at most 1 MiB) inside JSON, where escaping can double its size. */
export const BACKTEST_BODY_LIMIT = 2 * MAX_POLICY_BYTES + 4096;

interface BacktestBody {
  policy?: unknown;
  proposal?: unknown;
  since?: unknown;
  until?: unknown;
  maxEvents?: unknown;
}

function time(v: unknown, name: string, now: number): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' && typeof v !== 'number') throw new HsError('HS_CONFIG', `${name}: expected epoch ms, an ISO 8601 time or a duration like 7d`);
  return timeParam(String(v), name, now);
}

export function backtestRoutes(ctx: ApiContext): Route[] {
  return [
    {
      method: 'POST',
      pattern: '/api/v1/backtest',
      auth: 'admin',
      bodyLimit: BACKTEST_BODY_LIMIT,
      handler: async (req) => {
        const b = jsonBody<BacktestBody>(req);
        if (b.policy !== undefined && typeof b.policy !== 'string') throw new HsError('HS_CONFIG', '"policy" must be a policy document\'s YAML text');
        if (b.proposal !== undefined && !(typeof b.proposal === 'number' && Number.isSafeInteger(b.proposal) && b.proposal > 0)) throw new HsError('HS_CONFIG', '"proposal" must be a proposal id');
        if (b.maxEvents !== undefined && !(typeof b.maxEvents === 'number' && Number.isSafeInteger(b.maxEvents) && b.maxEvents >= 0 && b.maxEvents <= BACKTEST_MAX_EVENTS)) {
          throw new HsError('HS_CONFIG', `"maxEvents" must be an integer from 0 to ${BACKTEST_MAX_EVENTS}`);
        }
        const now = ctx.clock.now();
        const res = await ctx.tuning.backtest({
          ...(typeof b.policy === 'string' ? { policy: b.policy } : {}),
          ...(typeof b.proposal === 'number' ? { proposal: b.proposal } : {}),
          since: time(b.since, 'since', now),
          until: time(b.until, 'until', now),
          ...(typeof b.maxEvents === 'number' ? { maxEvents: b.maxEvents } : {}),
        });
        return json(200, res);
      },
    },
  ];
}
