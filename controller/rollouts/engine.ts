// The rollout engine: staged rollouts of baselines and policies in waves with health gates, automatic rollback, operator
// control, and waits for the operator's decisions on what a new version escalates. Shaped like a reconcile loop: agent
// reports only mark hosts and ask for a pass; a pass reads a rollout's whole state, advances it one step if it can, and
// asks to be called again. Every state change is in the store first, so a restarted controller resumes.
import { HsError } from '../../lib/errors.js';
import type { Clock } from '../../lib/clock.js';
import { selectorMatches } from '../../lib/labels.js';
import type { Logger } from '../../lib/log.js';
import { POLICY_PROTOCOL_VERSION, type Applied, type Rejected } from '../../proto/codec.js';
import type { BaselineService } from '../baselines.js';
import type { DocumentService, VersionRecord } from '../documents.js';
import type { EscalationService } from '../escalations.js';
import type { EventIngest } from '../events.js';
import type { AgentGateway, AgentReport } from '../gateway/gateway.js';
import type { PolicyService } from '../policies.js';
import type { ControllerStore, DocumentKind, EventRecord, RolloutHostRecord, RolloutHostStatus, RolloutRecord, RolloutState, RolloutStrategy } from '../store/types.js';
import { addEscalations, concernsRollout, ownEscalation, waveDecisions } from './approvals.js';
import { listedEscalations, rolloutView } from './view.js';
import { assignWaves, soakEnd } from './waves.js';

export interface RolloutEngineOptions {
  /** Longest wait between passes while a rollout runs (timeouts and soaks are checked at least this often). */
  tickMs: number;
}

export interface StartRollout {
  /** What is rolled out; default a baseline. */
  document?: DocumentKind;
  /** The name of the baseline (or policy) rolled out. */
  baseline: string;
  version: number;
  kind: 'all-at-once' | 'waves';
  spec: RolloutStrategy;
  /** Required to replace a rollout of the same baseline that is still running or paused. */
  supersede: boolean;
  by?: string;
}

export type OperatorAction = 'pause' | 'resume' | 'abort' | 'rollback';

interface Live {
  r: RolloutRecord;
  hosts: Map<string, RolloutHostRecord>;
  waves: number;
  dirty: Set<string>;
}

/** Events from the agents that make a host of the current wave unhealthy (an escalation of the new version's own: see onEscalation). */
const UNHEALTHY_EVENTS = new Set(['repair_failed', 'escalated', 'suppressed_flapping']);
const ACTIVE: RolloutState[] = ['running', 'paused'];
const FINAL: RolloutState[] = ['completed', 'rolled_back', 'aborted', 'superseded'];

export class RolloutEngine {
  private readonly live = new Map<number, Live>();
  private timer: NodeJS.Timeout | undefined;
  private passing: Promise<void> | null = null;
  private again = false;
  /** Tail of the chain every change of rollout state runs on: a pass step, an operator's action, a start. */
  private lock: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly unsubscribe: (() => void)[] = [];
  /** Agents on protocol 1 send no convergence reports: their acknowledgement has to do. */
  private readonly legacy = new Set<string>();

  constructor(
    private readonly deps: {
      store: ControllerStore;
      baselines: BaselineService;
      policies: PolicyService;
      gateway: AgentGateway;
      events: EventIngest;
      escalations: EscalationService;
      clock: Clock;
      log: Logger;
    },
    private readonly opts: RolloutEngineOptions = { tickMs: 250 },
  ) {}

  /** The signed documents a rollout hands out: its baseline's or its policy's. */
  private docs(r: { document: DocumentKind }): DocumentService<VersionRecord> {
    return r.document === 'policy' ? this.deps.policies : this.deps.baselines;
  }

  /** Restores running and paused rollouts (and what an aborted one left staged); call before agents connect. */
  async load(): Promise<void> {
    const latest = new Map<string, RolloutRecord>();
    for (const r of await this.deps.store.listRollouts()) latest.set(`${r.document}:${r.baseline}`, r);
    for (const r of latest.values()) {
      if (!r.signed && ACTIVE.includes(r.state)) {
        // The controller stopped inside start(), before the version was signed: nothing was handed out.
        await this.abandon(r, 'the controller stopped while starting this rollout; start it again');
        continue;
      }
      if (!r.signed || !(ACTIVE.includes(r.state) || r.state === 'aborted')) continue;
      const hosts = await this.deps.store.listRolloutHosts(r.id);
      const v = await this.docs(r).version(r.baseline, r.version);
      this.docs(r).restoreStaged(r.baseline, {
        rolloutId: r.id,
        record: { name: r.baseline, version: r.version, rollback: r.rollback, rolloutId: r.id, ...r.signed },
        selector: v.selector,
        admitted: new Set(hosts.filter((h) => h.wave <= r.currentWave).map((h) => h.agentId)),
      });
      if (ACTIVE.includes(r.state)) this.live.set(r.id, this.toLive(r, hosts));
    }
    this.unsubscribe.push(this.deps.gateway.onReport((rep) => this.onReport(rep)));
    this.unsubscribe.push(this.deps.events.onInserted((evs) => this.onEvents(evs)));
    // A decision (or the agent carrying it out) may let a waiting wave go on.
    this.unsubscribe.push(this.deps.escalations.onUpdate(() => this.kick()));
    this.kick();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const u of this.unsubscribe) u();
    await this.passing;
    for (const l of this.live.values()) await this.flushHosts(l);
  }

  async start(req: StartRollout): Promise<RolloutRecord> {
    const r = await this.exclusive(() => this.begin(req));
    await this.pass();
    return this.live.get(r.id)?.r ?? (await this.deps.store.getRollout(r.id)) ?? r;
  }

  /**
   * Creates a rollout. Everything that can be refused is checked before anything changes; once the record exists, a
   * failure marks it aborted with the cause (never a `running` record with nothing behind it).
   */
  private async begin(req: StartRollout): Promise<RolloutRecord> {
    const { store, clock } = this.deps;
    const document = req.document ?? 'baseline';
    const docs = this.docs({ document });
    const v = await docs.version(req.baseline, req.version);
    const rolling = [...this.live.values()].find((l) => l.r.document === document && l.r.baseline === req.baseline);
    if (rolling && !req.supersede) {
      throw new HsError('HS_CONFLICT', `rollout ${rolling.r.id} of ${document} ${req.baseline} is ${rolling.r.state}; pass "supersede": true to replace it`);
    }
    const agents = (await store.listAgents()).filter((a) => a.revokedAt === null && selectorMatches(v.selector ?? undefined, a.labels));
    const now = clock.now();
    if (rolling) await this.finish(rolling, 'superseded', 'superseded by a newer rollout', req.by);
    // Hosts an aborted or superseded rollout left on its version go back to the fleet's version before the new waves.
    await docs.unstage(req.baseline);
    const previous = docs.target(req.baseline);
    const draft: Omit<RolloutRecord, 'id'> = {
      document,
      baseline: req.baseline,
      version: req.version,
      previousVersion: previous?.version ?? null,
      strategy: req.kind,
      rollback: previous !== undefined && req.version < previous.version,
      createdAt: now,
      state: 'running',
      spec: req.spec,
      currentWave: -1,
      waveStartedAt: null,
      reason: null,
      pausedFor: null,
      updatedAt: now,
      finishedAt: null,
      signed: null,
    };
    const r = await store.addRollout(draft);
    try {
      const staged = await docs.stage(req.baseline, req.version, r.id);
      const { payload, signature, keyId, issuedAt, expiresAt } = staged.record;
      r.signed = { payload, signature, keyId, issuedAt, expiresAt };
      await store.updateRollout(r.id, { signed: r.signed });
      const waves = assignWaves(agents, req.spec, `rollout-${r.id}`);
      // Agents too old for policies are listed, not waited for: they keep what they have.
      const unsupported = (a: { protocolVersion: number }): boolean => document === 'policy' && a.protocolVersion < POLICY_PROTOCOL_VERSION;
      const hosts: RolloutHostRecord[] = agents.map((a) => ({
        rolloutId: r.id,
        agentId: a.id,
        wave: waves.get(a.id) ?? 0,
        status: unsupported(a) ? 'unsupported' : 'waiting',
        reason: unsupported(a) ? `agent protocol ${a.protocolVersion} predates policies (${POLICY_PROTOCOL_VERSION})` : null,
        rolledBack: false,
        updatedAt: now,
        escalations: [],
      }));
      await store.putRolloutHosts(hosts);
      const live = this.toLive(r, hosts);
      this.live.set(r.id, live);
      await this.audit(live, 'rollout_started', { document, version: r.version, previousVersion: r.previousVersion, hosts: hosts.length, waves: live.waves, strategy: req.spec, by: req.by ?? null });
      return live.r;
    } catch (err) {
      this.live.delete(r.id);
      if (docs.staging(req.baseline)?.rolloutId === r.id) await docs.unstage(req.baseline).catch(() => undefined);
      await this.abandon(r, `could not start: ${err instanceof Error ? err.message : String(err)}`).catch((e: unknown) => this.deps.log.error({ err: e, rollout: r.id }, 'rollout not marked aborted'));
      throw err;
    }
  }

  /** Marks a rollout that never handed anything out as aborted, with the reason. */
  private async abandon(r: RolloutRecord, reason: string): Promise<void> {
    const now = this.deps.clock.now();
    await this.deps.store.updateRollout(r.id, { state: 'aborted', reason, finishedAt: now, updatedAt: now });
    await this.deps.store.addControllerEvent({ time: now, kind: 'rollout_aborted', rolloutId: r.id, baseline: r.baseline, detail: { reason, by: null } });
    this.deps.log.warn({ rollout: r.id, baseline: r.baseline, reason }, 'rollout aborted');
  }

  /** An operator's action, run between pass steps so it never lands in the middle of one. */
  async act(id: number, action: OperatorAction, by?: string): Promise<RolloutRecord> {
    const r = await this.exclusive(() => this.actNow(id, action, by));
    this.kick();
    return r;
  }

  private async actNow(id: number, action: OperatorAction, by?: string): Promise<RolloutRecord> {
    const l = this.live.get(id);
    const r = l?.r ?? (await this.deps.store.getRollout(id));
    if (!r) throw new HsError('HS_NOT_FOUND', `no rollout ${id}`);
    const conflict = (): HsError => new HsError('HS_CONFLICT', `rollout ${id} is ${r.state}; cannot ${action}`);
    switch (action) {
      case 'pause':
        // A rollout waiting for decisions may be paused by an operator too: then it stays paused until resumed.
        if (!l || !(r.state === 'running' || (r.state === 'paused' && r.pausedFor === 'escalations'))) throw conflict();
        await this.setState(l, 'paused', `paused by ${by ?? 'an operator'}`, { pausedFor: 'operator' });
        await this.audit(l, 'rollout_paused', { by: by ?? null });
        break;
      case 'resume':
        if (!l || r.state !== 'paused') throw conflict();
        if (r.pausedFor === 'escalations') {
          throw new HsError('HS_CONFLICT', `rollout ${id} waits for decisions on escalations (${r.reason ?? ''}); approve or reject them, or abort or roll back the rollout`);
        }
        // Timeouts count from the resumption, not from before the pause.
        l.r.waveStartedAt = this.deps.clock.now();
        await this.setState(l, 'running', null, { waveStartedAt: l.r.waveStartedAt });
        await this.audit(l, 'rollout_resumed', { by: by ?? null });
        break;
      case 'abort':
        if (!l) throw conflict();
        await this.finish(l, 'aborted', `aborted by ${by ?? 'an operator'}`, by);
        break;
      case 'rollback': {
        if (l) {
          await this.rollBack(l, `rolled back by ${by ?? 'an operator'}`, by);
          break;
        }
        // An aborted rollout may still have hosts on its version.
        const staged = this.docs(r).staging(r.baseline);
        if (r.state !== 'aborted' || staged?.rolloutId !== r.id) throw conflict();
        const hosts = await this.deps.store.listRolloutHosts(r.id);
        const dead = this.toLive(r, hosts);
        await this.rollBack(dead, `rolled back by ${by ?? 'an operator'}`, by);
        break;
      }
    }
    return (await this.deps.store.getRollout(id)) ?? r;
  }

  /** The rollout with its waves and hosts, as the API shows it. */
  async status(id: number, opts: { hosts: boolean } = { hosts: true }): Promise<Record<string, unknown> | undefined> {
    const l = this.live.get(id);
    const r = l?.r ?? (await this.deps.store.getRollout(id));
    if (!r) return undefined;
    const hosts = (l ? [...l.hosts.values()] : await this.deps.store.listRolloutHosts(id)).sort((a, b) => a.wave - b.wave || a.agentId.localeCompare(b.agentId));
    const steps = await this.deps.store.listControllerEvents({ rolloutId: id, limit: 1000 });
    const ids = listedEscalations(hosts).flatMap((x) => (x.id === null ? [] : [x.id]));
    const escalations = ids.length > 0 ? await this.deps.store.getEscalations(ids) : [];
    return rolloutView(r, hosts, steps, escalations, { ...opts, now: this.deps.clock.now() });
  }

  // ---- the loop ----

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  /** Asks for a pass soon (coalesced). */
  private kick(): void {
    if (this.closed) return;
    if (this.passing) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pass(), 0);
  }

  private pass(): Promise<void> {
    if (this.passing) {
      this.again = true;
      return this.passing;
    }
    this.passing = (async () => {
      do {
        this.again = false;
        for (const l of [...this.live.values()]) {
          try {
            // An earlier step (or an operator between steps) may have ended this one.
            await this.exclusive(() => (this.live.get(l.r.id) === l ? this.reconcile(l) : Promise.resolve()));
          } catch (err) {
            this.deps.log.error({ err, rollout: l.r.id }, 'rollout pass failed; retrying');
          }
        }
      } while (this.again && !this.closed);
    })().finally(() => {
      this.passing = null;
      if (this.timer) clearTimeout(this.timer);
      // Ask to be called again while anything is running (soaks end and timeouts expire without any report) or waits for
      // decisions (their outcomes are looked up).
      if (!this.closed && [...this.live.values()].some((l) => l.r.state === 'running' || l.r.pausedFor === 'escalations')) {
        this.timer = setTimeout(() => void this.pass(), this.opts.tickMs);
        this.timer.unref();
      }
    });
    return this.passing;
  }

  /** One step for one rollout, from its whole state. */
  private async reconcile(l: Live): Promise<void> {
    const waitingForDecisions = l.r.state === 'paused' && l.r.pausedFor === 'escalations';
    if (l.r.state !== 'running' && !waitingForDecisions) return this.flushHosts(l);
    const now = this.deps.clock.now();
    if (l.waves === 0) return this.complete(l);
    if (l.r.currentWave < 0) return this.startWave(l, 0);
    const gate = l.r.spec.gate;
    const wave = [...l.hosts.values()].filter((h) => h.wave === l.r.currentWave);
    const started = l.r.waveStartedAt ?? now;
    const pending = await this.settleDecisions(l, wave, now);
    if (!waitingForDecisions) {
      for (const h of wave) {
        if ((h.status === 'sent' || h.status === 'acknowledged') && now - started > gate.ackTimeoutSeconds * 1000) {
          this.mark(l, h, 'failed', h.status === 'sent' ? `no acknowledgement within ${gate.ackTimeoutSeconds} s` : `not converged within ${gate.ackTimeoutSeconds} s`);
        }
      }
    }
    await this.flushHosts(l);
    const failed = [...l.hosts.values()].filter((h) => h.status === 'failed');
    if (failed.length > gate.maxFailedHosts) {
      const reasons = failed.slice(0, 20).map((h) => `${h.agentId}: ${h.reason ?? 'failed'}`);
      await this.audit(l, 'wave_unhealthy', { wave: l.r.currentWave, failed: failed.length, maxFailedHosts: gate.maxFailedHosts, reasons });
      // Waves are counted from 1 wherever people read them (records keep the index).
      const reason = `wave ${l.r.currentWave + 1} unhealthy: ${failed.length} failed host(s) > ${gate.maxFailedHosts} allowed (${reasons.slice(0, 3).join('; ')})`;
      if (l.r.spec.onFailure === 'rollback') return this.rollBack(l, reason);
      return this.setState(l, 'paused', reason, { pausedFor: 'operator' });
    }
    // The new version escalated: the wave waits for the operator's decisions instead of failing its hosts.
    if (pending.length > 0) {
      if (waitingForDecisions) return;
      const reason = `waiting for decisions on escalation${pending.length === 1 ? '' : 's'} ${pending.join(', ')} raised by the new version`;
      await this.setState(l, 'paused', reason, { pausedFor: 'escalations' });
      await this.audit(l, 'rollout_awaiting_decisions', { wave: l.r.currentWave, escalations: pending });
      return;
    }
    if (waitingForDecisions) {
      // Every decision is in and carried out: the wave goes on, its timeouts counted from now.
      l.r.waveStartedAt = now;
      await this.setState(l, 'running', null, { pausedFor: null, waveStartedAt: now });
      await this.audit(l, 'rollout_resumed', { by: 'decisions' });
      return;
    }
    // Soak: the wave has to stay healthy this long after its last host converged.
    const soaked = soakEnd({ spec: l.r.spec, waveStartedAt: started }, wave, now);
    if (soaked === undefined || now < soaked) return;
    await this.audit(l, 'wave_healthy', { wave: l.r.currentWave, hosts: wave.length, converged: wave.filter((h) => h.status === 'converged').length, offline: wave.filter((h) => h.status === 'offline').length });
    if (l.r.currentWave + 1 >= l.waves) return this.complete(l);
    return this.startWave(l, l.r.currentWave + 1);
  }

  /**
   * Looks up the decisions on what the new version escalated on this wave's hosts: a host whose escalations are all decided
   * and carried out converged; one whose decision failed on the agent failed. Returns the escalation ids still open.
   */
  private async settleDecisions(l: Live, wave: RolloutHostRecord[], now: number): Promise<number[]> {
    const open: number[] = [];
    const escalated = wave.filter((h) => h.status === 'escalated');
    if (escalated.length === 0) return open;
    const found = await waveDecisions(this.deps.store, escalated, now, l.r.spec.gate.ackTimeoutSeconds * 1000);
    for (const h of escalated) {
      const r = found.get(h.agentId);
      if (!r) continue;
      if (r.changed) l.dirty.add(h.agentId);
      if (r.decisions.state === 'failed') this.mark(l, h, 'failed', r.decisions.reason);
      else if (r.decisions.state === 'done') this.mark(l, h, 'converged', null);
      else open.push(...r.decisions.ids);
    }
    // Waiting on a resource whose escalation is not opened yet (its event still on its way) holds the wave, not a pause.
    return open;
  }

  private async startWave(l: Live, wave: number): Promise<void> {
    const now = this.deps.clock.now();
    const hosts = [...l.hosts.values()].filter((h) => h.wave === wave);
    for (const h of hosts) {
      if (h.status === 'unsupported') continue;
      const session = this.deps.gateway.session(h.agentId);
      if (session && l.r.document === 'policy' && session.protocolVersion < POLICY_PROTOCOL_VERSION) {
        this.mark(l, h, 'unsupported', `agent protocol ${session.protocolVersion} predates policies (${POLICY_PROTOCOL_VERSION})`);
        continue;
      }
      // A host offline now gets the version when it reconnects; it does not hold the wave up.
      this.mark(l, h, session ? 'sent' : 'offline', null);
    }
    l.r.currentWave = wave;
    l.r.waveStartedAt = now;
    await this.flushHosts(l);
    await this.save(l, { currentWave: wave, waveStartedAt: now });
    await this.audit(l, 'wave_started', { wave, hosts: hosts.length, offline: hosts.filter((h) => h.status === 'offline').length });
    this.docs(l.r).admit(l.r.baseline, hosts.map((h) => h.agentId));
  }

  private async complete(l: Live): Promise<void> {
    await this.docs(l.r).promote(l.r.baseline);
    await this.finish(l, 'completed', null);
  }

  private async rollBack(l: Live, reason: string, by?: string): Promise<void> {
    const now = this.deps.clock.now();
    const touched = [...l.hosts.values()].filter((h) => h.wave <= l.r.currentWave);
    for (const h of touched) {
      h.rolledBack = true;
      h.updatedAt = now;
      l.dirty.add(h.agentId);
    }
    await this.docs(l.r).unstage(l.r.baseline);
    await this.finish(l, 'rolled_back', reason, by, {
      previousVersion: l.r.previousVersion,
      hosts: touched.length,
      reasons: touched.filter((h) => h.status === 'failed').map((h) => ({ agent: h.agentId, reason: h.reason })),
    });
  }

  private async finish(l: Live, state: RolloutState, reason: string | null, by?: string, detail: Record<string, unknown> = {}): Promise<void> {
    const now = this.deps.clock.now();
    l.r.finishedAt = now;
    await this.setState(l, state, reason, { finishedAt: now, pausedFor: null });
    await this.flushHosts(l);
    this.live.delete(l.r.id);
    await this.audit(l, `rollout_${state}`, { reason, by: by ?? null, ...detail });
  }

  // ---- what agents report ----

  private onReport(rep: AgentReport): void {
    if (rep.kind === 'connected') {
      if (rep.protocolVersion < 2) this.legacy.add(rep.agentId);
      else this.legacy.delete(rep.agentId);
      return;
    }
    for (const l of this.live.values()) {
      const h = l.hosts.get(rep.agentId);
      if (!h || h.wave > l.r.currentWave || h.status === 'failed') continue;
      const current = h.wave === l.r.currentWave;
      switch (rep.kind) {
        case 'disconnected':
          if (current && l.r.state === 'running' && (h.status === 'sent' || h.status === 'acknowledged' || h.status === 'converged')) {
            this.mark(l, h, 'failed', 'lost connection during its wave');
          }
          break;
        case 'acknowledged': {
          const policy = l.r.document === 'policy';
          const [enforcing, rejected]: [Applied[], Rejected[]] = policy ? [rep.ack.policies, rep.ack.policiesRejected] : [rep.ack.enforcing, rep.ack.rejected];
          const refused = rejected.find((x) => x.name === l.r.baseline && x.version === l.r.version);
          if (refused) {
            this.mark(l, h, 'failed', `rejected: ${refused.code}: ${refused.message}`);
            break;
          }
          const holds = enforcing.some((x) => x.name === l.r.baseline && x.version === l.r.version);
          // A policy held is as far as an agent reports on it; a baseline converges after its pass (protocol 2 on).
          if (holds && (h.status === 'sent' || h.status === 'offline')) this.mark(l, h, policy || this.legacy.has(h.agentId) ? 'converged' : 'acknowledged', null);
          break;
        }
        case 'converged': {
          if (l.r.document !== 'baseline') break;
          const o = rep.convergence.baselines.find((x) => x.name === l.r.baseline && x.version === l.r.version);
          if (!o) break;
          if (o.outcome === 'escalated' && l.r.spec.onEscalation !== 'fail') {
            // Only escalations: the version's own first pass handed them to a human.
            if (l.r.spec.onEscalation === 'pause') this.escalate(l, h, o.failed, o.detail);
            else if (h.status === 'sent' || h.status === 'acknowledged' || h.status === 'offline') this.mark(l, h, 'converged', null);
          } else if (o.outcome === 'failed' || o.outcome === 'escalated' || o.outcome === 'suppressed') {
            this.mark(l, h, 'failed', `${o.outcome}: ${o.failed.join(', ')}${o.detail ? ` (${o.detail})` : ''}`);
          } else if (h.status === 'sent' || h.status === 'acknowledged' || h.status === 'offline') {
            this.mark(l, h, 'converged', null);
          }
          break;
        }
        case 'planned':
          break;
      }
    }
  }

  private onEvents(events: EventRecord[]): void {
    for (const l of this.live.values()) {
      if (l.r.state !== 'running' && l.r.pausedFor !== 'escalations') continue;
      for (const e of events) {
        if (!UNHEALTHY_EVENTS.has(e.event) || !concernsRollout(l.r, e)) continue;
        const h = l.hosts.get(e.agentId);
        if (!h || h.wave !== l.r.currentWave || h.status === 'failed' || h.status === 'waiting' || h.status === 'unsupported' || e.time < (l.r.waveStartedAt ?? 0)) continue;
        if (ownEscalation(l.r, e) && l.r.spec.onEscalation !== 'fail') {
          if (l.r.spec.onEscalation === 'pause' && e.resource !== null) this.escalate(l, h, [e.resource], e.detail ?? '');
          continue;
        }
        this.mark(l, h, 'failed', `${e.event}${e.resource ? ` ${e.resource}` : ''}${e.detail ? `: ${e.detail}` : ''}`);
      }
    }
  }

  /** The new version escalated these resources on a host: it waits for the operator's decisions on them. */
  private escalate(l: Live, h: RolloutHostRecord, resources: readonly string[], detail: string): void {
    if (h.status === 'failed' || h.status === 'waiting' || h.status === 'unsupported') return;
    const added = addEscalations(h, resources, this.deps.clock.now());
    if (!added && h.status === 'escalated') return;
    const listed = h.escalations.map((x) => x.resource);
    this.mark(l, h, 'escalated', `escalated ${listed.slice(0, 5).join(', ')}${listed.length > 5 ? ` and ${listed.length - 5} more` : ''}: waiting for a decision${detail ? ` (${detail.slice(0, 200)})` : ''}`);
  }

  private mark(l: Live, h: RolloutHostRecord, status: RolloutHostStatus, reason: string | null): void {
    h.status = status;
    h.reason = reason;
    h.updatedAt = this.deps.clock.now();
    l.dirty.add(h.agentId);
    this.kick();
  }

  // ---- persistence ----

  private toLive(r: RolloutRecord, hosts: RolloutHostRecord[]): Live {
    return { r, hosts: new Map(hosts.map((h) => [h.agentId, h])), waves: hosts.reduce((m, h) => Math.max(m, h.wave + 1), 0), dirty: new Set() };
  }

  private async flushHosts(l: Live): Promise<void> {
    if (l.dirty.size === 0) return;
    const rows = [...l.dirty].flatMap((id) => {
      const h = l.hosts.get(id);
      return h ? [{ ...h }] : [];
    });
    l.dirty.clear();
    await this.deps.store.putRolloutHosts(rows);
  }

  private async setState(l: Live, state: RolloutState, reason: string | null, extra: Partial<RolloutRecord> = {}): Promise<void> {
    l.r.state = state;
    l.r.reason = reason;
    // Running is never paused for anything; a pause says what it waits for.
    const pausedFor = state === 'paused' ? (extra.pausedFor ?? l.r.pausedFor ?? 'operator') : null;
    l.r.pausedFor = pausedFor;
    await this.save(l, { state, reason, ...extra, pausedFor });
    if (FINAL.includes(state)) this.deps.log.info({ rollout: l.r.id, document: l.r.document, name: l.r.baseline, version: l.r.version, state, reason }, 'rollout finished');
  }

  private async save(l: Live, patch: Partial<Omit<RolloutRecord, 'id'>>): Promise<void> {
    const now = this.deps.clock.now();
    l.r.updatedAt = now;
    await this.deps.store.updateRollout(l.r.id, { ...patch, updatedAt: now });
  }

  private async audit(l: Live, kind: string, detail: Record<string, unknown>): Promise<void> {
    await this.deps.store.addControllerEvent({ time: this.deps.clock.now(), kind, rolloutId: l.r.id, baseline: l.r.baseline, detail });
    // The record keeps the wave's index; the log, like the API, counts waves from 1.
    const shown = typeof detail.wave === 'number' ? { ...detail, wave: detail.wave + 1 } : detail;
    this.deps.log.info({ rollout: l.r.id, document: l.r.document, name: l.r.baseline, version: l.r.version, ...shown }, kind);
  }
}
