// /api/v1/session: the dashboard's login (the operator token exchanged for an HttpOnly session cookie and a CSRF token
// kept only in the page's memory), the current session's CSRF token after a reload, and logout.
import { HsError } from '../../../lib/errors.js';
import type { OperatorAuth } from '../auth.js';
import { json, jsonBody, type Route } from '../router.js';

export function sessionRoutes(auth: OperatorAuth): Route[] {
  return [
    {
      method: 'POST',
      pattern: '/api/v1/session',
      auth: 'none',
      bodyLimit: 1024,
      rateLimitPerMinute: 10,
      handler: async (req) => {
        const b = jsonBody<{ token?: unknown }>(req);
        if (typeof b.token !== 'string' || b.token === '') throw new HsError('HS_CONFIG', 'a login needs {"token": "<operator token>"}');
        const s = auth.login(b.token);
        if (!s) throw new HsError('HS_AUTH', 'wrong operator token');
        return { status: 201, headers: { 'set-cookie': s.cookie }, body: { csrf: s.csrf, expiresAt: s.expiresAt } };
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/session',
      auth: 'admin',
      handler: async (req) => {
        const s = auth.current(req.headers);
        // A bearer-token caller has no session: nothing to hand out.
        return json(200, s ? { csrf: s.csrf, expiresAt: s.expiresAt } : { csrf: null, expiresAt: null });
      },
    },
    {
      method: 'DELETE',
      pattern: '/api/v1/session',
      auth: 'admin',
      handler: async (req) => ({ status: 200, headers: { 'set-cookie': auth.logout(req.headers) }, body: { loggedOut: true } }),
    },
  ];
}
