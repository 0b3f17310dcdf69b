// /api/v1/rollouts: staged rollouts in waves with health gates (or all at once), their progress per wave and host, and the
// operator's pause, resume, abort and rollback.
import { HsError } from '../../../lib/errors.js';
import { parseStrategy } from '../../rollouts/waves.js';
import type { OperatorAction } from '../../rollouts/engine.js';
import type { ApiContext } from '../context.js';
import { requiredInt } from '../params.js';
import { json, jsonBody, type Route } from '../router.js';

const ACTIONS: OperatorAction[] = ['pause', 'resume', 'abort', 'rollback'];

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
        const b = jsonBody<{ baseline?: unknown; version?: unknown; strategy?: unknown; supersede?: unknown; by?: unknown }>(req);
        if (typeof b.baseline !== 'string') throw new HsError('HS_CONFIG', '"baseline" (a name) is required');
        if (typeof b.version !== 'number' || !Number.isInteger(b.version)) throw new HsError('HS_CONFIG', '"version" (an integer) is required');
        if (b.supersede !== undefined && typeof b.supersede !== 'boolean') throw new HsError('HS_CONFIG', '"supersede" must be true or false');
        const { kind, spec } = parseStrategy(b.strategy);
        const r = await ctx.rollouts.start({
          baseline: b.baseline,
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
      handler: async () => json(200, (await ctx.store.listRollouts()).map(({ signed: _s, ...r }) => r)),
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
