// /api/v1/rollouts: staged rollouts of a baseline or a policy version in waves with health gates (or all at once), their
// progress per wave and host, what the new version escalated, and the operator's pause, resume, abort and rollback.
import { HsError } from '../../../lib/errors.js';
import { parseStrategy } from '../../rollouts/waves.js';
import type { OperatorAction } from '../../rollouts/engine.js';
import type { RolloutRecord } from '../../store/types.js';
import type { ApiContext } from '../context.js';
import { requiredInt } from '../params.js';
import { json, jsonBody, type Route } from '../router.js';

const ACTIONS: OperatorAction[] = ['pause', 'resume', 'abort', 'rollback'];

/** A rollout as listed: named for what it rolls out, {"baseline": NAME} or {"policy": NAME}; waves counted from 1. */
function listed(r: RolloutRecord): Record<string, unknown> {
  const { signed: _s, baseline: name, ...rest } = r;
  return { ...rest, [r.document]: name, currentWave: r.currentWave + 1 };
}

export function rolloutRoutes(ctx: ApiContext): Route[] {
  const status = async (id: number, hosts = true): Promise<Record<string, unknown>> => {
    const s = await ctx.rollouts.status(id, { hosts });
    if (!s) throw new HsError('HS_NOT_FOUND', `no rollout ${id}`);
    return s;
  };
  return [
    {
      method: 'POST',
      pattern: '/api/v1/rollouts',
      auth: 'admin',
      handler: async (req) => {
        const b = jsonBody<{ baseline?: unknown; policy?: unknown; version?: unknown; strategy?: unknown; supersede?: unknown; by?: unknown }>(req);
        if ((b.baseline === undefined) === (b.policy === undefined)) throw new HsError('HS_CONFIG', 'either "baseline" or "policy" (a name) is required, not both');
        const document = b.policy !== undefined ? 'policy' : 'baseline';
        const name = b.policy ?? b.baseline;
        if (typeof name !== 'string') throw new HsError('HS_CONFIG', `"${document}" must be a name`);
        if (typeof b.version !== 'number' || !Number.isInteger(b.version)) throw new HsError('HS_CONFIG', '"version" (an integer) is required');
        if (b.supersede !== undefined && typeof b.supersede !== 'boolean') throw new HsError('HS_CONFIG', '"supersede" must be true or false');
        const { kind, spec } = parseStrategy(b.strategy);
        const r = await ctx.rollouts.start({
          document,
          baseline: name,
          version: b.version,
          kind,
          spec,
          supersede: b.supersede === true,
          ...(typeof b.by === 'string' ? { by: b.by } : {}),
        });
        return json(201, await status(r.id));
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/rollouts',
      auth: 'admin',
      handler: async () => json(200, (await ctx.store.listRollouts()).map(listed)),
    },
    {
      method: 'GET',
      pattern: '/api/v1/rollouts/:id',
      auth: 'admin',
      handler: async (req) => json(200, await status(requiredInt(req.params.id, 'id'), req.query.get('hosts') !== 'false')),
    },
    {
      method: 'POST',
      pattern: '/api/v1/rollouts/:id/:action',
      auth: 'admin',
      handler: async (req) => {
        const id = requiredInt(req.params.id, 'id');
        const action = ACTIONS.find((a) => a === req.params.action);
        if (!action) throw new HsError('HS_NOT_FOUND', `no rollout action ${String(req.params.action)} (${ACTIONS.join(', ')})`);
        const b = req.body.length > 0 ? jsonBody<{ by?: unknown }>(req) : {};
        await ctx.rollouts.act(id, action, typeof b.by === 'string' ? b.by : undefined);
        return json(200, await status(id));
      },
    },
  ];
}
