// The agent's composition root: wires the store, the host adapters, the engine and the active baselines into one object
// that the CLI, the daemon and the controller link drive.
import { HsError } from '../lib/errors.js';
import { systemClock, type Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { Baseline, ResourceDecl } from '../lib/baseline/types.js';
import { PolicySet, type ActivePolicy } from '../lib/policy/index.js';
import type { AgentSettings } from './settings.js';
import type { HostContext } from './resources/resource.js';
import { registry } from './resources/registry.js';
import { DirWatchHub } from './host/fswatch.js';
import { Journal } from './engine/journal.js';
import { Engine, worstOutcome, type ManagedResource } from './engine/engine.js';
import { planResources, type PlanOutcome } from './engine/plan.js';
import type { BaselineOutcome } from '../proto/codec.js';
import type { AgentStore } from './store/store.js';
import type { AuditEntry, AuditEvent, Trigger } from './store/types.js';

export type BaselineOrigin = 'local' | 'controller';

export interface ActiveBaseline {
  name: string;
  version: number;
  sha256: string;
  origin: BaselineOrigin;
  resources: number;
}

export interface AgentOptions {
  settings: AgentSettings;
  log: Logger;
  clock?: Clock;
  /** Absent for the read-only one-shot `check`, which records nothing. */
  store?: AgentStore;
}

export class Agent {
  readonly engine: Engine;
  readonly host: HostContext;
  readonly store: AgentStore | undefined;
  private readonly journal: Journal;
  private readonly hub: DirWatchHub;
  private readonly log: Logger;
  private readonly clock: Clock;
  private active: ActiveBaseline[] = [];
  /** The policy documents from the controller; kept and recorded, not yet consulted by the engine. */
  private policySet = new PolicySet();
  /** Resource ids of each active baseline (declared and derived), for plans and convergence reports. */
  private managedIds = new Map<string, string[]>();
  private started = false;

  constructor(opts: AgentOptions) {
    this.store = opts.store;
    this.log = opts.log;
    this.clock = opts.clock ?? systemClock;
    this.journal = new Journal(opts.store);
    this.hub = new DirWatchHub(opts.log, () => this.engine.enqueueAll('resync'));
    this.host = { log: opts.log, clock: this.clock, fsWatch: this.hub, settings: opts.settings, journal: this.journal, adapters: new Map() };
    this.engine = new Engine({ host: this.host, clock: this.clock, log: opts.log, ...(opts.store ? { store: opts.store } : {}) });
  }

  /**
   * Makes `baselines` the enforced set. Everything is checked before anything changes: on error this throws and the
   * previously active baselines keep being enforced.
   */
  async activate(baselines: Baseline[], meta: { origin: BaselineOrigin; versions?: Record<string, number> }, trigger: Trigger = 'manual'): Promise<ActiveBaseline[]> {
    const managed: ManagedResource[] = [];
    const owner = new Map<string, string>();
    const next: ActiveBaseline[] = [];
    const ids = new Map<string, string[]>();
    for (const b of baselines) {
      const version = this.storeVersion(b, meta);
      const decls = this.declsOf(b);
      ids.set(b.name, decls.map((d) => d.id));
      for (const decl of decls) {
        const other = owner.get(decl.id);
        if (other !== undefined) {
          throw new HsError('HS_BASELINE_CONFLICT', `${decl.id} is managed by both baseline '${other}' and baseline '${b.name}'`, { location: decl.location, resource: decl.id });
        }
        owner.set(decl.id, b.name);
        managed.push({ decl, baseline: { name: b.name, version } });
      }
      next.push({ name: b.name, version, sha256: b.origin.sha256, origin: meta.origin, resources: decls.length });
    }
    await this.engine.setResources(managed);
    const store = this.store;
    if (store) {
      store.transaction(() => {
        for (const a of this.active) if (!next.some((n) => n.name === a.name)) store.deactivate(a.name);
        for (const a of next) store.activate(a.name, a.version);
      });
    }
    const previous = new Map(this.active.map((a) => [a.name, a.version]));
    this.active = next;
    this.managedIds = ids;
    for (const a of next) {
      if (previous.get(a.name) !== a.version) this.recordAgent('baseline_activated', trigger, `${a.name} v${a.version} (${a.resources} resources, ${a.origin})`, a);
    }
    return next;
  }

  /** What activating `b` would change here, from observation only: nothing is written or recorded. */
  async plan(b: Baseline): Promise<PlanOutcome & { currentVersion: number }> {
    const out = await planResources(this.declsOf(b), this.host, this.managedIds.get(b.name) ?? []);
    return { ...out, currentVersion: this.active.find((a) => a.name === b.name)?.version ?? 0 };
  }

  /** Once the engine has settled: the worst outcome per active baseline, and which resources failed or were escalated. */
  async convergence(): Promise<BaselineOutcome[]> {
    await this.engine.idle();
    const results = new Map(this.engine.results().map((r) => [r.id, r]));
    return this.active.map((a) => {
      const rs = (this.managedIds.get(a.name) ?? []).flatMap((id) => {
        const r = results.get(id);
        return r ? [r] : [];
      });
      const bad = rs.filter((r) => r.outcome === 'failed' || r.outcome === 'escalated' || r.outcome === 'suppressed');
      const first = bad.find((r) => r.error);
      return {
        name: a.name,
        version: a.version,
        outcome: worstOutcome(rs.map((r) => r.outcome)),
        failed: bad.map((r) => r.id),
        detail: first?.error ? `${first.error.code}: ${first.error.message}` : '',
      };
    });
  }

  /**
   * Makes `policies` the active policy set. A set naming one policy twice or with a version below 1 is refused as a whole
   * (`policy_rejected`, and the previous set stays); otherwise `policy_activated` is recorded for each version new here.
   */
  async setPolicies(policies: ActivePolicy[], trigger: Trigger): Promise<void> {
    const names = new Set<string>();
    for (const p of policies) {
      const name = p.document.name;
      const problem = !Number.isInteger(p.version) || p.version < 1 ? `version ${p.version} is not a positive integer` : names.has(name) ? 'given twice in one set' : null;
      if (problem) {
        const err = new HsError('HS_POLICY_INVALID', `policy ${name}: ${problem}; the previous policies stay active`);
        this.recordAgent('policy_rejected', trigger, err.message, { name, version: p.version });
        throw err;
      }
      names.add(name);
    }
    const previous = new Map(this.policySet.policies.map((p) => [p.document.name, p.version]));
    this.policySet = new PolicySet(policies);
    for (const p of this.policySet.policies) {
      const d = p.document;
      if (previous.get(d.name) !== p.version) this.recordAgent('policy_activated', trigger, `${d.name} v${p.version} (${d.rules.length} rules, ${d.windows.size} windows)`, { name: d.name, version: p.version });
    }
  }

  activePolicies(): readonly ActivePolicy[] {
    return this.policySet.policies;
  }

  /** Records a baseline that was refused, so the audit says why the old one is still enforced. */
  recordRejectedBaseline(name: string | null, detail: string, trigger: Trigger): void {
    this.recordAgent('baseline_rejected', trigger, detail, name ? { name, version: 0 } : undefined);
  }

  /** Records what the controller link did or refused on the controller's behalf (removals, plan requests). */
  recordLinkEvent(event: AuditEvent, detail: string, baseline: { name: string; version: number } | null): void {
    this.recordAgent(event, 'controller', detail, baseline ?? undefined);
  }

  activeBaselines(): ActiveBaseline[] {
    return [...this.active];
  }

  async start(): Promise<void> {
    this.started = true;
    this.recordAgent('agent_started', 'startup', `${this.active.length} baseline(s), ${this.engine.resourceIds().length} resources`);
    await this.engine.start(this.host.settings.resyncIntervalMs);
  }

  async stop(): Promise<void> {
    await this.engine.stop();
    await this.hub.close();
    this.journal.flush();
    if (this.started) this.recordAgent('agent_stopped', null, 'stopped');
    this.started = false;
  }

  approve(resourceId: string): Promise<void> {
    if (!this.engine.approve(resourceId)) return Promise.reject(unknownResource(resourceId));
    return Promise.resolve();
  }

  async reject(resourceId: string, reason: string, expiresAt: number): Promise<void> {
    if (!(await this.engine.reject(resourceId, reason, expiresAt))) throw unknownResource(resourceId);
  }

  /** While paused (signed baselines past their expiry), drift is detected and reported but nothing is changed. */
  setEnforcementPaused(paused: boolean, reason: string): void {
    if (paused === this.engine.isPaused) return;
    this.engine.setPaused(paused);
    this.recordAgent('enforcement_paused', 'controller', paused ? `paused: ${reason}` : `resumed: ${reason}`);
  }

  onAudit(listener: (e: AuditEntry) => void): () => void {
    return this.engine.onAudit(listener);
  }

  private declsOf(b: Baseline): ResourceDecl[] {
    const decls: ResourceDecl[] = [...b.resources];
    for (const kind of registry.values()) decls.push(...(kind.derive?.(b, this.host.settings) ?? []));
    return decls;
  }

  private storeVersion(b: Baseline, meta: { origin: BaselineOrigin; versions?: Record<string, number> }): number {
    const assigned = meta.versions?.[b.name];
    if (!this.store) return assigned ?? 0;
    const { version } = this.store.putBaseline({
      name: b.name,
      sha256: b.origin.sha256,
      text: b.origin.text,
      sources: b.origin.sources,
      origin: meta.origin,
      ...(assigned !== undefined ? { version: assigned } : {}),
    });
    return version;
  }

  private recordAgent(event: AuditEvent, trigger: Trigger | null, detail: string, baseline?: { name: string; version: number }): void {
    this.engine.recordAgentEvent(event, trigger, detail, baseline);
  }
}

function unknownResource(id: string): HsError {
  return new HsError('HS_NOT_FOUND', `no managed resource ${id} on this agent`, { resource: id });
}
