// /api/v1/enrollment-tokens: expiring join tokens for new agents. The token text is shown once, at creation.
import { HsError } from '../../../lib/errors.js';
import { parseLabelAllowance, parseLabels } from '../../../lib/labels.js';
import type { ApiContext } from '../context.js';
import { durationParam } from '../params.js';
import { json, jsonBody, type Route } from '../router.js';

export function enrollmentTokenRoutes(ctx: ApiContext): Route[] {
  return [
    {
      method: 'POST',
      pattern: '/api/v1/enrollment-tokens',
      auth: 'admin',
      handler: async (req) => {
        const b = jsonBody<{ ttl?: unknown; maxUses?: unknown; labels?: unknown; allowLabels?: unknown; description?: unknown }>(req);
        if (b.maxUses !== undefined && b.maxUses !== null && (typeof b.maxUses !== 'number' || !Number.isInteger(b.maxUses) || b.maxUses < 1)) {
          throw new HsError('HS_CONFIG', '"maxUses" must be a positive integer');
        }
        let labels = {};
        if (typeof b.labels === 'string') labels = parseLabels(b.labels);
        else if (typeof b.labels === 'object' && b.labels !== null) labels = parseLabels(Object.entries(b.labels).map(([k, v]) => `${k}=${String(v)}`));
        if (b.allowLabels !== undefined && typeof b.allowLabels !== 'string' && !(Array.isArray(b.allowLabels) && b.allowLabels.every((x) => typeof x === 'string'))) {
          throw new HsError('HS_CONFIG', '"allowLabels" must be a list of key, key=value or key=pattern strings');
        }
        const allowLabels = parseLabelAllowance(b.allowLabels as string | string[] | undefined);
        const t = await ctx.enrollment.createToken({
          allowLabels,
          ttlMs: durationParam(b.ttl, 'ttl'),
          maxUses: typeof b.maxUses === 'number' ? b.maxUses : null,
          labels,
          description: typeof b.description === 'string' ? b.description : '',
        });
        return json(201, t);
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/enrollment-tokens',
      auth: 'admin',
      handler: async () => json(200, (await ctx.store.listJoinTokens()).map(({ secretHash: _h, ...t }) => t)),
    },
    {
      method: 'DELETE',
      pattern: '/api/v1/enrollment-tokens/:id',
      auth: 'admin',
      handler: async (req) => {
        if (!(await ctx.store.deleteJoinToken(req.params.id ?? ''))) throw new HsError('HS_NOT_FOUND', `no enrollment token ${req.params.id ?? ''}`);
        return json(200, { id: req.params.id, deleted: true });
      },
    },
  ];
}
