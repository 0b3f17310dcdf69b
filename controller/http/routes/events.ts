// /api/v1/events: the fleet's audit events as persisted, filtered by agent, resource(s), kind and time, paged by id.
import { HsError } from '../../../lib/errors.js';
import { agentJson } from '../body.js';
import type { ApiContext } from '../context.js';
import { intParam, timeParam } from '../params.js';
import { json, type Route } from '../router.js';

/** The changed field kinds an event's JSON text lists; empty when unknown (or not a list of names). */
function changeList(text: string | null): string[] {
  const v = agentJson(text);
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** Resource ids one query may name (`resource=A&resource=B`: events of either). */
const MAX_RESOURCES = 16;

export function eventRoutes(ctx: ApiContext): Route[] {
  return [
    {
      method: 'GET',
      pattern: '/api/v1/events',
      auth: 'admin',
      handler: async (req) => {
        const q = req.query;
        const now = ctx.clock.now();
        const order = q.get('order') ?? 'asc';
        if (order !== 'asc' && order !== 'desc') throw new HsError('HS_CONFIG', 'order must be asc or desc');
        const resources = q.getAll('resource');
        if (resources.length > MAX_RESOURCES) throw new HsError('HS_CONFIG', `resource: at most ${MAX_RESOURCES} at once`);
        const events = await ctx.store.listEvents({
          agent: q.get('agent') ?? undefined,
          resource: resources.length > 0 ? resources : undefined,
          kind: q.get('kind') ?? undefined,
          since: timeParam(q.get('since'), 'since', now),
          until: timeParam(q.get('until'), 'until', now),
          after: intParam(q.get('after'), 'after'),
          limit: intParam(q.get('limit'), 'limit'),
          order,
        });
        return json(
          200,
          events.map((e) => ({ ...e, observed: agentJson(e.observed), desired: agentJson(e.desired), actor: agentJson(e.actor), decision: agentJson(e.decision), changes: changeList(e.changes) })),
        );
      },
    },
  ];
}
