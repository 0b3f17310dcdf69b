// /api/v1/outcomes: what the fleet's history says about each kind of drift, grouped by resource (and kind of change), by
// the rule that decided, or by who made the change, with the confidence that auto-repair is the right call.
import { HsError } from '../../../lib/errors.js';
import { GROUP_BY, type GroupBy } from '../../tuning/outcomes.js';
import type { ApiContext } from '../context.js';
import { durationParam, intParam, timeParam } from '../params.js';
import { json, type Route } from '../router.js';

export function outcomeRoutes(ctx: ApiContext): Route[] {
  return [
    {
      method: 'GET',
      pattern: '/api/v1/outcomes',
      auth: 'admin',
      handler: async (req) => {
        const q = req.query;
        const groupBy = q.get('groupBy') ?? 'resource';
        if (!GROUP_BY.includes(groupBy as GroupBy)) throw new HsError('HS_CONFIG', `groupBy must be one of ${GROUP_BY.join(', ')}`);
        const now = ctx.clock.now();
        const limit = Math.min(intParam(q.get('limit'), 'limit') ?? 1000, 10_000);
        const res = await ctx.tuning.outcomes({
          groupBy: groupBy as GroupBy,
          since: timeParam(q.get('since'), 'since', now),
          until: timeParam(q.get('until'), 'until', now),
          recurrenceWindowMs: durationParam(q.get('window') ?? undefined, 'window'),
        });
        const rows = res.rows as unknown[];
        return json(200, { ...res, rows: rows.slice(0, limit), truncated: rows.length > limit });
      },
    },
  ];
}
