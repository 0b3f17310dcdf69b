// /api/v1/plans: what a baseline version would change on every targeted host, asked of the agents, changing nothing.
import { HsError } from '../../../lib/errors.js';
import { planNotFound } from '../../plans.js';
import type { ApiContext } from '../context.js';
import { durationParam, intParam, requiredInt } from '../params.js';
import { json, jsonBody, type Route } from '../router.js';

export function planRoutes(ctx: ApiContext): Route[] {
  return [
    {
      method: 'POST',
      pattern: '/api/v1/plans',
      auth: 'admin',
      handler: async (req) => {
        const b = jsonBody<{ baseline?: unknown; version?: unknown; timeout?: unknown }>(req);
        if (typeof b.baseline !== 'string') throw new HsError('HS_CONFIG', '"baseline" (a name) is required');
        if (typeof b.version !== 'number' || !Number.isInteger(b.version)) throw new HsError('HS_CONFIG', '"version" (an integer) is required');
        const p = await ctx.plans.create(b.baseline, b.version, durationParam(b.timeout, 'timeout'));
        return json(201, { id: p.id, baseline: p.baseline, version: p.version, createdAt: p.createdAt, state: p.state, ...p.result });
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/plans',
      auth: 'admin',
      handler: async (req) => {
        const rows = await ctx.store.listPlans(intParam(req.query.get('limit'), 'limit') ?? 100);
        return json(200, rows.map((p) => ({ id: p.id, baseline: p.baseline, version: p.version, createdAt: p.createdAt, state: p.state, summary: p.result.summary ?? null })));
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/plans/:id',
      auth: 'admin',
      handler: async (req) => {
        const id = requiredInt(req.params.id, 'id');
        const p = await ctx.store.getPlan(id);
        if (!p) throw planNotFound(id);
        return json(200, { id: p.id, baseline: p.baseline, version: p.version, createdAt: p.createdAt, state: p.state, ...p.result });
      },
    },
  ];
}
