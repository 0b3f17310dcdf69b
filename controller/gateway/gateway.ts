// The agent gateway: the WebSocket endpoint at /agent with its limits on connections that have not said hello yet, the
// registry of connected agents, ping/pong liveness, batched liveness and acknowledgement writes, and pushing assignments
// (baselines and, from protocol 4, policies, each with signed removals), decisions and label changes to connected agents as
// soon as they change.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Clock } from '../../lib/clock.js';
import { errorMessage } from '../../lib/errors.js';
import type { Labels } from '../../lib/labels.js';
import type { Logger } from '../../lib/log.js';
import { POLICY_PROTOCOL_VERSION, encodeControllerMessage, type AssignmentAck, type Convergence, type PlanResult, type SignedDoc } from '../../proto/codec.js';
import type { BaselineService } from '../baselines.js';
import type { DocumentService, Signed, VersionRecord } from '../documents.js';
import type { Enrollment } from '../enrollment.js';
import type { EscalationService } from '../escalations.js';
import type { EventIngest } from '../events.js';
import type { ControllerMetrics } from '../metrics.js';
import type { PolicyService } from '../policies.js';
import type { AgentBaselineRecord, ControllerStore } from '../store/types.js';
import { PreAuthSlots, RateLimiter, type BucketOptions } from './limits.js';
import { QuietLog } from './quiet-log.js';
import { AgentSession, CLOSE, type Holding } from './session.js';

export interface GatewayOptions {
  /** The largest frame of an agent whose hello was accepted. */
  maxMessageBytes: number;
  heartbeatIntervalMs: number;
  /** How often the controller pings; a connection that missed the previous pong is dropped. */
  pingIntervalMs: number;
  /** How long a new connection has to send its hello. */
  helloTimeoutMs: number;
  /** How often heartbeats and acknowledgements are written, batched. */
  flushIntervalMs: number;
  /** Bytes a connection may send before its hello is accepted (the hello included). */
  preAuthBytes: number;
  /** Connections before their hello, per source address and in total; more are turned away (HTTP 503). */
  preAuthPerAddress: number;
  preAuthTotal: number;
  /** Enrollments and failed authentications per source address. */
  attemptsPerAddress: BucketOptions;
  /** Failed enrollments per join token (also stops guessing at one token's secret). */
  failuresPerToken: BucketOptions;
}

export const DEFAULT_GATEWAY_OPTIONS: GatewayOptions = {
  maxMessageBytes: 8 * 1024 * 1024,
  heartbeatIntervalMs: 30_000,
  pingIntervalMs: 30_000,
  helloTimeoutMs: 5_000,
  flushIntervalMs: 2_000,
  preAuthBytes: 32 * 1024,
  preAuthPerAddress: 32,
  preAuthTotal: 2048,
  attemptsPerAddress: { burst: 30, perSecond: 5 },
  failuresPerToken: { burst: 20, perSecond: 1 },
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
  policies: PolicyService;
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
  limits: { attempts: RateLimiter; tokenFailures: RateLimiter };
  quiet: QuietLog;
  recordLabelRefusal(who: string, remote: string, detail: string): void;
  register(s: AgentSession): void;
  unregister(s: AgentSession): void;
  sendAssignment(s: AgentSession): void;
  /** What an agent acknowledged: its baselines, and its policies (null for an agent before protocol 4, which has none). */
  recordAcknowledgement(agentId: string, rows: AgentBaselineRecord[], policies: AgentBaselineRecord[] | null): void;
  report(r: AgentReport): void;
}

export class AgentGateway implements GatewayContext {
  readonly wss: WebSocketServer;
  readonly opts: GatewayOptions;
  readonly store: ControllerStore;
  readonly enrollment: Enrollment;
  readonly baselines: BaselineService;
  readonly policies: PolicyService;
  readonly events: EventIngest;
  readonly escalations: EscalationService;
  readonly metrics: ControllerMetrics;
  readonly log: Logger;
  readonly clock: Clock;
  readonly signingPublicKey: Buffer;
  readonly signingKeyId: string;
  private readonly sessions = new Map<string, AgentSession>();
  private readonly pendingAcks = new Map<string, { baselines: AgentBaselineRecord[]; policies: AgentBaselineRecord[] | null }>();
  private readonly timers: NodeJS.Timeout[] = [];
  private ackFlush: Promise<void> | null = null;
  private readonly unsubscribe: (() => void)[] = [];
  /** Connections that answered the last ping (or have not been pinged yet). */
  private readonly alive = new WeakMap<WebSocket, boolean>();
  private readonly reportListeners = new Set<(r: AgentReport) => void>();
  readonly preAuth: PreAuthSlots;
  readonly limits: { attempts: RateLimiter; tokenFailures: RateLimiter };
  readonly quiet: QuietLog;
  /** The last label refusal recorded per agent or token, so a retrying agent is recorded once per change. */
  private readonly refusalsRecorded = new Map<string, string>();

  constructor(deps: GatewayDeps, opts: Partial<GatewayOptions> = {}) {
    this.opts = { ...DEFAULT_GATEWAY_OPTIONS, ...opts };
    this.store = deps.store;
    this.enrollment = deps.enrollment;
    this.baselines = deps.baselines;
    this.policies = deps.policies;
    this.events = deps.events;
    this.escalations = deps.escalations;
    this.metrics = deps.metrics;
    this.log = deps.log;
    this.clock = deps.clock;
    this.signingPublicKey = deps.signingPublicKey;
    this.signingKeyId = deps.signingKeyId;
    this.preAuth = new PreAuthSlots({ perAddress: this.opts.preAuthPerAddress, total: this.opts.preAuthTotal });
    this.limits = { attempts: new RateLimiter(this.opts.attemptsPerAddress, this.clock), tokenFailures: new RateLimiter(this.opts.failuresPerToken, this.clock) };
    this.quiet = new QuietLog(this.log, this.clock);
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.opts.maxMessageBytes, perMessageDeflate: false, clientTracking: true });
    this.timers.push(setInterval(() => this.pingAll(), this.opts.pingIntervalMs).unref());
    this.timers.push(setInterval(() => void this.flushSeen(), this.opts.flushIntervalMs).unref());
    this.unsubscribe.push(this.baselines.onChange(() => this.pushAssignments()));
    this.unsubscribe.push(this.policies.onChange(() => this.pushAssignments()));
    this.unsubscribe.push(
      this.escalations.onDecision((id) => {
        this.pushDecisions(id).catch((err: unknown) => this.log.error({ agent: id, err: errorMessage(err) }, 'decision not pushed; the agent gets it at its next connection'));
      }),
    );
  }

  /**
   * Hands an HTTP upgrade on /agent to the WebSocket server, unless too many connections from that address (or in all) have
   * not said hello yet: those are turned away before the WebSocket handshake, with nothing buffered.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const address = req.socket.remoteAddress ?? '?';
    const slot = this.preAuth.acquire(address);
    if (!slot) {
      this.metrics.connections.inc({ result: 'busy' });
      this.quiet.write('warn', 'busy', { remote: address, ...this.preAuth.counts() }, 'agent connection turned away: too many connections before hello');
      socket.once('finish', () => socket.destroy());
      socket.end('HTTP/1.1 503 Service Unavailable\r\nRetry-After: 10\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    socket.once('close', () => slot.release());
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.alive.set(ws, true);
      ws.on('pong', () => this.alive.set(ws, true));
      new AgentSession(this, ws, req.socket as Socket, slot, `${address}:${req.socket.remotePort ?? 0}`, head.length);
      // The HTTP edge follows each connection to release it from its pre-authentication caps once the hello is accepted.
      this.wss.emit('connection', ws, req);
    });
  }

  /** Connections that have not completed a hello: in total and from how many addresses. */
  preAuthCounts(): { total: number; addresses: number } {
    return this.preAuth.counts();
  }

  /** Records a refused label request in the controller's audit (once per agent or token while it stays the same). */
  recordLabelRefusal(who: string, remote: string, detail: string): void {
    if (this.refusalsRecorded.get(who) === detail) return;
    if (this.refusalsRecorded.size >= 10_000) this.refusalsRecorded.clear();
    this.refusalsRecorded.set(who, detail);
    void this.store
      .addControllerEvent({ time: this.clock.now(), kind: 'agent_labels_refused', rolloutId: null, baseline: null, detail: { agent: who, remote, refused: detail } })
      .catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'label refusal not recorded'));
  }

  /** After an operator changed an agent's labels: a connected agent is selected by the new ones at once. */
  relabel(agentId: string, labels: Labels): void {
    const s = this.sessions.get(agentId);
    if (!s) return;
    s.labels = labels;
    this.sendAssignment(s);
  }

  register(s: AgentSession): void {
    if (s.agentId === null || s.isClosed) return;
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

  /**
   * Sends an agent its assignment when it changed: its baselines and, from protocol 4 on, its policies. From protocol 3 on,
   * a document it may hold and is no longer assigned gets a removal signed for it, and a document issued before the agent's
   * removal of that name is issued again (the agent accepts nothing older than a removal). Frames without such per-agent
   * parts are shared between agents.
   */
  sendAssignment(s: AgentSession, frames?: Map<string, Uint8Array>): void {
    if (s.agentId === null || s.isClosed) return;
    const b = this.partFor(s, this.baselines, s.docs.baseline, s.protocolVersion >= 3);
    const p = s.protocolVersion >= POLICY_PROTOCOL_VERSION ? this.partFor(s, this.policies, s.docs.policy, true) : null;
    const shared = p ? `${b.shared}|policies:${p.shared}` : b.shared;
    const own = [...b.own, ...(p?.own.map((x) => `policy:${x}`) ?? [])];
    const key = own.length > 0 ? `${shared}|${own.join(',')}` : shared;
    if (key === s.assignmentKey) return;
    let frame = own.length === 0 ? frames?.get(key) : undefined;
    if (!frame) {
      frame = encodeControllerMessage({ assignment: { baselines: b.docs, removals: b.removals, ...(p ? { policies: p.docs, policyRemovals: p.removals } : {}) } });
      if (own.length === 0) frames?.set(key, frame);
    }
    s.assignmentKey = key;
    for (const [part, h] of [[b, s.docs.baseline], ...(p ? [[p, s.docs.policy] as const] : [])] as const) {
      h.sent = new Map(part.names.map((name, i) => [name, part.issued[i] ?? 0]));
      for (const name of part.names) h.mayHold.add(name);
    }
    s.sendFrame(frame);
    this.metrics.assignmentsSent.inc();
  }

  /** One kind's documents for this agent, re-issued after its removals, with removals of what it holds and is not assigned. */
  private partFor<V extends VersionRecord>(
    s: AgentSession,
    docs: DocumentService<V>,
    h: Holding,
    signedRemovals: boolean,
  ): { names: string[]; docs: Signed[]; issued: number[]; removals: SignedDoc[]; own: string[]; shared: string } {
    const a = docs.assignmentFor(s.labels, s.agentId);
    const out = [...a.docs];
    const issued = a.records.map((r) => r.issuedAt);
    const removals: SignedDoc[] = [];
    const own: string[] = [];
    if (signedRemovals && s.agentId !== null) {
      a.records.forEach((r, i) => {
        const held = h.held.get(r.name);
        if (!held?.removed || r.issuedAt > held.issuedAt) return;
        const again = docs.reissue(r, held.issuedAt);
        out[i] = { payload: again.payload, signature: again.signature, keyId: again.keyId };
        issued[i] = again.issuedAt;
        own.push(`${r.name}@${again.version}/${again.issuedAt}`);
      });
      const assigned = new Set(a.names);
      for (const name of assigned) h.removals.delete(name);
      for (const name of h.mayHold) {
        if (assigned.has(name)) continue;
        const r = h.removals.get(name) ?? docs.signRemoval(s.agentId, name, h.held.get(name)?.version ?? 0);
        h.removals.set(name, r);
        removals.push(r.signed);
        own.push(`-${name}/${r.issuedAt}`);
      }
    }
    return { names: a.names, docs: out, issued, removals, own, shared: a.key };
  }

  /** After a rollout or renewal: every connected agent whose assignment changed gets it (frames shared per selection). */
  pushAssignments(): void {
    const frames = new Map<string, Uint8Array>();
    for (const s of this.sessions.values()) this.sendAssignment(s, frames);
  }

  async pushDecisions(agentId: string): Promise<void> {
    const s = this.sessions.get(agentId);
    if (!s) return;
    const pending = await this.escalations.pending(agentId);
    if (s.isClosed) return;
    for (const d of pending) {
      if (d.decisionPayload && d.decisionSignature) s.send({ decision: { payload: d.decisionPayload, signature: d.decisionSignature, keyId: this.signingKeyId } });
    }
  }

  recordAcknowledgement(agentId: string, rows: AgentBaselineRecord[], policies: AgentBaselineRecord[] | null): void {
    this.pendingAcks.set(agentId, { baselines: rows, policies });
    if (!this.ackFlush) this.ackFlush = this.flushAcks();
  }

  /** Waits for batched acknowledgement writes (tests and rollout status read after it). */
  async flushAcks(): Promise<void> {
    await new Promise<void>((r) => setImmediate(r));
    while (this.pendingAcks.size > 0) {
      const updates = [...this.pendingAcks];
      this.pendingAcks.clear();
      try {
        await this.store.setAgentBaselines(updates.map(([agentId, a]) => ({ agentId, rows: a.baselines })));
        const policies = updates.flatMap(([agentId, a]) => (a.policies ? [{ agentId, rows: a.policies }] : []));
        if (policies.length > 0) await this.store.setAgentPolicies(policies);
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
