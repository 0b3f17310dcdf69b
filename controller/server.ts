// Runs a controller on a socket: HTTPS (or plain HTTP with insecureHttp) for the API and dashboard, upgrades on /agent to the gateway.
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { HsError } from '../lib/errors.js';
import { createControllerCore, type ControllerCore, type CoreOptions } from './core.js';
import { ensureDataDir, loadTls } from './identity.js';

export interface ControllerOptions extends Omit<CoreOptions, 'fingerprint'> {
  /** HOST:PORT; port 0 picks a free one. */
  listen: string;
  insecureHttp?: boolean;
  tlsCert?: string;
  tlsKey?: string;
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
  ensureDataDir(opts.dataDir);
  const tls = opts.insecureHttp ? null : loadTls(opts.dataDir, { certFile: opts.tlsCert, keyFile: opts.tlsKey, names: host ? [host] : [] });
  const core = await createControllerCore({ ...opts, fingerprint: tls?.fingerprint ?? null });
  const server: Server = tls ? createHttpsServer({ cert: tls.certPem, key: tls.keyPem }, core.app.handle) : createHttpServer(core.app.handle);
  server.on('upgrade', (req, socket, head) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/agent') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    core.gateway.handleUpgrade(req, socket, head);
  });
  // Many agents keep sockets open for days; the defaults would cut idle keep-alives and slow header senders only.
  server.keepAliveTimeout = 65_000;
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
    async stop() {
      await core.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
