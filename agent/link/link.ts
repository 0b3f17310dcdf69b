// The agent's link to its controller: enrolls once (pinning the controller's signing key from the join token), then keeps a
// connection (reconnecting with jittered backoff, woken early when an unreachable controller answers again), applies signed
// assignments and removals of baselines and policies, delivers the audit outbox in order with acknowledgements, answers
// signed plan requests, and carries out signed decisions. When it cannot connect it says why (status), not only that it
// is offline.
import { systemClock, type Clock } from '../../lib/clock.js';
import { HsError, errorMessage } from '../../lib/errors.js';
import { parseJoinToken, type JoinToken } from '../../lib/join-token.js';
import type { Labels } from '../../lib/labels.js';
import type { Logger } from '../../lib/log.js';
import { keyIdOf, publicKeyFingerprint } from '../../lib/signing.js';
import { VERSION } from '../../lib/version.js';
import { POLICY_PROTOCOL_VERSION, PROTOCOL_VERSION, type ControllerMessage, type Decision, type HostFacts, type PlanRequest, type WireEvent, type Welcome } from '../../proto/codec.js';
import type { AuditEntry } from '../store/types.js';
import type { LinkedAgent, LinkStore } from './agent-port.js';
import { AssignmentKeeper } from './assignments.js';
import { Backoff, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.js';
import { Connection, agentEndpoint, checkTransport } from './connection.js';
import { loadCredentials, saveCredentials, type LinkCredentials } from './credentials.js';
import { collectFacts } from './facts.js';
import { LASTING, classifyClose, type LinkProblem, type LinkProblemReason } from './problems.js';
import { answerPlan } from './plans.js';
import { waitOrProbe } from './probe.js';
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
  /** Allows plain ws:// (both sides run with --insecure-http); see checkTransport for when it is still refused. */
  insecureHttp?: boolean;
  /** While the controller is unreachable, how often (on average) to probe it during a backoff step. */
  probeIntervalMs?: number;
}

export type LinkState = 'connecting' | 'connected' | 'offline' | 'stopped';

const DEFAULT_PROBE_INTERVAL_MS = 2_000;

const DECISIONS_KEY = 'link.decisionsDone';
const DEFAULT_BATCH = 1000;
/** How long delivery waits after the outbox could not be read before it tries again. */
const OUTBOX_RETRY_MS = 5000;

/**
 * What a decision record carries besides the audit entry's own fields, once the engine fills it in: the actor, the
 * decision, the changed field kinds and the resource's risk. Absent or null when unknown.
 */
export interface DecisionFields {
  actor?: unknown;
  decision?: unknown;
  changes?: readonly string[] | null;
  risk?: string | null;
}

/** JSON text of an object, or '' for none (the wire's "unknown"). */
const jsonOrEmpty = (v: unknown): string => (v === undefined || v === null ? '' : JSON.stringify(v));

export function wireEvent(e: AuditEntry & DecisionFields): WireEvent {
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
    actorJson: jsonOrEmpty(e.actor),
    decisionJson: jsonOrEmpty(e.decision),
    changes: [...(e.changes ?? [])],
    risk: e.risk ?? '',
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
    this.saveMeta('link.state', s);
  }
  lastError: string | null = null;
  problem: LinkProblem | null = null;
  agentId: string | null = null;
  private creds: LinkCredentials | undefined;
  private token: JoinToken | null = null;
  private keeper: AssignmentKeeper | undefined;
  private conn: Connection | undefined;
  /** The connection that completed the hello; frames of any other (or before the welcome) are ignored. */
  private welcomedConn: Connection | undefined;
  /** Set when this side drops a connection on purpose (key mismatch), or from the controller's Error frame before a close. */
  private connProblem: { reason?: LinkProblemReason; message: string } | undefined;
  private facts: HostFacts | undefined;
  private stopped = false;
  private readonly backoff: Backoff;
  private readonly clock: Clock;
  private readonly log: Logger;
  private wakeSleep: (() => void) | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private ackWaiter: { resolve: (upto: number) => void; reject: (err: Error) => void } | undefined;
  private wakeOutbox: (() => void) | undefined;
  private chain: Promise<void> = Promise.resolve();
  private unsubscribeAudit: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private maxMessageBytes = 8 * 1024 * 1024;
  /** The protocol the welcoming controller speaks: one before policies says nothing about them in its assignments. */
  private controllerProtocol = 0;

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

  /**
   * Loads the enrollment (or checks the token to enroll with: it must name the controller's signing key), checks the
   * transport is allowed, arms the cached signed baselines, starts connecting.
   */
  async start(): Promise<void> {
    this.creds = loadCredentials(this.opts.stateDir);
    if (!this.creds) {
      if (!this.opts.token) throw new HsError('HS_CONFIG', 'not enrolled with a controller yet: pass --token from `homeostatctl token create`');
      this.token = parseJoinToken(this.opts.token); // fail fast on a mistyped token
      if (this.token.format === 1) {
        throw new HsError('HS_CONFIG', 'this join token (hsj1) does not name the controller signing key to trust; create a new one with `homeostatctl token create`');
      }
    }
    checkTransport({ url: this.opts.url, insecureHttp: this.opts.insecureHttp ?? false, token: this.token, creds: this.creds });
    this.agentId = this.creds?.agentId ?? null;
    if (this.creds) {
      this.keeper = new AssignmentKeeper(this.agent, Buffer.from(this.creds.signingPublicKey, 'base64'), this.creds.agentId, this.clock, this.log);
      await this.keeper.loadCache();
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
    this.wakeSleep?.();
    this.conn?.close();
    this.wakeOutbox?.();
    await this.loop;
  }

  /**
   * Carries out a forget asked on this host (`carryOut`, agent/control) between the controller's frames, so no assignment
   * activates the set halfway through it. When it forgot a controller baseline, the link stops holding that one and tells
   * the controller at once with the acknowledgement it sends after activations (offline: its next hello says so).
   */
  async forgetting<R extends { name: string; origin: string }>(carryOut: () => Promise<R>): Promise<R> {
    const run = this.chain.then(async () => {
      const result = await carryOut();
      if (result.origin === 'controller') this.forgotten(result.name);
      return result;
    });
    this.chain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private forgotten(name: string): void {
    const keeper = this.keeper;
    if (!keeper) return;
    let held: boolean;
    try {
      held = keeper.forgetBaseline(name);
    } catch (err) {
      // The forget itself already dropped the cached copy (agent/control); only this run's memory is left to change.
      this.log.warn({ baseline: name, err: errorMessage(err) }, 'forgotten baseline not saved by the link');
      held = true;
    }
    if (!held) return;
    const conn = this.welcomedConn;
    const told = conn !== undefined && conn === this.conn && conn.isOpen();
    if (told) conn.send({ assignmentAck: keeper.report() });
    this.log.info({ baseline: name, toldController: told }, 'forgotten controller baseline no longer held');
  }

  private async run(): Promise<void> {
    let lastMessage = '';
    while (!this.stopped) {
      this.state = 'connecting';
      const { code, reason, err } = await this.connectOnce();
      if (this.stopped) break;
      this.state = 'offline';
      const problem = this.classify(code, reason, err);
      this.setProblem(problem);
      if (LASTING.includes(problem.reason)) this.backoff.saturate();
      const delay = this.backoff.next();
      // The same failure over and over is one warning, then debug lines: status says it for as long as it lasts.
      const level = problem.message === lastMessage ? 'debug' : 'warn';
      lastMessage = problem.message;
      this.log[level]({ code, reason: problem.reason, detail: problem.message, retryInMs: delay }, 'controller connection lost');
      await this.sleep(delay, problem.reason === 'unreachable');
    }
  }

  private classify(code: number, reason: string, err: HsError | undefined): LinkProblem {
    const said = this.connProblem;
    this.connProblem = undefined;
    return classifyClose({ code, reason, err, said, agentId: this.creds?.agentId ?? null, stateDir: this.opts.stateDir, url: this.opts.url, at: this.clock.now() });
  }

  private setProblem(p: LinkProblem | null): void {
    this.problem = p;
    this.lastError = p?.message ?? null;
    this.saveMeta('link.problem', p ? JSON.stringify(p) : '');
  }

  /** What `status` shows is best effort: a store that cannot be written (disk full) must not stop the link. */
  private saveMeta(key: string, value: string): void {
    try {
      this.agent.store?.setMeta(key, value);
    } catch (err) {
      this.log.warn({ key, err: errorMessage(err) }, 'link state not saved');
    }
  }

  /** Waits `ms`; when the controller was unreachable, probes it meanwhile and returns as soon as it answers. */
  private async sleep(ms: number, probe: boolean): Promise<void> {
    const wait = waitOrProbe(ms, probe ? { url: this.opts.url, everyMs: this.opts.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS } : null);
    this.wakeSleep = wait.wake;
    if ((await wait.done) === 'answered') this.log.info({ controller: this.opts.url }, 'controller answers again; reconnecting now');
    this.wakeSleep = undefined;
  }

  private connectOnce(): Promise<{ code: number; reason: string; err: HsError | undefined }> {
    return new Promise((resolve) => {
      const fingerprint = this.creds ? this.creds.tlsFingerprint : (this.token?.fingerprint ?? null);
      let conn: Connection;
      try {
        conn = new Connection(
          { url: this.opts.url, fingerprint, allowPlain: this.opts.insecureHttp ?? false },
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
              if (this.welcomedConn === conn) this.welcomedConn = undefined;
              resolve({ code, reason, err });
            },
          },
        );
      } catch (err) {
        resolve({ code: 0, reason: '', err: err instanceof HsError ? err : new HsError('HS_CONFIG', errorMessage(err)) });
        return;
      }
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
        // Only what this host asks for; the controller grants what the join token allows (facts travel apart).
        labels: this.opts.labels,
        ...(facts ? { facts } : {}),
        enforcing: this.keeper?.enforcing() ?? [],
        held: this.keeper?.held() ?? [],
        policies: this.keeper?.policies() ?? [],
        policyHeld: this.keeper?.policyHeld() ?? [],
      },
    });
  }

  private async handle(conn: Connection, msg: ControllerMessage): Promise<void> {
    if (conn !== this.conn) return;
    if (msg.body === 'welcome') return this.welcomed(conn, msg.welcome);
    if (msg.body === 'error') {
      this.lastError = `${msg.error.code}: ${msg.error.message}`;
      // Kept for the close that usually follows, so status says what the controller said.
      this.connProblem ??= { message: `${msg.error.code}: ${msg.error.message}`.slice(0, 500) };
      this.log.warn({ code: msg.error.code, message: msg.error.message, retryable: msg.error.retryable }, 'controller reported an error');
      return;
    }
    // Nothing is taken from a controller before it proved to be the pinned one (welcome checked).
    if (conn !== this.welcomedConn) return;
    switch (msg.body) {
      case 'assignment': {
        if (!this.keeper) return;
        const ack = await this.keeper.apply(msg.assignment, { policies: this.controllerProtocol >= POLICY_PROTOCOL_VERSION });
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
    }
  }

  /** Drops this connection because the controller is not the one to trust; nothing it sent is used. */
  private refuseController(conn: Connection, reason: LinkProblemReason, message: string): void {
    this.connProblem = { reason, message };
    this.log.error({ reason, detail: message }, 'controller refused');
    conn.send({ error: { code: 'HS_CONTROLLER_KEY', message, retryable: false } });
    conn.fail(new HsError('HS_CONTROLLER_KEY', message));
  }

  private async welcomed(conn: Connection, w: Welcome): Promise<void> {
    if (this.welcomedConn === conn) return;
    const key = Buffer.from(w.signingPublicKey);
    const presented = key.length === 32 ? keyIdOf(key) : '(none)';
    if (!this.creds) {
      const token = this.token;
      if (!token) return;
      // The token names the key: a controller that does not hold it gets nothing saved, whatever else it says.
      if (key.length !== 32 || publicKeyFingerprint(key) !== token.signingKey) {
        return this.refuseController(conn, 'key_mismatch', `the controller's signing key ${presented} is not the one the join token names: not the controller that made this token; nothing saved`);
      }
      if (w.credential === '' || w.agentId === '') return this.refuseController(conn, 'protocol', 'enrollment answered without an agent id and credential');
      this.creds = {
        agentId: w.agentId,
        credential: w.credential,
        signingPublicKey: key.toString('base64'),
        tlsFingerprint: token.fingerprint,
        insecureHttp: agentEndpoint(this.opts.url).startsWith('ws:'),
        controllerUrl: this.opts.url,
        enrolledAt: this.clock.now(),
      };
      saveCredentials(this.opts.stateDir, this.creds);
      this.keeper = new AssignmentKeeper(this.agent, key, w.agentId, this.clock, this.log);
      await this.keeper.loadCache();
      this.log.info({ agent: w.agentId, key: presented }, 'enrolled with the controller');
    } else if (key.toString('base64') !== this.creds.signingPublicKey) {
      const pinned = keyIdOf(Buffer.from(this.creds.signingPublicKey, 'base64'));
      return this.refuseController(
        conn,
        'key_mismatch',
        `the controller presents signing key ${presented}, not ${pinned} pinned at enrollment: restore the controller's signing.key from backup, or enroll this agent again (remove ${this.opts.stateDir}/controller.json, start with a new --token)`,
      );
    } else if (w.agentId !== this.creds.agentId) {
      return this.refuseController(conn, 'protocol', `the controller welcomed agent ${w.agentId}, not ${this.creds.agentId}`);
    }
    this.welcomedConn = conn;
    this.controllerProtocol = w.protocolVersion;
    this.agentId = w.agentId;
    this.saveMeta('agent.id', w.agentId);
    this.saveMeta('controller.url', this.opts.url);
    this.saveMeta('link.labels', JSON.stringify(w.labels ?? {}));
    this.state = 'connected';
    this.setProblem(null);
    this.backoff.reset();
    if (w.maxMessageBytes > 0) this.maxMessageBytes = w.maxMessageBytes;
    // Events the controller already holds (sent before a crash, acknowledged too late) need not be sent again.
    if (w.lastEventSeq > 0) {
      try {
        this.store.outboxAck(w.lastEventSeq);
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'outbox cursor not moved; events the controller holds may be sent again');
      }
    }
    const interval = w.heartbeatIntervalMs > 0 ? w.heartbeatIntervalMs : 30_000;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => this.sendHeartbeat(conn), interval);
    this.heartbeat.unref();
    this.sendHeartbeat(conn);
    this.log.info({ agent: w.agentId, controllerProtocol: w.protocolVersion, labels: w.labels }, 'connected to the controller');
    this.deliver(conn);
  }

  /** Runs the pump; a store that cannot be read (damaged, locked) pauses delivery, which tries again while connected. */
  private deliver(conn: Connection, failures = 0): void {
    this.pump(conn).catch((err: unknown) => {
      if (failures === 0) this.log.error({ err: errorMessage(err) }, 'event delivery paused: the outbox cannot be read');
      const t = setTimeout(() => {
        if (!this.stopped && this.conn === conn && conn.isOpen()) this.deliver(conn, failures + 1);
      }, OUTBOX_RETRY_MS);
      t.unref();
    });
  }

  private sendHeartbeat(conn: Connection): void {
    conn.probe();
    let s = { pending: 0, dropped: 0 };
    try {
      s = this.store.outboxStats();
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'outbox not readable for the heartbeat');
    }
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
        const size = 200 + e.observedJson.length + e.desiredJson.length + e.diff.length + e.detail.length + e.resource.length + (e.actorJson?.length ?? 0) + (e.decisionJson?.length ?? 0);
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

  /** Answers a plan request (plans.ts); nothing is observed unless it is signed for this agent and plan. */
  private async plan(conn: Connection, req: PlanRequest): Promise<void> {
    if (!this.creds) return;
    const result = await answerPlan(this.agent, this.creds, req, this.clock.now(), this.log);
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
