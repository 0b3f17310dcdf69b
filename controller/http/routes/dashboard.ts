// `/`: the dashboard page (static; it calls the API with the operator token).
import { DASHBOARD_HTML } from '../../dashboard/page.js';
import type { Route } from '../router.js';

export function dashboardRoutes(): Route[] {
  return [{ method: 'GET', pattern: '/', auth: 'none', handler: async () => ({ status: 200, headers: { 'content-type': 'text/html; charset=utf-8' }, body: DASHBOARD_HTML }) }];
}
