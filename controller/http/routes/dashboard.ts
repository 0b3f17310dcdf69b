// `/`: the dashboard page, its script and its style (static; the page logs in with the operator token, see session.ts).
import { DASHBOARD_HTML } from '../../dashboard/page.js';
import { DASHBOARD_JS } from '../../dashboard/script.js';
import { DASHBOARD_CSS } from '../../dashboard/style.js';
import type { Route } from '../router.js';

const asset = (pattern: string, type: string, body: string): Route => ({
  method: 'GET',
  pattern,
  auth: 'none',
  handler: async () => ({ status: 200, headers: { 'content-type': type }, body }),
});

export function dashboardRoutes(): Route[] {
  return [
    asset('/', 'text/html; charset=utf-8', DASHBOARD_HTML),
    asset('/dashboard.js', 'text/javascript; charset=utf-8', DASHBOARD_JS),
    asset('/dashboard.css', 'text/css; charset=utf-8', DASHBOARD_CSS),
  ];
}
