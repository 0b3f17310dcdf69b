// /api/v1/rollouts: make a version the one selected agents enforce (all at once for now) and follow who acknowledged it.
import { HsError } from '../../../lib/errors.js';
import { selectorMatches } from '../../../lib/labels.js';
import type { RolloutRecord } from '../../store/types.js';
import type { ApiContext } from '../context.js';
import { requiredInt } from '../params.js';
import { json, jsonBody, type Route } from '../router.js';

export type RolloutState = 'in_progress' | 'complete' | 'superseded';

export async function rolloutStatus(ctx: ApiContext, r: RolloutRecord): Promise<Record<string, unknown>> {
  await ctx.gateway.flushAcks();
  const v = await ctx.store.getBaselineVersion(r.baseline, r.version);
  const agents = (await ctx.store.listAgents()).filter((a) => a.revokedAt === null && selectorMatches(v?.selector ?? undefined, a.labels));
  const acks = new Map<string, { version: number; state: string }[]>();
  for (const row of await ctx.store.listAgentBaselines()) {
    if (row.name === r.baseline) acks.set(row.agentId, [...(acks.get(row.agentId) ?? []), { version: row.version, state: row.state }]);
  }
  let acknowledged = 0;
  let rejected = 0;
  const pending: string[] = [];
  for (const a of agents) {
    const rows = acks.get(a.id) ?? [];
    if (rows.some((x) => x.state === 'enforcing' && x.version === r.version)) acknowledged++;
    else if (rows.some((x) => x.state === 'rejected' && x.version === r.version)) rejected++;
    else pending.push(a.id);
  }
  const current = ctx.baselines.target(r.baseline);
  const state: RolloutState = current?.rolloutId !== r.id ? 'superseded' : pending.length === 0 && rejected === 0 ? 'complete' : 'in_progress';
  return { ...r, state, targeted: agents.length, acknowledged, rejected, pending: pending.length, pendingAgents: pending.slice(0, 100) };
}

export function rolloutRoutes(ctx: ApiContext): Route[] {
  return [
    {
      method: 'POST',
      pattern: '/api/v1/rollouts',
      auth: 'admin',
      handler: async (req) => {
        const b = jsonBody<{ baseline?: unknown; version?: unknown; strategy?: unknown }>(req);
        if (typeof b.baseline !== 'string') throw new HsError('HS_CONFIG', '"baseline" (a name) is required');
        if (typeof b.version !== 'number' || !Number.isInteger(b.version)) throw new HsError('HS_CONFIG', '"version" (an integer) is required');
        if (b.strategy !== undefined && b.strategy !== 'all-at-once') throw new HsError('HS_CONFIG', 'the only strategy so far is "all-at-once"');
        const r = await ctx.baselines.rollout(b.baseline, b.version);
        return json(201, await rolloutStatus(ctx, r));
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/rollouts',
      auth: 'admin',
      handler: async () => json(200, await ctx.store.listRollouts()),
    },
    {
      method: 'GET',
      pattern: '/api/v1/rollouts/:id',
      auth: 'admin',
      handler: async (req) => {
        const id = requiredInt(req.params.id, 'id');
        const r = await ctx.store.getRollout(id);
        if (!r) throw new HsError('HS_NOT_FOUND', `no rollout ${id}`);
        return json(200, await rolloutStatus(ctx, r));
      },
    },
  ];
}
