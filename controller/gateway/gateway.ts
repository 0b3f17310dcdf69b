// The agent gateway: the WebSocket endpoint at /agent, the registry of connected agents, ping/pong liveness, batched
// liveness and acknowledgement writes, and pushing assignments and decisions to connected agents as soon as they change.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import { encodeControllerMessage, type AssignmentAck, type Convergence, type PlanResult } from '../../proto/codec.js';
import type { BaselineService } from '../baselines.js';
import type { Enrollment } from '../enrollment.js';
import type { EscalationService } from '../escalations.js';
import type { EventIngest } from '../events.js';
import type { ControllerMetrics } from '../metrics.js';
import type { AgentBaselineRecord, ControllerStore } from '../store/types.js';
import { AgentSession, CLOSE } from './session.js';

export interface GatewayOptions {
  maxMessageBytes: number;
  heartbeatIntervalMs: number;
  /** How often the controller pings; a connection that missed the previous pong is dropped. */
  pingIntervalMs: number;
  helloTimeoutMs: number;
  /** How often heartbeats and acknowledgements are written, batched. */
  flushIntervalMs: number;
}

export const DEFAULT_GATEWAY_OPTIONS: GatewayOptions = {
  maxMessageBytes: 8 * 1024 * 1024,
  heartbeatIntervalMs: 30_000,
  pingIntervalMs: 30_000,
  helloTimeoutMs: 10_000,
  flushIntervalMs: 2_000,
};

/** What agents tell the controller that the rollout engine and plans follow (delivered in each agent's frame order). */
export type AgentReport =
  | { kind: 'connected'; agentId: string; protocolVersion: number }
  | { kind: 'disconnected'; agentId: string }
  | { kind: 'acknowledged'; agentId: string; ack: AssignmentAck }
  | { kind: 'converged'; agentId: string; convergence: Convergence }
  | { kind: 'planned'; agentId: string; result: PlanResult };

export interface GatewayDeps {
  store: ControllerStore;
  enrollment: Enrollment;
  baselines: BaselineService;
  events: EventIngest;
  escalations: EscalationService;
  metrics: ControllerMetrics;
  log: Logger;
  clock: Clock;
  signingPublicKey: Buffer;
  signingKeyId: string;
}

/** What a session may use of the gateway. */
export interface GatewayContext extends GatewayDeps {
  opts: GatewayOptions;
  register(s: AgentSession): void;
  unregister(s: AgentSession): void;
  sendAssignment(s: AgentSession): void;
  recordAcknowledgement(agentId: string, rows: AgentBaselineRecord[]): void;
  report(r: AgentReport): void;
}

export class AgentGateway implements GatewayContext {
  readonly wss: WebSocketServer;
  readonly opts: GatewayOptions;
  readonly store: ControllerStore;
  readonly enrollment: Enrollment;
  readonly baselines: BaselineService;
  readonly events: EventIngest;
  readonly escalations: EscalationService;
  readonly metrics: ControllerMetrics;
  readonly log: Logger;
  readonly clock: Clock;
  readonly signingPublicKey: Buffer;
  readonly signingKeyId: string;
  private readonly sessions = new Map<string, AgentSession>();
  private readonly pendingAcks = new Map<string, AgentBaselineRecord[]>();
  private readonly timers: NodeJS.Timeout[] = [];
  private ackFlush: Promise<void> | null = null;
  private readonly unsubscribe: (() => void)[] = [];
  /** Connections that answered the last ping (or have not been pinged yet). */
  private readonly alive = new WeakMap<WebSocket, boolean>();
  private readonly reportListeners = new Set<(r: AgentReport) => void>();

  constructor(deps: GatewayDeps, opts: Partial<GatewayOptions> = {}) {
    this.opts = { ...DEFAULT_GATEWAY_OPTIONS, ...opts };
    this.store = deps.store;
    this.enrollment = deps.enrollment;
    this.baselines = deps.baselines;
    this.events = deps.events;
    this.escalations = deps.escalations;
    this.metrics = deps.metrics;
    this.log = deps.log;
    this.clock = deps.clock;
    this.signingPublicKey = deps.signingPublicKey;
    this.signingKeyId = deps.signingKeyId;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.opts.maxMessageBytes, perMessageDeflate: false, clientTracking: true });
    this.wss.on('connection', (ws, req: IncomingMessage) => {
      this.alive.set(ws, true);
      ws.on('pong', () => this.alive.set(ws, true));
      new AgentSession(this, ws, `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? 0}`);
    });
    this.timers.push(setInterval(() => this.pingAll(), this.opts.pingIntervalMs).unref());
    this.timers.push(setInterval(() => void this.flushSeen(), this.opts.flushIntervalMs).unref());
    this.unsubscribe.push(this.baselines.onChange(() => this.pushAssignments()));
    this.unsubscribe.push(this.escalations.onDecision((id) => void this.pushDecisions(id)));
  }

  /** Hands an HTTP upgrade on /agent to the WebSocket server. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => this.wss.emit('connection', ws, req));
  }

  register(s: AgentSession): void {
    if (s.agentId === null) return;
    const old = this.sessions.get(s.agentId);
    // One connection per agent: the newest wins (the old one is likely half-dead after a network change).
    if (old && old !== s) old.ws.close(CLOSE.replaced, 'replaced by a newer connection');
    this.sessions.set(s.agentId, s);
    this.metrics.agentsConnected.set(this.sessions.size);
    this.report({ kind: 'connected', agentId: s.agentId, protocolVersion: s.protocolVersion });
  }

  /** Follows connections, acknowledgements, convergence reports and plan answers of every agent. */
  onReport(listener: (r: AgentReport) => void): () => void {
    this.reportListeners.add(listener);
    return () => this.reportListeners.delete(listener);
  }

  report(r: AgentReport): void {
    for (const l of this.reportListeners) {
      try {
        l(r);
      } catch (err) {
        this.log.error({ err, report: r.kind }, 'agent report listener failed');
      }
    }
  }

  unregister(s: AgentSession): void {
    if (s.agentId !== null && this.sessions.get(s.agentId) === s) {
      this.sessions.delete(s.agentId);
      this.report({ kind: 'disconnected', agentId: s.agentId });
      if (s.seen.dirty) void this.store.updateAgentsSeen([{ id: s.agentId, ...s.seen }]).catch(() => undefined);
      this.metrics.agentsConnected.set(this.sessions.size);
    }
  }

  connectedCount(): number {
    return this.sessions.size;
  }

  session(agentId: string): AgentSession | undefined {
    return this.sessions.get(agentId);
  }

  sendAssignment(s: AgentSession, frames?: Map<string, Uint8Array>): void {
    const { baselines, key } = this.baselines.assignmentFor(s.labels, s.agentId);
    if (key === s.assignmentKey) return;
    let frame = frames?.get(key);
    if (!frame) {
      frame = encodeControllerMessage({ assignment: { baselines } });
      frames?.set(key, frame);
    }
    s.assignmentKey = key;
    s.sendFrame(frame);
    this.metrics.assignmentsSent.inc();
  }

  /** After a rollout or renewal: every connected agent whose assignment changed gets it (frames shared per selection). */
  pushAssignments(): void {
    const frames = new Map<string, Uint8Array>();
    for (const s of this.sessions.values()) this.sendAssignment(s, frames);
  }

  async pushDecisions(agentId: string): Promise<void> {
    const s = this.sessions.get(agentId);
    if (!s) return;
    for (const d of await this.escalations.pending(agentId)) {
      if (d.decisionPayload && d.decisionSignature) s.send({ decision: { payload: d.decisionPayload, signature: d.decisionSignature, keyId: this.signingKeyId } });
    }
  }

  recordAcknowledgement(agentId: string, rows: AgentBaselineRecord[]): void {
    this.pendingAcks.set(agentId, rows);
    if (!this.ackFlush) this.ackFlush = this.flushAcks();
  }

  /** Waits for batched acknowledgement writes (tests and rollout status read after it). */
  async flushAcks(): Promise<void> {
    await new Promise<void>((r) => setImmediate(r));
    while (this.pendingAcks.size > 0) {
      const updates = [...this.pendingAcks].map(([agentId, rows]) => ({ agentId, rows }));
      this.pendingAcks.clear();
      try {
        await this.store.setAgentBaselines(updates);
      } catch (err) {
        this.log.error({ err, agents: updates.length }, 'acknowledgements not persisted');
      }
    }
    this.ackFlush = null;
  }

  async flushSeen(): Promise<void> {
    const rows = [];
    for (const s of this.sessions.values()) {
      if (!s.seen.dirty || s.agentId === null) continue;
      s.seen.dirty = false;
      rows.push({ id: s.agentId, lastSeen: s.seen.lastSeen, outboxPending: s.seen.outboxPending, outboxDropped: s.seen.outboxDropped, enforcementPaused: s.seen.enforcementPaused });
    }
    if (rows.length === 0) return;
    try {
      await this.store.updateAgentsSeen(rows);
    } catch (err) {
      this.log.error({ err, agents: rows.length }, 'heartbeats not persisted');
    }
  }

  private pingAll(): void {
    for (const ws of this.wss.clients) {
      if (this.alive.get(ws) === false) {
        ws.terminate();
        continue;
      }
      this.alive.set(ws, false);
      ws.ping();
    }
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    for (const u of this.unsubscribe) u();
    for (const ws of this.wss.clients) ws.close(CLOSE.goingAway, 'controller shutting down');
    await this.flushSeen();
    if (this.ackFlush) await this.ackFlush;
    await new Promise<void>((r) => this.wss.close(() => r()));
    for (const ws of this.wss.clients) ws.terminate();
  }
}
