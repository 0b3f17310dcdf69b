// /api/v1/proposals: policy changes the history argues for, each with its rationale, evidence, confidence and backtest;
// refreshed on request, accepted (a new version of the tuning policy, rolled out), rejected, or reverted.
import { HsError } from '../../../lib/errors.js';
import type { ProposalRecord, ProposalState } from '../../store/tuning.js';
import type { ApiContext } from '../context.js';
import { requiredInt } from '../params.js';
import { json, jsonBody, type ApiRequest, type Route } from '../router.js';

const STATES: readonly ProposalState[] = ['open', 'accepted', 'rejected', 'reverted', 'withdrawn'];

/** A proposal as the API shows it: the record without its dedup key. */
export function proposalView(p: ProposalRecord): Record<string, unknown> {
  const { key: _k, rule, window, ...rest } = p;
  return { ...rest, change: { rule, window } };
}

interface DecisionBody {
  reason?: unknown;
  by?: unknown;
}

/** Who decided, for the audit: `autotune` is the controller's own name and no operator's. */
function decider(b: DecisionBody): string {
  if (b.by === undefined || b.by === '') return 'operator';
  if (typeof b.by !== 'string' || b.by.length > 200) throw new HsError('HS_CONFIG', '"by" must be a name of at most 200 characters');
  if (b.by === 'autotune') throw new HsError('HS_CONFIG', '"by": autotune names automatic changes only; give your own name');
  return b.by;
}

function reasonOf(b: DecisionBody): string {
  if (b.reason === undefined) return '';
  if (typeof b.reason !== 'string' || b.reason.length > 4096) throw new HsError('HS_CONFIG', '"reason" must be text of at most 4096 characters');
  return b.reason;
}

export function proposalRoutes(ctx: ApiContext): Route[] {
  const decide = (action: 'accept' | 'reject' | 'revert') => async (req: ApiRequest) => {
    const id = requiredInt(req.params.id, 'id');
    const b = jsonBody<DecisionBody>(req);
    const by = decider(b);
    const reason = reasonOf(b);
    const p = action === 'accept' ? await ctx.tuning.accept(id, by, reason) : action === 'reject' ? await ctx.tuning.reject(id, by, reason) : await ctx.tuning.revert(id, by, reason);
    return json(200, proposalView(p));
  };
  return [
    {
      method: 'GET',
      pattern: '/api/v1/proposals',
      auth: 'admin',
      handler: async (req) => {
        const state = req.query.get('state') ?? undefined;
        if (state !== undefined && !STATES.includes(state as ProposalState)) throw new HsError('HS_CONFIG', `state must be one of ${STATES.join(', ')}`);
        return json(200, (await ctx.tuning.list(state as ProposalState | undefined)).map(proposalView));
      },
    },
    {
      method: 'POST',
      pattern: '/api/v1/proposals/refresh',
      auth: 'admin',
      handler: async (req) => {
        const by = decider(jsonBody<DecisionBody>(req));
        return json(200, (await ctx.tuning.refresh(by)).map(proposalView));
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/proposals/:id',
      auth: 'admin',
      handler: async (req) => json(200, proposalView(await ctx.tuning.get(requiredInt(req.params.id, 'id')))),
    },
    { method: 'POST', pattern: '/api/v1/proposals/:id/accept', auth: 'admin', handler: decide('accept') },
    { method: 'POST', pattern: '/api/v1/proposals/:id/reject', auth: 'admin', handler: decide('reject') },
    { method: 'POST', pattern: '/api/v1/proposals/:id/revert', auth: 'admin', handler: decide('revert') },
  ];
}
