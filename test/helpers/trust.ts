// Test helpers for the trust between agents and controller: a real controller on loopback, agent processes and their
// status and audit, a rogue controller endpoint (optionally holding the real TLS pair), and raw WebSocket clients that
// speak the protocol by hand.
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { startController, type ControllerOptions, type RunningController } from '../../controller/server.js';
import {
  PROTOCOL_VERSION,
  decodeAgentMessage,
  decodeControllerMessage,
  encodeAgentMessage,
  encodeControllerMessage,
  type AgentMessage,
  type ControllerMessage,
  type Hello,
  type OutgoingAgentMessage,
  type OutgoingControllerMessage,
} from '../../proto/codec.js';
import { runAgent, startAgentDaemon, waitFor, type DaemonProcess } from './agent.js';

export const ADMIN = 'trust-admin';

export interface Controller {
  ctl: RunningController;
  api<T>(method: string, url: string, body?: unknown): Promise<T>;
  status(method: string, url: string, body?: unknown): Promise<number>;
  stop(): Promise<void>;
}

export async function controller(dataDir: string, opts: Partial<ControllerOptions> = {}): Promise<Controller> {
  const ctl = await startController({
    dataDir,
    listen: '127.0.0.1:0',
    adminToken: ADMIN,
    ...opts,
    gateway: { heartbeatIntervalMs: 1000, pingIntervalMs: 2000, ...opts.gateway },
  });
  const call = (method: string, url: string, body?: unknown) =>
    ctl.core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}` }, ...(body === undefined ? {} : { body: body as object }) });
  return {
    ctl,
    async api<T>(method: string, url: string, body?: unknown): Promise<T> {
      const r = await call(method, url, body);
      if (r.status >= 400) throw new Error(`${method} ${url}: ${r.status} ${r.text()}`);
      return r.json<T>();
    },
    async status(method: string, url: string, body?: unknown): Promise<number> {
      return (await call(method, url, body)).status;
    },
    stop: () => ctl.stop(),
  };
}

export interface AgentStatus {
  controller: { state: string; agentId: string | null; problem: { reason: string; message: string } | null; labels: Record<string, string> | null };
  baselines: { name: string; version: number }[];
}

export async function agentStatus(stateDir: string): Promise<AgentStatus> {
  const r = await runAgent(['status', '--json', '--state-dir', stateDir]);
  if (r.code !== 0) throw new Error(`status exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as AgentStatus;
}

export interface AuditRow {
  event: string;
  resource: string | null;
  baseline: string | null;
  version: number | null;
  detail: string | null;
}

export async function agentAudit(stateDir: string): Promise<AuditRow[]> {
  const r = await runAgent(['audit', '--json', '--state-dir', stateDir]);
  if (r.code !== 0) throw new Error(`audit exited ${r.code}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { entries: AuditRow[] }).entries;
}

/** Starts `homeostat-agent run` against a controller URL. */
export function runAgentDaemon(stateDir: string, url: string, extra: string[] = []): DaemonProcess {
  return startAgentDaemon(['--state-dir', stateDir, '--controller', url, ...extra]);
}

export async function waitExit(d: DaemonProcess, timeoutMs = 15_000): Promise<number | null> {
  await waitFor(() => d.child.exitCode !== null || d.child.signalCode !== null, timeoutMs, 'agent exit');
  return d.child.exitCode;
}

export interface Rogue {
  port: number;
  url: string;
  received: AgentMessage[];
  connections: number;
  close(): Promise<void>;
}

/**
 * A controller impostor on loopback. With `tlsDir` it serves the real controller's TLS pair (a thief of that pair, or the
 * controller's own host turned against its agents); without, plain ws://. `onMessage` answers each decoded agent frame.
 */
export async function rogue(tlsDir: string | null, onMessage: (m: AgentMessage, send: (msg: OutgoingControllerMessage) => void, ws: WebSocket) => void): Promise<Rogue> {
  const server: Server = tlsDir
    ? createHttpsServer({ cert: readFileSync(path.join(tlsDir, 'tls.crt')), key: readFileSync(path.join(tlsDir, 'tls.key')) })
    : createHttpServer();
  const wss = new WebSocketServer({ server, path: '/agent' });
  const r: Rogue = { port: 0, url: '', received: [], connections: 0, close: async () => undefined };
  wss.on('connection', (ws) => {
    r.connections++;
    ws.on('message', (data: Buffer) => {
      let m: AgentMessage | null;
      try {
        m = decodeAgentMessage(data);
      } catch {
        return;
      }
      if (!m) return;
      r.received.push(m);
      onMessage(m, (msg) => ws.send(encodeControllerMessage(msg)), ws);
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  r.port = (server.address() as AddressInfo).port;
  r.url = `${tlsDir ? 'wss' : 'ws'}://127.0.0.1:${r.port}`;
  r.close = async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((res) => server.close(() => res()));
  };
  return r;
}

export interface WireClient {
  ws: WebSocket;
  messages: ControllerMessage[];
  closed: { code: number; reason: string } | null;
  send(msg: OutgoingAgentMessage): void;
}

/** A hand-made agent connection; the hello is sent once open when given. */
export function wireClient(url: string, hello?: Partial<Hello>, opts: { localAddress?: string } = {}): Promise<WireClient> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}/agent`, { rejectUnauthorized: false, perMessageDeflate: false, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    const c: WireClient = { ws, messages: [], closed: null, send: (msg) => ws.send(encodeAgentMessage(msg)) };
    ws.on('message', (data: Buffer) => {
      const m = decodeControllerMessage(data);
      if (m) c.messages.push(m);
    });
    ws.on('close', (code, reason) => {
      c.closed = { code, reason: reason.toString() };
    });
    ws.on('open', () => {
      if (hello) c.send({ hello: { protocolVersion: PROTOCOL_VERSION, agentVersion: 'test', ...hello } });
      resolve(c);
    });
    ws.on('error', (err) => {
      if (ws.readyState !== WebSocket.OPEN && !c.closed) reject(err);
    });
  });
}

/** Waits for a hand-made connection's welcome or close; the close code when refused. */
export async function welcomedOrClosed(c: WireClient, timeoutMs = 10_000): Promise<{ welcome: Extract<ControllerMessage, { body: 'welcome' }>['welcome'] | null; code: number | null }> {
  await waitFor(() => c.closed !== null || c.messages.some((m) => m.body === 'welcome'), timeoutMs, 'welcome or close');
  const w = c.messages.find((m) => m.body === 'welcome');
  return { welcome: w && w.body === 'welcome' ? w.welcome : null, code: c.closed?.code ?? null };
}
