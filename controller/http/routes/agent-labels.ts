// /api/v1/agents/:id/labels: the labels an operator sets on one agent. They win over the join token's and the agent's own
// request, and a connected agent is re-selected by them at once (baselines it no longer matches are removed, signed).
import { HsError } from '../../../lib/errors.js';
import type { Labels } from '../../../lib/labels.js';
import type { ApiContext } from '../context.js';
import { json, jsonBody, type Route } from '../router.js';

export function agentLabelRoutes(ctx: ApiContext): Route[] {
  return [
    {
      method: 'GET',
      pattern: '/api/v1/agents/:id/labels',
      auth: 'admin',
      handler: async (req) => {
        const a = await ctx.store.getAgent(req.params.id ?? '');
        if (!a) throw new HsError('HS_NOT_FOUND', `no agent ${req.params.id ?? ''}`);
        return json(200, { id: a.id, labels: a.labels, sources: { token: a.tokenLabels, requested: a.requestedLabels, operator: a.operatorLabels }, allowLabels: a.allowLabels });
      },
    },
    {
      method: 'PUT',
      pattern: '/api/v1/agents/:id/labels',
      auth: 'admin',
      handler: async (req) => {
        const id = req.params.id ?? '';
        const b = jsonBody<{ labels?: unknown }>(req);
        if (typeof b.labels !== 'object' || b.labels === null || Array.isArray(b.labels) || !Object.values(b.labels).every((v) => typeof v === 'string')) {
          throw new HsError('HS_CONFIG', '"labels" must be an object of string values, e.g. {"role": "web"}; {} clears them');
        }
        const operator: Labels = {};
        for (const [k, v] of Object.entries(b.labels as Record<string, string>)) operator[k] = v;
        const { agent, labels } = await ctx.enrollment.setOperatorLabels(id, operator);
        ctx.gateway.relabel(id, labels);
        return json(200, { id, labels, sources: { token: agent.tokenLabels, requested: agent.requestedLabels, operator: agent.operatorLabels }, allowLabels: agent.allowLabels });
      },
    },
  ];
}
