// /api/v1/events: the fleet's audit events as persisted, filtered by agent, resource, kind and time, paged by id.
import type { ApiContext } from '../context.js';
import { intParam, timeParam } from '../params.js';
import { json, type Route } from '../router.js';

export function eventRoutes(ctx: ApiContext): Route[] {
  return [
    {
      method: 'GET',
      pattern: '/api/v1/events',
      auth: 'admin',
      handler: async (req) => {
        const q = req.query;
        const now = ctx.clock.now();
        const events = await ctx.store.listEvents({
          agent: q.get('agent') ?? undefined,
          resource: q.get('resource') ?? undefined,
          kind: q.get('kind') ?? undefined,
          since: timeParam(q.get('since'), 'since', now),
          until: timeParam(q.get('until'), 'until', now),
          after: intParam(q.get('after'), 'after'),
          limit: intParam(q.get('limit'), 'limit'),
        });
        const parse = (s: string | null): unknown => (s === null ? null : (JSON.parse(s) as unknown));
        return json(200, events.map((e) => ({ ...e, observed: parse(e.observed), desired: parse(e.desired) })));
      },
    },
  ];
}
