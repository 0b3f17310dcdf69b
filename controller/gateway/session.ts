// One agent connection: the hello handshake (enroll or authenticate, trusted labels), then heartbeats, acknowledgements,
// events and decisions. Before its hello is accepted a connection may send only a few bytes (the gateway's pre-auth budget)
// and must do so in time. Frames are handled strictly one after another, so an agent's events are persisted in the order
// it sent them.
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { ERROR_CODES, HsError, errorMessage, type ErrorCode } from '../../lib/errors.js';
import type { Labels } from '../../lib/labels.js';
import {
  MIN_PROTOCOL_VERSION,
  POLICY_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  decodeAgentMessage,
  encodeControllerMessage,
  type AgentMessage,
  type Applied,
  type AssignmentAck,
  type Held,
  type Hello,
  type OutgoingControllerMessage,
  type SignedDoc,
} from '../../proto/codec.js';
import { Enrollment } from '../enrollment.js';
import { eventFromWire } from '../events.js';
import type { AgentBaselineRecord, DocumentKind } from '../store/types.js';
import type { GatewayContext } from './gateway.js';
import type { PreAuthSlot } from './limits.js';

/** WebSocket close codes this controller uses (4xxx are application codes; the agent reads them to decide whether to retry). */
export const CLOSE = {
  goingAway: 1001,
  unsupportedData: 1003,
  invalidPayload: 1007,
  policy: 1008,
  tooBig: 1009,
  badProtocolVersion: 4400,
  unauthorized: 4401,
  labelsRefused: 4403,
  replaced: 4409,
  rateLimited: 4429,
} as const;

/** Error codes agents report become metric label values only from the known vocabulary: anything else is `other`. */
export function metricCode(code: string): string {
  return Object.hasOwn(ERROR_CODES, code) ? code : code === '' ? 'unknown' : 'other';
}

function closeCodeOf(code: ErrorCode): number {
  switch (code) {
    case 'HS_AUTH':
      return CLOSE.unauthorized;
    case 'HS_LABEL_REFUSED':
      return CLOSE.labelsRefused;
    case 'HS_RATE_LIMITED':
      return CLOSE.rateLimited;
    default:
      return CLOSE.policy;
  }
}

/** What a removal signed for this agent says, kept so one removal is signed once per connection. */
export interface SentRemoval {
  signed: SignedDoc;
  issuedAt: number;
}

/** What the controller knows of one kind of signed document (baselines or policies) on a connected agent. */
export class Holding {
  /** Per name, the issue time of the document in the last assignment sent. */
  sent = new Map<string, number>();
  /** Per name, the last signed thing the agent says it accepted (hello and acknowledgements). */
  held = new Map<string, Held>();
  /** Names this agent may hold from this controller: reported in its hello or acknowledgements, or sent to it. */
  readonly mayHold = new Set<string>();
  /** Removals signed for this agent on this connection, by name. */
  readonly removals = new Map<string, SentRemoval>();

  /** Takes what the agent says it holds; true when it holds something it was not sent, or removed what it is sent again. */
  note(applied: Applied[], held: Held[]): boolean {
    let stale = false;
    // Bounded like `held`: each name may cost a signed removal.
    for (const a of applied.slice(0, 10_000)) {
      this.mayHold.add(a.name);
      stale ||= !this.sent.has(a.name);
    }
    if (held.length > 0) {
      this.held = new Map(held.slice(0, 10_000).map((x) => [x.name, x]));
      for (const [name, x] of this.held) {
        if (x.removed) {
          this.mayHold.delete(name);
          this.removals.delete(name);
        } else {
          this.mayHold.add(name);
        }
      }
    }
    for (const [name, h] of this.held) {
      const sentAt = this.sent.get(name);
      stale ||= h.removed ? sentAt !== undefined && sentAt <= h.issuedAt : sentAt === undefined;
    }
    return stale;
  }
}

export class AgentSession {
  agentId: string | null = null;
  labels: Labels = {};
  protocolVersion = 0;
  connectedAt: number;
  /** Key of the last assignment sent, so unchanged agents are not sent it again. */
  assignmentKey: string | null = null;
  /** Baselines and policies this agent holds, was sent, or had removed on this connection. */
  readonly docs: Record<DocumentKind, Holding> = { baseline: new Holding(), policy: new Holding() };
  seen: { lastSeen: number; outboxPending: number; outboxDropped: number; enforcementPaused: boolean; dirty: boolean };
  lastError: { code: string; message: string; at: number } | null = null;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly helloTimer: NodeJS.Timeout;
  private preAuthBytes = 0;
  private readonly countPreAuth: (chunk: Buffer) => void;
  private readonly address: string;

  constructor(
    private readonly ctx: GatewayContext,
    readonly ws: WebSocket,
    private readonly socket: Socket,
    private readonly slot: PreAuthSlot,
    readonly remote: string,
    headBytes = 0,
  ) {
    this.connectedAt = ctx.clock.now();
    this.address = socket.remoteAddress ?? '?';
    this.seen = { lastSeen: this.connectedAt, outboxPending: 0, outboxDropped: 0, enforcementPaused: false, dirty: false };
    this.helloTimer = setTimeout(() => {
      ctx.metrics.framesRejected.inc({ reason: 'no_hello' });
      this.fail(CLOSE.policy, new HsError('HS_PROTOCOL', 'no hello in time', { retryable: true }));
      setTimeout(() => ws.terminate(), 1000).unref();
    }, ctx.opts.helloTimeoutMs);
    // Until the hello is accepted, every byte counts against a small budget: a stranger cannot make the controller buffer
    // a large frame (ws would accept up to --max-message-bytes) or keep sending.
    this.preAuthBytes = headBytes;
    this.countPreAuth = (chunk: Buffer) => {
      this.preAuthBytes += chunk.length;
      if (this.preAuthBytes <= ctx.opts.preAuthBytes || this.closed) return;
      ctx.metrics.framesRejected.inc({ reason: 'preauth_bytes' });
      ctx.quiet.write('warn', 'preauth-bytes', { remote, bytes: this.preAuthBytes, limit: ctx.opts.preAuthBytes }, 'connection sent too much before its hello was accepted');
      this.closed = true;
      ws.terminate();
    };
    socket.on('data', this.countPreAuth);
    ws.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    ws.on('error', (err) => {
      // ws reports oversized frames here (and closes with 1009); the connection is gone either way.
      const reason = (err as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'oversized' : 'socket';
      ctx.metrics.framesRejected.inc({ reason });
      ctx.quiet.write('warn', `socket-${reason}`, { agent: this.agentId, remote, reason, err: err.message.slice(0, 200) }, 'agent connection error');
    });
    ws.on('close', () => this.onClose());
  }

  get isClosed(): boolean {
    return this.closed;
  }

  send(msg: OutgoingControllerMessage): void {
    this.sendFrame(encodeControllerMessage(msg));
  }

  sendFrame(frame: Uint8Array): void {
    if (!this.closed && this.ws.readyState === this.ws.OPEN) this.ws.send(frame);
  }

  /** Sends an Error, then closes: only this connection, never the controller. */
  fail(code: number, err: HsError): void {
    if (this.closed) return;
    this.send({ error: { code: err.code, message: err.message, retryable: err.retryable } });
    this.ws.close(code, Buffer.from(err.message).subarray(0, 120).toString());
    this.closed = true;
  }

  private onFrame(data: unknown, isBinary: boolean): void {
    if (this.closed) return;
    if (!isBinary || !Buffer.isBuffer(data)) {
      this.ctx.metrics.framesRejected.inc({ reason: 'text' });
      this.fail(CLOSE.unsupportedData, new HsError('HS_PROTOCOL', 'binary protobuf frames only'));
      return;
    }
    let msg: AgentMessage | null;
    try {
      msg = decodeAgentMessage(data);
    } catch (err) {
      this.ctx.metrics.framesRejected.inc({ reason: 'malformed' });
      this.ctx.quiet.write('warn', 'malformed', { agent: this.agentId, remote: this.remote, err: errorMessage(err).slice(0, 200) }, 'malformed agent frame');
      this.fail(CLOSE.invalidPayload, err instanceof HsError ? err : new HsError('HS_PROTOCOL', 'malformed frame'));
      return;
    }
    if (msg === null) return; // a newer agent's message this controller does not know
    const m = msg;
    this.chain = this.chain.then(() => this.handle(m)).catch((err: unknown) => {
      this.ctx.log.error({ agent: this.agentId, err: errorMessage(err) }, 'agent message failed');
      this.fail(CLOSE.policy, err instanceof HsError ? err : new HsError('HS_STORE', 'controller failed to handle the message', { retryable: true }));
    });
  }

  private async handle(msg: AgentMessage): Promise<void> {
    if (this.closed) return;
    if (this.agentId === null) {
      if (msg.body !== 'hello') throw new HsError('HS_PROTOCOL', 'the first frame must be a hello');
      await this.hello(msg.hello);
      return;
    }
    switch (msg.body) {
      case 'hello':
        throw new HsError('HS_PROTOCOL', 'hello sent twice');
      case 'heartbeat': {
        const h = msg.heartbeat;
        this.seen = { lastSeen: this.ctx.clock.now(), outboxPending: h.outboxPending, outboxDropped: h.outboxDropped, enforcementPaused: h.enforcementPaused, dirty: true };
        return;
      }
      case 'assignmentAck':
        this.acknowledged(msg.assignmentAck);
        return;
      case 'events': {
        const events = msg.events.events.map(eventFromWire);
        if (events.length === 0) return;
        this.ctx.metrics.eventsReceived.inc(events.length);
        const upto = await this.ctx.events.submit(this.agentId, events);
        this.send({ eventAck: { uptoSeq: upto } });
        return;
      }
      case 'decisionAck':
        await this.ctx.escalations.acknowledged(this.agentId, msg.decisionAck);
        return;
      case 'planResult':
        this.ctx.report({ kind: 'planned', agentId: this.agentId, result: msg.planResult });
        return;
      case 'convergence':
        this.ctx.report({ kind: 'converged', agentId: this.agentId, convergence: msg.convergence });
        return;
      case 'error': {
        const code = msg.error.code.slice(0, 64);
        this.lastError = { code, message: msg.error.message.slice(0, 1000), at: this.ctx.clock.now() };
        this.ctx.metrics.agentErrors.inc({ code: metricCode(code) });
        this.ctx.quiet.write('warn', `agent-error:${this.agentId}`, { agent: this.agentId, code, message: this.lastError.message.slice(0, 300) }, 'agent reported an error');
        return;
      }
    }
  }

  /** Refuses this hello: counts it against the limits, logs at a bounded rate, tells the peer why, closes. */
  private refuse(err: unknown, h: Hello, tokenId: string | null): void {
    const { ctx } = this;
    const e = err instanceof HsError ? err : new HsError('HS_AUTH', errorMessage(err));
    const enrolling = h.joinToken !== '';
    if (e.code !== 'HS_RATE_LIMITED') {
      if (enrolling && tokenId) ctx.limits.tokenFailures.take(tokenId);
      if (!enrolling) ctx.limits.attempts.take(this.address);
    }
    ctx.metrics[enrolling ? 'enrollments' : 'connections'].inc({ result: e.code === 'HS_RATE_LIMITED' ? 'rate_limited' : e.code === 'HS_LABEL_REFUSED' ? 'labels_refused' : 'refused' });
    ctx.quiet.write('warn', `refused:${e.code}`, { remote: this.remote, agent: h.agentId.slice(0, 64) || undefined, token: tokenId ?? undefined, code: e.code, err: e.message.slice(0, 300) }, 'agent refused');
    if (e.code === 'HS_LABEL_REFUSED') ctx.recordLabelRefusal(h.agentId.slice(0, 64) || `token ${tokenId ?? '?'}`, this.remote, e.message);
    this.fail(closeCodeOf(e.code), e);
  }

  private async hello(h: Hello): Promise<void> {
    clearTimeout(this.helloTimer);
    const { ctx } = this;
    if (h.protocolVersion < MIN_PROTOCOL_VERSION) {
      ctx.metrics.connections.inc({ result: 'old_protocol' });
      this.fail(CLOSE.badProtocolVersion, new HsError('HS_PROTOCOL', `protocol ${h.protocolVersion} is older than ${MIN_PROTOCOL_VERSION}; upgrade the agent`));
      return;
    }
    const enrolling = h.joinToken !== '';
    const tokenId = enrolling ? Enrollment.tokenIdOf(h.joinToken) : null;
    const limited = enrolling ? !ctx.limits.attempts.take(this.address) || (tokenId !== null && ctx.limits.tokenFailures.exhausted(tokenId)) : ctx.limits.attempts.exhausted(this.address);
    if (limited) {
      this.refuse(new HsError('HS_RATE_LIMITED', 'too many attempts; try again later', { retryable: true }), h, tokenId);
      return;
    }
    const intro = { labels: h.labels, facts: h.facts, protocolVersion: h.protocolVersion, agentVersion: h.agentVersion };
    let credential = '';
    let agentId: string;
    let labels: Labels;
    let requested: Labels;
    try {
      if (enrolling) {
        const res = await ctx.enrollment.enroll(h.joinToken, intro);
        credential = res.credential;
        agentId = res.agent.id;
        labels = res.agent.labels;
        requested = res.agent.requestedLabels;
        ctx.metrics.enrollments.inc({ result: 'ok' });
        ctx.log.info({ agent: agentId, remote: this.remote, labels }, 'agent enrolled');
      } else {
        const rec = await ctx.enrollment.authenticate(h.agentId, h.credential);
        agentId = rec.id;
        ({ labels, requested } = ctx.enrollment.labelsFor(rec, intro));
      }
    } catch (err) {
      this.refuse(err, h, tokenId);
      return;
    }
    if (this.closed) return;
    const now = ctx.clock.now();
    await ctx.store.updateAgentHello(agentId, { labels, requestedLabels: requested, facts: h.facts, protocolVersion: h.protocolVersion, agentVersion: h.agentVersion, lastSeen: now });
    const last = (await ctx.store.getAgent(agentId))?.lastEventSeq ?? 0;
    // The connection may have closed during those awaits: registering it now would leave a stale "connected" agent.
    if (this.closed) return;
    this.socket.off('data', this.countPreAuth);
    this.slot.release();
    this.agentId = agentId;
    this.protocolVersion = h.protocolVersion;
    this.labels = labels;
    if (this.protocolVersion >= 3) this.docs.baseline.note(h.enforcing, h.held);
    else for (const a of h.enforcing) this.docs.baseline.mayHold.add(a.name);
    if (this.protocolVersion >= POLICY_PROTOCOL_VERSION) this.docs.policy.note(h.policies, h.policyHeld);
    ctx.register(this);
    ctx.metrics.connections.inc({ result: 'ok' });
    this.send({
      welcome: {
        protocolVersion: PROTOCOL_VERSION,
        agentId,
        credential,
        signingPublicKey: ctx.signingPublicKey,
        heartbeatIntervalMs: ctx.opts.heartbeatIntervalMs,
        maxMessageBytes: ctx.opts.maxMessageBytes,
        lastEventSeq: last,
        labels,
      },
    });
    if (h.enforcing.length > 0 || h.policies.length > 0) {
      this.acknowledged({ enforcing: h.enforcing, rejected: [], enforcementPaused: false, held: h.held, policies: h.policies, policiesRejected: [], policyHeld: h.policyHeld });
    }
    ctx.sendAssignment(this);
    for (const d of await ctx.escalations.pending(agentId)) {
      if (d.decisionPayload && d.decisionSignature) {
        this.send({ decision: { payload: d.decisionPayload, signature: d.decisionSignature, keyId: ctx.signingKeyId } });
      }
    }
  }

  private acknowledged(ack: AssignmentAck): void {
    if (this.agentId === null) return;
    const agentId = this.agentId;
    const at = this.ctx.clock.now();
    const rowsOf = (enforcing: Applied[], rejected: AssignmentAck['rejected']): AgentBaselineRecord[] => [
      ...enforcing.map((a) => ({ agentId, name: a.name, version: a.version, sha256: a.sha256, state: 'enforcing' as const, error: null, at })),
      ...rejected.map((r) => ({ agentId, name: r.name, version: r.version, sha256: '', state: 'rejected' as const, error: `${r.code}: ${r.message}`.slice(0, 1000), at })),
    ];
    for (const r of ack.rejected) {
      this.ctx.metrics.baselineRejections.inc({ code: metricCode(r.code) });
      this.ctx.quiet.write('warn', `refused-baseline:${agentId}`, { agent: agentId, baseline: r.name.slice(0, 100), version: r.version, code: r.code.slice(0, 64), message: r.message.slice(0, 300) }, 'agent refused a baseline');
    }
    const policies = this.protocolVersion >= POLICY_PROTOCOL_VERSION;
    for (const r of policies ? ack.policiesRejected : []) {
      this.ctx.quiet.write('warn', `refused-policy:${agentId}`, { agent: agentId, policy: r.name.slice(0, 100), version: r.version, code: r.code.slice(0, 64), message: r.message.slice(0, 300) }, 'agent refused a policy');
    }
    this.seen.enforcementPaused = ack.enforcementPaused;
    // The agent holds something it was not sent (a removal is due), or removed a name it is sent with an older signature
    // (a re-issue is due): only then is its assignment computed again.
    let stale = false;
    if (this.protocolVersion >= 3) stale = this.docs.baseline.note(ack.enforcing, ack.held);
    else for (const a of ack.enforcing) this.docs.baseline.mayHold.add(a.name);
    if (policies) stale = this.docs.policy.note(ack.policies, ack.policyHeld) || stale;
    this.ctx.recordAcknowledgement(agentId, rowsOf(ack.enforcing, ack.rejected), policies ? rowsOf(ack.policies, ack.policiesRejected) : null);
    this.ctx.report({ kind: 'acknowledged', agentId, ack });
    if (stale && this.protocolVersion >= 3) this.ctx.sendAssignment(this);
  }

  private onClose(): void {
    clearTimeout(this.helloTimer);
    this.socket.off('data', this.countPreAuth);
    this.slot.release();
    this.closed = true;
    this.ctx.unregister(this);
  }
}
