// The agent's link to its controller: enrolls once, then keeps a connection (reconnecting with jittered backoff), applies
// signed assignments, delivers the audit outbox in order with acknowledgements, and carries out signed decisions.
import { systemClock, type Clock } from '../../lib/clock.js';
import { HsError, errorMessage } from '../../lib/errors.js';
import { parseJoinToken } from '../../lib/join-token.js';
import type { Labels } from '../../lib/labels.js';
import type { Logger } from '../../lib/log.js';
import { VERSION } from '../../lib/version.js';
import { PROTOCOL_VERSION, decodeBaselineDoc, type ControllerMessage, type Decision, type HostFacts, type PlanRequest, type PlanResult, type WireEvent, type Welcome } from '../../proto/codec.js';
import type { AuditEntry } from '../store/types.js';
import type { LinkedAgent, LinkStore } from './agent-port.js';
import { AssignmentKeeper, materialize } from './assignments.js';
import { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';
import { Connection } from './connection.js';
import { loadCredentials, saveCredentials, type LinkCredentials } from './credentials.js';
import { collectFacts, factLabels } from './facts.js';
import { verifyDecision } from './trust.js';

export interface LinkOptions {
  url: string;
  token?: string;
  stateDir: string;
  labels: Labels;
  log: Logger;
  clock?: Clock;
  backoff?: BackoffOptions;
  /** Host facts; collected with systeminformation when absent. */
  facts?: HostFacts;
  /** Most events per batch (also bounded by bytes). */
  batchSize?: number;
  ackTimeoutMs?: number;
}

export type LinkState = 'connecting' | 'connected' | 'offline' | 'stopped';

const DECISIONS_KEY = 'link.decisionsDone';
const DEFAULT_BATCH = 1000;

export function wireEvent(e: AuditEntry): WireEvent {
  return {
    seq: e.seq,
    time: e.time,
    resource: e.resource ?? '',
    event: e.event,
    trigger: e.trigger ?? '',
    baseline: e.baseline ?? '',
    version: e.version ?? 0,
    observedJson: e.observed === null ? '' : JSON.stringify(e.observed),
    desiredJson: e.desired === null ? '' : JSON.stringify(e.desired),
    diff: e.diff ?? '',
    detail: e.detail ?? '',
    prevHash: e.prevHash,
    hash: e.hash,
  };
}

export class ControllerLink {
  private linkState: LinkState = 'offline';

  /** The link's state, also kept in the cache so `homeostat-agent status` (another process) can show it. */
  get state(): LinkState {
    return this.linkState;
  }

  set state(s: LinkState) {
    this.linkState = s;
    this.agent.store?.setMeta('link.state', s);
  }
  lastError: string | null = null;
  agentId: string | null = null;
  private creds: LinkCredentials | undefined;
  private keeper: AssignmentKeeper | undefined;
  private conn: Connection | undefined;
  private facts: HostFacts | undefined;
  private stopped = false;
  private readonly backoff: Backoff;
  private readonly clock: Clock;
  private readonly log: Logger;
  private sleepTimer: NodeJS.Timeout | undefined;
  private wakeSleep: (() => void) | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private ackWaiter: { resolve: (upto: number) => void; reject: (err: Error) => void } | undefined;
  private wakeOutbox: (() => void) | undefined;
  private chain: Promise<void> = Promise.resolve();
  private unsubscribeAudit: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private maxMessageBytes = 8 * 1024 * 1024;

  constructor(
    private readonly agent: LinkedAgent,
    private readonly opts: LinkOptions,
  ) {
    this.backoff = new Backoff(opts.backoff ?? DEFAULT_BACKOFF);
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log;
  }

  private get store(): LinkStore {
    const s = this.agent.store;
    if (!s) throw new HsError('HS_CONFIG', 'the controller link needs the agent store');
    return s;
  }

  /** Loads the enrollment (or checks a token is there to enroll with), arms the cached signed baselines, starts connecting. */
  async start(): Promise<void> {
    this.creds = loadCredentials(this.opts.stateDir);
    if (!this.creds && !this.opts.token) throw new HsError('HS_CONFIG', 'not enrolled with a controller yet: pass --token from `homeostatctl token create`');
    if (!this.creds && this.opts.token) parseJoinToken(this.opts.token); // fail fast on a mistyped token
    this.agentId = this.creds?.agentId ?? null;
    if (this.creds) {
      this.keeper = new AssignmentKeeper(this.agent, Buffer.from(this.creds.signingPublicKey, 'base64'), this.clock, this.log);
      this.keeper.loadCache();
    }
    this.facts = this.opts.facts ?? (await collectFacts());
    this.unsubscribeAudit = this.agent.onAudit(() => this.wakeOutbox?.());
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.state = 'stopped';
    this.unsubscribeAudit?.();
    this.keeper?.stop();
    if (this.sleepTimer) clearTimeout(this.sleepTimer);
    this.wakeSleep?.();
    this.conn?.close();
    this.wakeOutbox?.();
    await this.loop;
  }

  status(): Record<string, unknown> {
    return {
      controller: this.opts.url,
      state: this.state,
      agentId: this.agentId,
      enrolled: this.creds !== undefined,
      lastError: this.lastError,
      enforcementPaused: this.keeper?.isPaused() ?? false,
      baselines: this.keeper?.enforcing() ?? [],
    };
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      this.state = 'connecting';
      const { code, reason, err } = await this.connectOnce();
      if (this.stopped) break;
      this.state = 'offline';
      this.lastError = err?.message ?? (reason || `closed with code ${code}`);
      if (code === 4401 || code === 4400) this.backoff.saturate();
      const delay = this.backoff.next();
      this.log.warn({ code, reason: this.lastError, retryInMs: delay }, 'controller connection lost');
      await this.sleep(delay);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wakeSleep = resolve;
      this.sleepTimer = setTimeout(resolve, ms);
    });
  }

  private connectOnce(): Promise<{ code: number; reason: string; err: HsError | undefined }> {
    return new Promise((resolve) => {
      const fingerprint = this.creds ? this.creds.tlsFingerprint : this.opts.token ? parseJoinToken(this.opts.token).fingerprint : null;
      const conn = new Connection(
        { url: this.opts.url, fingerprint },
        {
          onMessage: (msg) => {
            this.chain = this.chain.then(() => this.handle(conn, msg)).catch((e: unknown) => {
              this.log.error({ err: errorMessage(e) }, 'controller message failed');
            });
          },
          onClose: (code, reason, err) => {
            if (this.heartbeat) clearInterval(this.heartbeat);
            this.ackWaiter?.reject(new Error('connection closed'));
            this.ackWaiter = undefined;
            this.wakeOutbox?.();
            if (this.conn === conn) this.conn = undefined;
            resolve({ code, reason, err });
          },
        },
      );
      this.conn = conn;
      conn.onOpen(() => this.hello(conn));
    });
  }

  private hello(conn: Connection): void {
    const facts = this.facts ?? null;
    conn.send({
      hello: {
        protocolVersion: PROTOCOL_VERSION,
        agentVersion: VERSION,
        ...(this.creds ? { agentId: this.creds.agentId, credential: this.creds.credential } : { joinToken: this.opts.token ?? '' }),
        labels: facts ? factLabels(facts, this.opts.labels) : this.opts.labels,
        ...(facts ? { facts } : {}),
        enforcing: this.keeper?.enforcing() ?? [],
      },
    });
  }

  private async handle(conn: Connection, msg: ControllerMessage): Promise<void> {
    if (conn !== this.conn) return;
    switch (msg.body) {
      case 'welcome':
        return this.welcomed(conn, msg.welcome);
      case 'assignment': {
        if (!this.keeper) return;
        const ack = await this.keeper.apply(msg.assignment);
        conn.send({ assignmentAck: ack });
        for (const r of ack.rejected) conn.send({ error: { code: r.code, message: `${r.name} v${r.version}: ${r.message}`, retryable: false } });
        // Not awaited: the engine settling must not hold up the next frame.
        void this.reportConvergence(conn);
        return;
      }
      case 'planRequest':
        return this.plan(conn, msg.planRequest);
      case 'eventAck':
        this.ackWaiter?.resolve(msg.eventAck.uptoSeq);
        this.ackWaiter = undefined;
        return;
      case 'decision':
        return this.decide(conn, msg.decision);
      case 'error':
        this.lastError = `${msg.error.code}: ${msg.error.message}`;
        this.log.warn({ code: msg.error.code, message: msg.error.message, retryable: msg.error.retryable }, 'controller reported an error');
        return;
    }
  }

  private async welcomed(conn: Connection, w: Welcome): Promise<void> {
    const key = Buffer.from(w.signingPublicKey).toString('base64');
    if (!this.creds) {
      if (w.credential === '') throw new HsError('HS_PROTOCOL', 'enrollment answered without a credential');
      const fingerprint = this.opts.token ? parseJoinToken(this.opts.token).fingerprint : null;
      this.creds = { agentId: w.agentId, credential: w.credential, signingPublicKey: key, tlsFingerprint: fingerprint, controllerUrl: this.opts.url, enrolledAt: this.clock.now() };
      saveCredentials(this.opts.stateDir, this.creds);
      this.keeper = new AssignmentKeeper(this.agent, Buffer.from(key, 'base64'), this.clock, this.log);
      this.keeper.loadCache();
      this.log.info({ agent: w.agentId }, 'enrolled with the controller');
    } else if (key !== this.creds.signingPublicKey) {
      // The pinned key stays the only trust anchor; say so, so an operator sees why nothing is applied.
      this.log.error({ presented: key }, 'controller presents a signing key other than the pinned one');
      conn.send({ error: { code: 'HS_BASELINE_SIGNATURE', message: 'the controller signing key differs from the one pinned at enrollment', retryable: false } });
    }
    this.agentId = w.agentId;
    this.store.setMeta('agent.id', w.agentId);
    this.store.setMeta('controller.url', this.opts.url);
    this.state = 'connected';
    this.lastError = null;
    this.backoff.reset();
    if (w.maxMessageBytes > 0) this.maxMessageBytes = w.maxMessageBytes;
    // Events the controller already holds (sent before a crash, acknowledged too late) need not be sent again.
    if (w.lastEventSeq > 0) this.store.outboxAck(w.lastEventSeq);
    const interval = w.heartbeatIntervalMs > 0 ? w.heartbeatIntervalMs : 30_000;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => this.sendHeartbeat(conn), interval);
    this.heartbeat.unref();
    this.sendHeartbeat(conn);
    this.log.info({ agent: w.agentId, controllerProtocol: w.protocolVersion }, 'connected to the controller');
    void this.pump(conn);
  }

  private sendHeartbeat(conn: Connection): void {
    conn.probe();
    const s = this.store.outboxStats();
    conn.send({ heartbeat: { time: this.clock.now(), outboxPending: s.pending, outboxDropped: s.dropped, enforcementPaused: this.keeper?.isPaused() ?? false } });
  }

  /** Sends the outbox in seq order, one batch in flight, each acknowledged before the next. */
  private async pump(conn: Connection): Promise<void> {
    const batchSize = this.opts.batchSize ?? DEFAULT_BATCH;
    const budget = Math.floor(this.maxMessageBytes / 2);
    while (!this.stopped && this.conn === conn && conn.isOpen()) {
      const items = this.store.outboxPending(batchSize);
      if (items.length === 0) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 1000);
          this.wakeOutbox = () => {
            clearTimeout(t);
            // Let the engine finish its burst so one batch carries it.
            setImmediate(resolve);
          };
        });
        this.wakeOutbox = undefined;
        continue;
      }
      const events: WireEvent[] = [];
      let bytes = 0;
      for (const it of items) {
        const e = wireEvent(it.entry);
        const size = 200 + e.observedJson.length + e.desiredJson.length + e.diff.length + e.detail.length + e.resource.length;
        if (events.length > 0 && bytes + size > budget) break;
        events.push(e);
        bytes += size;
      }
      const upto = new Promise<number>((resolve, reject) => {
        this.ackWaiter = { resolve, reject };
      });
      conn.send({ events: { events } });
      let timer: NodeJS.Timeout | undefined;
      try {
        const acked = await Promise.race([
          upto,
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error('no acknowledgement in time')), this.opts.ackTimeoutMs ?? 30_000);
          }),
        ]);
        const last = events[events.length - 1]?.seq ?? 0;
        this.store.outboxAck(Math.min(acked, last));
      } catch (err) {
        if (this.conn === conn && conn.isOpen()) conn.fail(new HsError('HS_PROTOCOL', errorMessage(err), { retryable: true }));
        return;
      } finally {
        if (timer) clearTimeout(timer);
      }
    }
  }

  /** Tells the controller how the enforced baselines settled (a staged rollout's health signal). */
  private async reportConvergence(conn: Connection): Promise<void> {
    try {
      const names = new Set((this.keeper?.enforcing() ?? []).map((a) => a.name));
      const baselines = (await this.agent.convergence()).filter((b) => names.has(b.name));
      if (this.conn === conn && conn.isOpen()) conn.send({ convergence: { baselines } });
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'convergence report failed');
    }
  }

  /** Answers a plan request from observation only; the unsigned document is never activated. */
  private async plan(conn: Connection, req: PlanRequest): Promise<void> {
    let result: PlanResult;
    try {
      const p = await this.agent.plan(materialize(decodeBaselineDoc(req.baseline)));
      result = { planId: req.planId, ok: true, error: '', ...p };
    } catch (err) {
      const message = err instanceof HsError ? `${err.code}: ${err.message}` : errorMessage(err);
      result = { planId: req.planId, ok: false, error: message, currentVersion: 0, resources: 0, changes: [] };
    }
    if (this.conn === conn && conn.isOpen()) conn.send({ planResult: result });
  }

  private async decide(conn: Connection, d: Decision): Promise<void> {
    if (!this.creds) return;
    const v = verifyDecision(d, Buffer.from(this.creds.signingPublicKey, 'base64'), this.creds.agentId);
    if (!('doc' in v)) {
      this.log.warn({ reason: v.message }, 'decision refused');
      conn.send({ error: { code: 'HS_BASELINE_SIGNATURE', message: v.message, retryable: false } });
      return;
    }
    const doc = v.doc;
    const done = new Set<string>(JSON.parse(this.store.getMeta(DECISIONS_KEY) ?? '[]') as string[]);
    // A decision delivered twice (reconnect before the ack arrived) is carried out once.
    if (!done.has(doc.escalationId)) {
      try {
        if (doc.action === 'approve') await this.agent.approve(doc.resource);
        else await this.agent.reject(doc.resource, doc.reason || 'rejected by operator', doc.expiresAt);
        this.log.info({ escalation: doc.escalationId, resource: doc.resource, action: doc.action }, 'decision carried out');
      } catch (err) {
        conn.send({ decisionAck: { escalationId: doc.escalationId, ok: false, error: errorMessage(err) } });
        return;
      }
      const kept = [...done, doc.escalationId].slice(-500);
      this.store.setMeta(DECISIONS_KEY, JSON.stringify(kept));
    }
    conn.send({ decisionAck: { escalationId: doc.escalationId, ok: true, error: '' } });
  }
}
