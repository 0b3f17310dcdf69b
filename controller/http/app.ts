// The HTTP app, built by a factory on fastify: URL parsing, routing, body limits, operator authentication before any body
// is read, security headers, the error vocabulary and metrics. Served on server.ts's socket, or through `inject()` with
// no socket at all. Any throw inside a request becomes that request's answer, never the process's end.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify';
import { HsError, errorMessage } from '../../lib/errors.js';
import { OperatorAuth } from './auth.js';
import { dataMap } from './body.js';
import type { ApiContext } from './context.js';
import { DEFAULT_ADMIN_BODY_LIMIT, statusOf, type ApiRequest, type ApiResponse, type Route } from './router.js';
import { agentLabelRoutes } from './routes/agent-labels.js';
import { agentRoutes } from './routes/agents.js';
import { backtestRoutes } from './routes/backtest.js';
import { baselineRoutes } from './routes/baselines.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { enrollmentTokenRoutes } from './routes/enrollment-tokens.js';
import { escalationRoutes } from './routes/escalations.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { outcomeRoutes } from './routes/outcomes.js';
import { planRoutes } from './routes/plans.js';
import { policyRoutes } from './routes/policies.js';
import { proposalRoutes } from './routes/proposals.js';
import { rolloutRoutes } from './routes/rollouts.js';
import { sessionRoutes } from './routes/session.js';
import { settingsRoutes } from './routes/settings.js';

export interface InjectRequest {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: string | Buffer | object;
}

export interface InjectResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text(): string;
  json<T = unknown>(): T;
}

export interface AppOptions {
  /** Served over TLS: HSTS and Secure cookies. */
  tls?: boolean;
  /** Builds the node server the app is served on (server.ts: TLS, timeouts, connection limits). */
  serverFactory?: (handler: (req: IncomingMessage, res: ServerResponse) => void) => Server;
  /** Told of every connection whose request carried the operator's credentials (server.ts lifts its pre-auth limits). */
  onAuthenticated?: (socket: Socket) => void;
}

export interface App {
  /** Runs a request through the app without a socket. */
  inject(req: InjectRequest): Promise<InjectResponse>;
  /** Loads plugins and routes; call before the server listens. */
  ready(): Promise<void>;
  /** The node server the app answers on (the one `serverFactory` built, or fastify's own when none was given). */
  readonly server: Server;
  close(): Promise<void>;
}

/** What every route carries for the edge's hooks. */
interface EdgeConfig {
  auth?: 'admin' | 'none';
  bodyLimit?: number;
  /** Set on the stand-in routes that answer 405 for the methods a path does not have. */
  allow?: string;
}

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;

function errorBody(e: HsError): string {
  return `${JSON.stringify({ error: e.toJSON() }, null, 1)}\n`;
}

/** True when the request announces a body (its bytes may still be on the way). */
function hasBody(req: FastifyRequest): boolean {
  const len = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (len !== undefined && len !== '0');
}

/**
 * Answers with an error. A request whose body was not (completely) read is answered with `Connection: close`: after an
 * answer no timeout covers the rest of a body, so the socket would otherwise stay with whoever keeps it streaming.
 */
function refuse(reply: FastifyReply, e: HsError, close: boolean, status = statusOf(e)): FastifyReply {
  if (close || !reply.request.raw.complete) reply.header('connection', 'close');
  return reply.code(status).type('application/json; charset=utf-8').send(errorBody(e));
}

/** Framework and parser errors in the product's vocabulary. */
function fromFramework(err: FastifyError, req: FastifyRequest): HsError {
  if (err instanceof HsError) return err;
  const status = err.statusCode ?? 500;
  if (status === 413) return new HsError('HS_TOO_LARGE', `request body over ${req.routeOptions.bodyLimit ?? 0} bytes for ${req.method} ${req.routeOptions.url ?? ''}`);
  if (status === 429) return new HsError('HS_RATE_LIMITED', 'too many requests', { retryable: true });
  if (status >= 400 && status < 500) return new HsError('HS_CONFIG', err.message);
  return new HsError('HS_STORE', errorMessage(err), { cause: err, retryable: true });
}

function send(reply: FastifyReply, res: ApiResponse): FastifyReply {
  reply.code(res.status);
  for (const [k, v] of Object.entries(res.headers ?? {})) reply.header(k, v);
  if (res.body === undefined) return reply.send();
  if (Buffer.isBuffer(res.body)) return reply.send(res.body);
  if (typeof res.body === 'string') {
    if (!reply.hasHeader('content-type')) reply.type('text/plain; charset=utf-8');
    return reply.send(res.body);
  }
  return reply.type('application/json; charset=utf-8').send(`${JSON.stringify(res.body, null, 1)}\n`);
}

function apiRequest(req: FastifyRequest): ApiRequest {
  const raw = req.raw.url ?? '/';
  const q = raw.indexOf('?');
  return {
    method: req.method,
    path: q >= 0 ? raw.slice(0, q) : raw,
    // URLSearchParams never throws: malformed escapes stay as sent.
    query: new URLSearchParams(q >= 0 ? raw.slice(q + 1) : ''),
    headers: req.headers,
    body: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
    params: dataMap(Object.entries((req.params ?? {}) as Record<string, string>)),
  };
}

export function createApp(ctx: ApiContext, opts: AppOptions = {}): App {
  const auth = new OperatorAuth(ctx.adminToken, ctx.clock, opts.tls === true);
  const routes: Route[] = [
    ...healthRoutes(ctx),
    ...dashboardRoutes(),
    ...sessionRoutes(auth),
    ...baselineRoutes(ctx),
    ...policyRoutes(ctx),
    ...rolloutRoutes(ctx),
    ...planRoutes(ctx),
    ...agentRoutes(ctx),
    ...agentLabelRoutes(ctx),
    ...eventRoutes(ctx),
    ...escalationRoutes(ctx),
    ...enrollmentTokenRoutes(ctx),
    ...outcomeRoutes(ctx),
    ...proposalRoutes(ctx),
    ...backtestRoutes(ctx),
    ...settingsRoutes(ctx),
  ];

  const app = Fastify({
    logger: false,
    bodyLimit: DEFAULT_ADMIN_BODY_LIMIT,
    requestIdHeader: false,
    trustProxy: false,
    return503OnClosing: true,
    exposeHeadRoutes: true,
    // Route parameters are ids and names; anything longer is a 404 before a handler sees it.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 256, querystringParser: () => ({}) },
    ...(opts.serverFactory ? { serverFactory: opts.serverFactory } : {}),
    // A path with malformed percent-encoding (`/api/v1/agents/%E0%A4%A`) is the client's error.
    frameworkErrors: (err, _req, reply) => {
      void refuse(reply, new HsError('HS_CONFIG', `malformed request: ${err.message}`), true);
    },
    clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket) {
      // Bad request lines, oversized headers and timed-out requests, before anything was routed.
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const [status, code, message] =
        err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'HS_CONFIG', 'request not received in time']
          : err.code === 'HPE_HEADER_OVERFLOW'
            ? [431, 'HS_TOO_LARGE', 'request headers too large']
            : [400, 'HS_CONFIG', 'malformed HTTP request'];
      ctx.metrics.httpClientErrors.inc({ status: String(status) });
      const body = errorBody(new HsError(code as 'HS_CONFIG', message));
      if (socket.writable) socket.write(`HTTP/1.1 ${status} ${status === 408 ? 'Request Timeout' : status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      socket.destroy();
    },
  });

  app.register(helmet, {
    // The dashboard loads its script and style from its own paths: no inline code, no framing, no foreign origins.
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'"],
        connectSrc: ["'self'"],
        baseUri: ["'none'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    hsts: opts.tls ? { maxAge: 31_536_000, includeSubDomains: false } : false,
  });
  app.register(rateLimit, {
    global: false,
    // Bounded memory whatever the number of addresses.
    cache: 10_000,
    errorResponseBuilder: (_req, c) => Object.assign(new HsError('HS_RATE_LIMITED', `too many attempts; retry in ${c.after}`, { retryable: true }), { statusCode: 429 }),
  });

  app.after(() => {
    app.removeAllContentTypeParsers();
    // Every body is handed to the route as bytes (within its limit); routes decide how to read them (router.ts jsonBody).
    app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

    // Before the body is read: unknown paths, wrong methods, bodies where none is taken, and the operator check.
    app.addHook('onRequest', async (req, reply) => {
      reply.header('cache-control', 'no-store');
      const cfg = req.routeOptions.config as EdgeConfig;
      if (req.is404) return refuse(reply, new HsError('HS_NOT_FOUND', `no route ${req.method} ${apiRequest(req).path}`), hasBody(req));
      if (cfg.allow !== undefined) {
        reply.header('allow', cfg.allow);
        return refuse(reply, new HsError('HS_CONFIG', `${req.method} not allowed here (${cfg.allow})`), hasBody(req), 405);
      }
      if (cfg.auth === 'admin') {
        const r = auth.check(req.method, req.headers);
        if (!r.ok) return refuse(reply, new HsError('HS_AUTH', r.reason), hasBody(req));
        opts.onAuthenticated?.(req.raw.socket);
      }
      if (cfg.bodyLimit === 0 && hasBody(req)) return refuse(reply, new HsError('HS_TOO_LARGE', `${req.method} ${req.routeOptions.url ?? ''} takes no body`), true);
      return undefined;
    });
    app.addHook('onResponse', async (req, reply) => {
      ctx.metrics.httpRequests.inc({ route: req.is404 ? 'unknown' : (req.routeOptions.url ?? 'unknown'), status: String(reply.statusCode) });
    });

    app.setErrorHandler((err: FastifyError, req, reply) => {
      const e = fromFramework(err, req);
      const status = statusOf(e);
      if (status >= 500) ctx.log.error({ err: errorMessage(err), method: req.method, route: req.routeOptions.url }, 'api request failed');
      return refuse(reply, e, false);
    });
    app.setNotFoundHandler((req, reply) => refuse(reply, new HsError('HS_NOT_FOUND', `no route ${req.method} ${apiRequest(req).path}`), false));

    const byPattern = new Map<string, Set<string>>();
    for (const r of routes) {
      const limit = r.bodyLimit ?? (r.auth === 'admin' ? DEFAULT_ADMIN_BODY_LIMIT : 0);
      const config: EdgeConfig & { rateLimit?: { max: number; timeWindow: number } } = { auth: r.auth, bodyLimit: limit };
      if (r.rateLimitPerMinute !== undefined) config.rateLimit = { max: r.rateLimitPerMinute, timeWindow: 60_000 };
      app.route({ method: r.method, url: r.pattern, bodyLimit: Math.max(1, limit), config, handler: async (req, reply) => send(reply, await r.handler(apiRequest(req))) });
      byPattern.set(r.pattern, (byPattern.get(r.pattern) ?? new Set()).add(r.method));
    }
    // The other methods of a known path answer 405 with the allowed ones, before any body is read.
    for (const [pattern, methods] of byPattern) {
      const others = METHODS.filter((m) => !methods.has(m));
      const allow = [...methods, ...(methods.has('GET') ? ['HEAD'] : [])].join(', ');
      if (others.length > 0) app.route({ method: others, url: pattern, bodyLimit: 1, config: { allow }, handler: async (_req, reply) => reply.code(405).send() });
    }
  });

  return {
    async inject(r) {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(r.headers ?? {})) headers[k.toLowerCase()] = v;
      let payload: string | Buffer | undefined;
      if (r.body === undefined || typeof r.body === 'string' || Buffer.isBuffer(r.body)) payload = r.body;
      else {
        payload = JSON.stringify(r.body);
        headers['content-type'] ??= 'application/json';
      }
      const res = await app.inject({ method: r.method.toUpperCase() as 'GET', url: r.url, headers, ...(payload === undefined ? {} : { payload }) });
      return {
        status: res.statusCode,
        headers: res.headers as Record<string, string | string[] | undefined>,
        body: res.rawPayload,
        text: () => res.payload,
        json: <T>() => JSON.parse(res.payload) as T,
      };
    },
    async ready() {
      await app.ready();
    },
    get server() {
      return app.server;
    },
    async close() {
      await app.close();
    },
  };
}
