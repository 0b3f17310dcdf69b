// One agent connection: the hello handshake (enroll or authenticate), then heartbeats, acknowledgements, events and decisions.
// Frames are handled strictly one after another, so an agent's events are persisted in the order it sent them.
import type { WebSocket } from 'ws';
import { HsError, errorMessage } from '../../lib/errors.js';
import type { Labels } from '../../lib/labels.js';
import {
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  decodeAgentMessage,
  encodeControllerMessage,
  type AgentMessage,
  type AssignmentAck,
  type Hello,
  type OutgoingControllerMessage,
} from '../../proto/codec.js';
import { eventFromWire } from '../events.js';
import type { AgentBaselineRecord } from '../store/types.js';
import type { GatewayContext } from './gateway.js';

/** WebSocket close codes this controller uses (4xxx are application codes; the agent reads them to decide whether to retry). */
export const CLOSE = {
  goingAway: 1001,
  unsupportedData: 1003,
  invalidPayload: 1007,
  policy: 1008,
  tooBig: 1009,
  badProtocolVersion: 4400,
  unauthorized: 4401,
  replaced: 4409,
} as const;

export class AgentSession {
  agentId: string | null = null;
  labels: Labels = {};
  protocolVersion = 0;
  connectedAt: number;
  /** Key of the last assignment sent, so unchanged agents are not sent it again. */
  assignmentKey: string | null = null;
  seen: { lastSeen: number; outboxPending: number; outboxDropped: number; enforcementPaused: boolean; dirty: boolean };
  lastError: { code: string; message: string; at: number } | null = null;
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly helloTimer: NodeJS.Timeout;

  constructor(
    private readonly ctx: GatewayContext,
    readonly ws: WebSocket,
    readonly remote: string,
  ) {
    this.connectedAt = ctx.clock.now();
    this.seen = { lastSeen: this.connectedAt, outboxPending: 0, outboxDropped: 0, enforcementPaused: false, dirty: false };
    this.helloTimer = setTimeout(() => this.fail(CLOSE.policy, new HsError('HS_PROTOCOL', 'no hello in time', { retryable: true })), ctx.opts.helloTimeoutMs);
    ws.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    ws.on('error', (err) => {
      // ws reports oversized frames here (and closes with 1009); the connection is gone either way.
      const reason = (err as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' ? 'oversized' : 'socket';
      ctx.metrics.framesRejected.inc({ reason });
      ctx.log.warn({ agent: this.agentId, remote, reason, err: err.message }, 'agent connection error');
    });
    ws.on('close', () => this.onClose());
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
    this.ws.close(code, err.message.slice(0, 120));
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
      this.ctx.log.warn({ agent: this.agentId, remote: this.remote, err: errorMessage(err) }, 'malformed agent frame');
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
      case 'error':
        this.lastError = { code: msg.error.code, message: msg.error.message, at: this.ctx.clock.now() };
        this.ctx.metrics.agentErrors.inc({ code: msg.error.code || 'unknown' });
        this.ctx.log.warn({ agent: this.agentId, code: msg.error.code, message: msg.error.message }, 'agent reported an error');
        return;
    }
  }

  private async hello(h: Hello): Promise<void> {
    clearTimeout(this.helloTimer);
    const { ctx } = this;
    if (h.protocolVersion < MIN_PROTOCOL_VERSION) {
      ctx.metrics.connections.inc({ result: 'old_protocol' });
      this.fail(CLOSE.badProtocolVersion, new HsError('HS_PROTOCOL', `protocol ${h.protocolVersion} is older than ${MIN_PROTOCOL_VERSION}; upgrade the agent`));
      return;
    }
    let credential = '';
    let agentId: string;
    let tokenLabels: Labels = {};
    try {
      if (h.joinToken !== '') {
        const res = await ctx.enrollment.enroll(h.joinToken, { labels: h.labels, protocolVersion: h.protocolVersion, agentVersion: h.agentVersion });
        credential = res.credential;
        agentId = res.agent.id;
        tokenLabels = res.agent.labels;
        ctx.metrics.enrollments.inc({ result: 'ok' });
        ctx.log.info({ agent: agentId, remote: this.remote }, 'agent enrolled');
      } else {
        const rec = await ctx.enrollment.authenticate(h.agentId, h.credential);
        agentId = rec.id;
        tokenLabels = (await ctx.store.getJoinToken(rec.tokenId))?.labels ?? {};
      }
    } catch (err) {
      const e = err instanceof HsError ? err : new HsError('HS_AUTH', errorMessage(err));
      ctx.metrics[h.joinToken !== '' ? 'enrollments' : 'connections'].inc({ result: 'refused' });
      ctx.log.warn({ remote: this.remote, agent: h.agentId || undefined, err: e.message }, 'agent refused');
      this.fail(e.code === 'HS_AUTH' ? CLOSE.unauthorized : CLOSE.policy, e);
      return;
    }
    if (this.closed) return;
    this.agentId = agentId;
    this.protocolVersion = h.protocolVersion;
    this.labels = { ...tokenLabels, ...h.labels };
    const now = ctx.clock.now();
    await ctx.store.updateAgentHello(agentId, { labels: this.labels, facts: h.facts, protocolVersion: h.protocolVersion, agentVersion: h.agentVersion, lastSeen: now });
    const last = (await ctx.store.getAgent(agentId))?.lastEventSeq ?? 0;
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
      },
    });
    if (h.enforcing.length > 0) this.acknowledged({ enforcing: h.enforcing, rejected: [], enforcementPaused: false });
    ctx.sendAssignment(this);
    for (const d of await ctx.escalations.pending(agentId)) {
      if (d.decisionPayload && d.decisionSignature) {
        this.send({ decision: { payload: d.decisionPayload, signature: d.decisionSignature, keyId: ctx.signingKeyId } });
      }
    }
  }

  private acknowledged(ack: AssignmentAck): void {
    if (this.agentId === null) return;
    const at = this.ctx.clock.now();
    const rows: AgentBaselineRecord[] = [
      ...ack.enforcing.map((a) => ({ agentId: this.agentId ?? '', name: a.name, version: a.version, sha256: a.sha256, state: 'enforcing' as const, error: null, at })),
      ...ack.rejected.map((r) => ({ agentId: this.agentId ?? '', name: r.name, version: r.version, sha256: '', state: 'rejected' as const, error: `${r.code}: ${r.message}`, at })),
    ];
    for (const r of ack.rejected) {
      this.ctx.metrics.baselineRejections.inc({ code: r.code || 'unknown' });
      this.ctx.log.warn({ agent: this.agentId, baseline: r.name, version: r.version, code: r.code, message: r.message }, 'agent refused a baseline');
    }
    this.seen.enforcementPaused = ack.enforcementPaused;
    this.ctx.recordAcknowledgement(this.agentId, rows);
    this.ctx.report({ kind: 'acknowledged', agentId: this.agentId, ack });
  }

  private onClose(): void {
    clearTimeout(this.helloTimer);
    this.closed = true;
    this.ctx.unregister(this);
  }
}
