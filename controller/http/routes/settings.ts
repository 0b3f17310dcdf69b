// /api/v1/settings/autotune: bounded autotuning on or off, its threshold and webhook, and how proposals are computed.
import { HsError } from '../../../lib/errors.js';
import type { ApiContext } from '../context.js';
import { json, jsonBody, type Route } from '../router.js';

export function settingsRoutes(ctx: ApiContext): Route[] {
  return [
    {
      method: 'GET',
      pattern: '/api/v1/settings/autotune',
      auth: 'admin',
      handler: async () => json(200, await ctx.tuning.settings()),
    },
    {
      method: 'PUT',
      pattern: '/api/v1/settings/autotune',
      auth: 'admin',
      handler: async (req) => {
        const { by, ...patch } = jsonBody<Record<string, unknown>>(req);
        if (by !== undefined && (typeof by !== 'string' || by === '' || by === 'autotune' || by.length > 200)) {
          throw new HsError('HS_CONFIG', '"by": give your own name (at most 200 characters)');
        }
        return json(200, await ctx.tuning.updateSettings(patch, typeof by === 'string' ? by : 'operator'));
      },
    },
  ];
}
