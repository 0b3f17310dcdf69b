// /api/v1/agents: the fleet as the controller sees it (enrollment, labels, facts, connection, acknowledged baseline and
// policy versions), and revocation.
import { HsError } from '../../../lib/errors.js';
import type { AgentBaselineRecord, AgentRecord } from '../../store/types.js';
import type { ApiContext } from '../context.js';
import { json, type Route } from '../router.js';

function view(ctx: ApiContext, a: AgentRecord, baselines: AgentBaselineRecord[], policies: AgentBaselineRecord[]): Record<string, unknown> {
  const s = ctx.gateway.session(a.id);
  return {
    id: a.id,
    labels: a.labels,
    facts: a.facts,
    connected: s !== undefined,
    connectedAt: s?.connectedAt ?? null,
    remote: s?.remote ?? null,
    lastSeen: s ? s.seen.lastSeen : a.lastSeen,
    enrolledAt: a.enrolledAt,
    revokedAt: a.revokedAt,
    protocolVersion: a.protocolVersion,
    agentVersion: a.agentVersion,
    outboxPending: s ? s.seen.outboxPending : a.outboxPending,
    outboxDropped: s ? s.seen.outboxDropped : a.outboxDropped,
    enforcementPaused: s ? s.seen.enforcementPaused : a.enforcementPaused,
    lastEventSeq: a.lastEventSeq,
    lastError: s?.lastError ?? null,
    baselines: baselines.filter((b) => b.state === 'enforcing').map((b) => ({ name: b.name, version: b.version, sha256: b.sha256, at: b.at })),
    rejected: baselines.filter((b) => b.state === 'rejected').map((b) => ({ name: b.name, version: b.version, error: b.error, at: b.at })),
    policies: policies.filter((b) => b.state === 'enforcing').map((b) => ({ name: b.name, version: b.version, sha256: b.sha256, at: b.at })),
    policiesRejected: policies.filter((b) => b.state === 'rejected').map((b) => ({ name: b.name, version: b.version, error: b.error, at: b.at })),
  };
}

export function agentRoutes(ctx: ApiContext): Route[] {
  return [
    {
      method: 'GET',
      pattern: '/api/v1/agents',
      auth: 'admin',
      handler: async () => {
        await ctx.gateway.flushAcks();
        const byAgent = async (list: Promise<AgentBaselineRecord[]>): Promise<Map<string, AgentBaselineRecord[]>> => {
          const rows = new Map<string, AgentBaselineRecord[]>();
          for (const b of await list) rows.set(b.agentId, [...(rows.get(b.agentId) ?? []), b]);
          return rows;
        };
        const baselines = await byAgent(ctx.store.listAgentBaselines());
        const policies = await byAgent(ctx.store.listAgentPolicies());
        return json(200, (await ctx.store.listAgents()).map((a) => view(ctx, a, baselines.get(a.id) ?? [], policies.get(a.id) ?? [])));
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/agents/:id',
      auth: 'admin',
      handler: async (req) => {
        await ctx.gateway.flushAcks();
        const a = await ctx.store.getAgent(req.params.id ?? '');
        if (!a) throw new HsError('HS_NOT_FOUND', `no agent ${req.params.id ?? ''}`);
        return json(200, view(ctx, a, await ctx.store.listAgentBaselines(a.id), await ctx.store.listAgentPolicies(a.id)));
      },
    },
    {
      method: 'POST',
      pattern: '/api/v1/agents/:id/revoke',
      auth: 'admin',
      handler: async (req) => {
        const id = req.params.id ?? '';
        if (!(await ctx.store.getAgent(id))) throw new HsError('HS_NOT_FOUND', `no agent ${id}`);
        const revoked = await ctx.store.revokeAgent(id, ctx.clock.now());
        // A connected agent is cut off at once; its credential is refused from now on.
        ctx.gateway.session(id)?.fail(4401, new HsError('HS_AUTH', `agent ${id} is revoked`));
        return json(200, { id, revoked });
      },
    },
  ];
}
