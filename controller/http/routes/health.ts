// /healthz (liveness) and /metrics (Prometheus text). Both open, as scrapers and probes usually hold no token.
import type { ApiContext } from '../context.js';
import type { Route } from '../router.js';

export function healthRoutes(ctx: ApiContext): Route[] {
  return [
    {
      method: 'GET',
      pattern: '/healthz',
      auth: 'none',
      handler: async () => ({ status: 200, body: { ok: true, agentsConnected: ctx.gateway.connectedCount() } }),
    },
    {
      method: 'GET',
      pattern: '/metrics',
      auth: 'none',
      handler: async () => ({ status: 200, headers: { 'content-type': ctx.metrics.registry.contentType }, body: await ctx.metrics.registry.metrics() }),
    },
  ];
}
