// Runs a controller on a socket: HTTPS (or plain HTTP with insecureHttp) for the API and dashboard, upgrades on /agent to
// the gateway, and the limits that hold before anyone has shown a credential (connections per address and in total, TLS
// handshake, header and request timeouts, header size).
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { HsError, errorMessage } from '../lib/errors.js';
import { createControllerCore, type ControllerCore, type CoreOptions } from './core.js';
import { ConnectionGuard, DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from './http/connections.js';
import { ensureDataDir, loadTls } from './identity.js';

export interface HttpLimits extends ConnectionLimits {
  /** A connection that has not finished its TLS handshake by then is closed (raw TCP that never starts TLS included). */
  handshakeTimeoutMs: number;
  /** Request line and headers must arrive within this (a connection that sends nothing included). */
  headersTimeoutMs: number;
  /** The whole request, body included. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection between requests. */
  keepAliveTimeoutMs: number;
  /** An agent connection (upgraded to a websocket) that has not completed its hello by then is closed. */
  upgradeAuthTimeoutMs: number;
  maxHeaderBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  ...DEFAULT_CONNECTION_LIMITS,
  handshakeTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 10_000,
  upgradeAuthTimeoutMs: 15_000,
  maxHeaderBytes: 8192,
};

export interface ControllerOptions extends Omit<CoreOptions, 'fingerprint' | 'http'> {
  /** HOST:PORT; port 0 picks a free one. */
  listen: string;
  insecureHttp?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  limits?: Partial<HttpLimits>;
}

export interface RunningController {
  core: ControllerCore;
  server: Server;
  host: string;
  port: number;
  /** http(s)://host:port — the API base and what agents get as --controller (they append /agent). */
  url: string;
  /** ws(s)://host:port */
  agentUrl: string;
  fingerprint: string | null;
  /** Connections that have not shown a credential yet. */
  unauthenticatedConnections(): number;
  stop(): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen);
  const port = Number(m?.[3]);
  if (!m || !Number.isInteger(port) || port > 65535) throw new HsError('HS_CONFIG', `--listen ${listen}: expected HOST:PORT`);
  return { host: m[1] ?? m[2] ?? '', port };
}

export async function startController(opts: ControllerOptions): Promise<RunningController> {
  const { host, port } = parseListen(opts.listen);
  const limits = { ...DEFAULT_HTTP_LIMITS, ...opts.limits };
  ensureDataDir(opts.dataDir);
  const tls = opts.insecureHttp ? null : loadTls(opts.dataDir, { certFile: opts.tlsCert, keyFile: opts.tlsKey, names: host ? [host] : [] });
  const guard = new ConnectionGuard(limits);
  const serverOptions: ServerOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    // node refuses a header timeout longer than the request timeout.
    headersTimeout: Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs),
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // Timeouts are checked this often; Node's default (30 s) would let a silent connection live three times its timeout.
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
  };
  const serverFactory = (handler: (req: IncomingMessage, res: ServerResponse) => void): Server =>
    tls ? createHttpsServer({ ...serverOptions, cert: tls.certPem, key: tls.keyPem, handshakeTimeout: limits.handshakeTimeoutMs }, handler) : createHttpServer(serverOptions, handler);
  const core = await createControllerCore({
    ...opts,
    fingerprint: tls?.fingerprint ?? null,
    http: { tls: tls !== null, serverFactory, onAuthenticated: (socket: Socket) => guard.authenticated(socket) },
  });
  const server = core.app.server;
  guard.onRefused = (reason) => core.metrics.connectionsRefused.inc({ reason });
  guard.onCount = (n) => core.metrics.connectionsUnauthenticated.set(n);
  server.on('connection', (socket: Socket) => guard.admit(socket));
  // A TLS connection that fails its handshake (or times out before one) is closed by node; nothing to answer.
  server.on('tlsClientError', () => undefined);

  // An agent connection stops counting as unauthenticated once its hello was accepted.
  const wsSockets = new WeakMap<WebSocket, Socket>();
  core.gateway.wss.on('connection', (ws: WebSocket, req: IncomingMessage) => wsSockets.set(ws, req.socket));
  core.gateway.onReport((r) => {
    if (r.kind !== 'connected') return;
    const ws = core.gateway.session(r.agentId)?.ws;
    const socket = ws ? wsSockets.get(ws) : undefined;
    if (socket) guard.authenticated(socket);
  });
  // CONNECT is no method of this API (node would drop the connection without a word).
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => socket.destroy());
    socket.end('HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Once upgraded, the socket is no longer the HTTP server's: its errors are ours until the gateway takes it.
    socket.on('error', () => socket.destroy());
    try {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/agent') {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      // The gateway's own hello timeout closes politely (and may wait for the peer's close frame); this one does not wait.
      guard.deadline(req.socket, limits.upgradeAuthTimeoutMs);
      core.gateway.handleUpgrade(req, socket, head);
    } catch (err) {
      core.metrics.httpClientErrors.inc({ status: '400' });
      opts.log?.warn({ err: errorMessage(err) }, 'agent upgrade refused');
      socket.destroy();
    }
  });
  await core.app.ready();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new HsError('HS_CONFIG', `cannot listen on ${opts.listen}: ${err.message}`, { cause: err })));
    server.listen({ host: host || undefined, port, backlog: 4096 }, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const shownHost = host === '' || host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  const scheme = tls ? 'https' : 'http';
  return {
    core,
    server,
    host,
    port: addr.port,
    url: `${scheme}://${shownHost}:${addr.port}`,
    agentUrl: `${tls ? 'wss' : 'ws'}://${shownHost}:${addr.port}`,
    fingerprint: tls?.fingerprint ?? null,
    unauthenticatedConnections: () => guard.unauthenticated,
    async stop() {
      await core.close();
      guard.destroyAll();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
