// /api/v1/escalations: what agents handed to a human, with who made the drift and, for a fight, the opponent; and the
// operator's decision (approve: repair once; reject: a recorded exception).
import { HsError } from '../../../lib/errors.js';
import { actorLabelOf, actorOf } from '../../escalations.js';
import type { EscalationRecord, EscalationStatus } from '../../store/types.js';
import { agentJson } from '../body.js';
import type { ApiContext } from '../context.js';
import { durationParam, intParam, requiredInt, timeParam } from '../params.js';
import { json, jsonBody, type ApiRequest, type Route } from '../router.js';

const STATUSES: readonly EscalationStatus[] = ['open', 'approved', 'rejected', 'resolved'];

export function escalationView(e: EscalationRecord): Record<string, unknown> {
  const { decisionPayload: _p, decisionSignature: _s, ...rest } = e;
  return {
    ...rest,
    observed: agentJson(e.observed),
    desired: agentJson(e.desired),
    // The agent's own record of who made the drift and how it decided it; `actorLabel` names the actor for people.
    actor: actorOf(e.actor),
    actorLabel: actorLabelOf(e.actor),
    decision: agentJson(e.decision),
  };
}

interface DecisionBody {
  reason?: unknown;
  /** reject: a duration (`7d`) or ... */
  expiresIn?: unknown;
  /** ... an absolute time (epoch ms or ISO 8601). */
  expiresAt?: unknown;
  by?: unknown;
}

function decidedBy(b: DecisionBody): string {
  return typeof b.by === 'string' && b.by !== '' ? b.by : 'operator';
}

export function escalationRoutes(ctx: ApiContext): Route[] {
  const decide = (action: 'approve' | 'reject') => async (req: ApiRequest) => {
    const id = requiredInt(req.params.id, 'id');
    const b = jsonBody<DecisionBody>(req);
    const reason = typeof b.reason === 'string' ? b.reason : '';
    if (action === 'reject' && reason.trim() === '') throw new HsError('HS_CONFIG', 'a rejection needs a "reason"');
    const now = ctx.clock.now();
    const within = durationParam(b.expiresIn, 'expiresIn');
    const expiresAt = within !== undefined ? now + within : timeParam(b.expiresAt === undefined ? undefined : String(b.expiresAt), 'expiresAt', now);
    const rec = await ctx.escalations.decide(id, { action, reason, expiresAt, by: decidedBy(b) });
    return json(200, escalationView(rec));
  };
  return [
    {
      method: 'GET',
      pattern: '/api/v1/escalations',
      auth: 'admin',
      handler: async (req) => {
        const status = req.query.get('status') ?? undefined;
        if (status !== undefined && !STATUSES.includes(status as EscalationStatus)) throw new HsError('HS_CONFIG', `status must be one of ${STATUSES.join(', ')}`);
        const rows = await ctx.store.listEscalations({
          status: status as EscalationStatus | undefined,
          agent: req.query.get('agent') ?? undefined,
          limit: Math.min(intParam(req.query.get('limit'), 'limit') ?? 1000, 10_000),
        });
        return json(200, rows.map(escalationView));
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/escalations/:id',
      auth: 'admin',
      handler: async (req) => json(200, escalationView(await ctx.escalations.get(requiredInt(req.params.id, 'id')))),
    },
    { method: 'POST', pattern: '/api/v1/escalations/:id/approve', auth: 'admin', handler: decide('approve') },
    { method: 'POST', pattern: '/api/v1/escalations/:id/reject', auth: 'admin', handler: decide('reject') },
  ];
}
