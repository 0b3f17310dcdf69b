// The HTTP app, built by a factory: routes, operator authentication, error mapping and metrics, served from a node
// request or from `inject()` with no socket at all (how the API tests run).
import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { HsError, errorMessage } from '../../lib/errors.js';
import type { ApiContext } from './context.js';
import { Router, statusOf, type ApiRequest, type ApiResponse } from './router.js';
import { agentLabelRoutes } from './routes/agent-labels.js';
import { agentRoutes } from './routes/agents.js';
import { baselineRoutes } from './routes/baselines.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { enrollmentTokenRoutes } from './routes/enrollment-tokens.js';
import { escalationRoutes } from './routes/escalations.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { planRoutes } from './routes/plans.js';
import { rolloutRoutes } from './routes/rollouts.js';

export const MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface InjectRequest {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: string | Buffer | object;
}

export interface InjectResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  text(): string;
  json<T = unknown>(): T;
}

export interface App {
  /** The node request listener. */
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Runs a request through the app without a socket. */
  inject(req: InjectRequest): Promise<InjectResponse>;
}

function tokenMatches(headers: IncomingHttpHeaders, expected: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(String(headers.authorization ?? ''));
  if (!m?.[1]) return false;
  const a = Buffer.from(m[1].trim());
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function createApp(ctx: ApiContext): App {
  const router = new Router().add(
    ...healthRoutes(ctx),
    ...dashboardRoutes(),
    ...baselineRoutes(ctx),
    ...rolloutRoutes(ctx),
    ...planRoutes(ctx),
    ...agentRoutes(ctx),
    ...agentLabelRoutes(ctx),
    ...eventRoutes(ctx),
    ...escalationRoutes(ctx),
    ...enrollmentTokenRoutes(ctx),
  );

  async function dispatch(method: string, url: string, headers: IncomingHttpHeaders, body: Buffer): Promise<{ res: ApiResponse; route: string }> {
    const u = new URL(url, 'http://controller');
    const found = router.match(method, u.pathname);
    if (!('route' in found)) {
      const res =
        found.allowed.length > 0
          ? { status: 405, headers: { allow: found.allowed.join(', ') }, body: { error: { code: 'HS_CONFIG', message: `${method} not allowed here`, retryable: false } } }
          : { status: 404, body: { error: { code: 'HS_NOT_FOUND', message: `no route ${u.pathname}`, retryable: false } } };
      return { res, route: 'unknown' };
    }
    const { route, params } = found;
    try {
      if (route.auth === 'admin' && !tokenMatches(headers, ctx.adminToken)) throw new HsError('HS_AUTH', 'missing or wrong operator token');
      const req: ApiRequest = { method, path: u.pathname, query: u.searchParams, headers, body, params };
      return { res: await route.handler(req), route: route.pattern };
    } catch (err) {
      const e = err instanceof HsError ? err : new HsError('HS_STORE', errorMessage(err), { cause: err, retryable: true });
      const status = statusOf(e);
      if (status >= 500) ctx.log.error({ err: errorMessage(err), method, path: u.pathname }, 'api request failed');
      return { res: { status, body: { error: e.toJSON() } }, route: route.pattern };
    }
  }

  function serialise(res: ApiResponse): { headers: Record<string, string>; body: Buffer } {
    const headers: Record<string, string> = { ...(res.headers ?? {}) };
    let body: Buffer;
    if (res.body === undefined) body = Buffer.alloc(0);
    else if (Buffer.isBuffer(res.body)) body = res.body;
    else if (typeof res.body === 'string') {
      body = Buffer.from(res.body);
      headers['content-type'] ??= 'text/plain; charset=utf-8';
    } else {
      body = Buffer.from(`${JSON.stringify(res.body, null, 1)}\n`);
      headers['content-type'] ??= 'application/json; charset=utf-8';
    }
    headers['content-length'] = String(body.length);
    return { headers, body };
  }

  async function run(method: string, url: string, headers: IncomingHttpHeaders, body: Buffer) {
    const { res, route } = await dispatch(method, url, headers, body);
    ctx.metrics.httpRequests.inc({ route, status: String(res.status) });
    return { status: res.status, ...serialise(res) };
  }

  return {
    handle(req, res) {
      const chunks: Buffer[] = [];
      let size = 0;
      let tooBig = false;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY_BYTES) tooBig = true;
        else chunks.push(c);
      });
      req.on('end', () => {
        if (tooBig) {
          const out = serialise({ status: 413, body: { error: { code: 'HS_CONFIG', message: `request body over ${MAX_BODY_BYTES} bytes`, retryable: false } } });
          res.writeHead(413, out.headers).end(out.body);
          return;
        }
        void run(req.method ?? 'GET', req.url ?? '/', req.headers, Buffer.concat(chunks)).then((out) => {
          res.writeHead(out.status, out.headers).end(out.body);
        });
      });
    },
    async inject(r) {
      const headers: IncomingHttpHeaders = {};
      for (const [k, v] of Object.entries(r.headers ?? {})) headers[k.toLowerCase()] = v;
      let body: Buffer;
      if (r.body === undefined) body = Buffer.alloc(0);
      else if (typeof r.body === 'string' || Buffer.isBuffer(r.body)) body = Buffer.from(r.body);
      else {
        body = Buffer.from(JSON.stringify(r.body));
        headers['content-type'] ??= 'application/json';
      }
      const out = await run(r.method.toUpperCase(), r.url, headers, body);
      return {
        status: out.status,
        headers: out.headers,
        body: out.body,
        text: () => out.body.toString('utf8'),
        json: <T>() => JSON.parse(out.body.toString('utf8')) as T,
      };
    },
  };
}
