// The agent: which baselines are enforced, from where, and what the CLI, the daemon and the controller link may ask of
// it. Baselines come from two places kept apart — the host's own files (`local`) and the controller (`controller`, its
// versions kept under its signing key) — and a resource is enforced from one place only: an activation that would give
// a resource (or a baseline name) to both is refused naming both, and what is enforced stays. Built by compose.ts.
import { HsError, errorMessage } from '../lib/errors.js';
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import type { Baseline, ResourceDecl } from '../lib/baseline/types.js';
import { PolicySet, type ActivePolicy, type PolicyDocument } from '../lib/policy/index.js';
import type { HostContext } from './resources/resource.js';
import { registry } from './resources/registry.js';
import type { Engine, ManagedResource, BaselineRef } from './engine/engine.js';
import { worstOutcome } from './engine/engine.js';
import { planResources, type PlanOutcome } from './engine/plan.js';
import type { BaselineOutcome } from '../proto/codec.js';
import type { AgentStore } from './store/store.js';
import type { AuditEntry, AuditEvent, BaselineOrigin, Trigger } from './store/types.js';

export type { BaselineOrigin } from './store/types.js';

export interface ActiveBaseline {
  name: string;
  version: number;
  sha256: string;
  origin: BaselineOrigin;
  resources: number;
}

export interface ActivationMeta {
  origin: BaselineOrigin;
  /** Version numbers the controller assigned, by name; local versions are numbered by the store. */
  versions?: Record<string, number>;
  /** The controller's signing key id: its version numbers are kept apart from any other controller's. */
  signedBy?: string;
}

interface ActiveSet {
  baselines: ActiveBaseline[];
  /** Resource ids of each baseline (declared and derived), for plans, convergence and conflicts. */
  ids: Map<string, string[]>;
  managed: ManagedResource[];
  signedBy: string | undefined;
}

const EMPTY: ActiveSet = { baselines: [], ids: new Map(), managed: [], signedBy: undefined };

export interface AgentParts {
  engine: Engine;
  host: HostContext;
  log: Logger;
  clock: Clock;
  /** Absent for the read-only one-shot `check`, which records nothing. */
  store?: AgentStore;
  /** Releases the host adapters the composition root made (watches, journal) once the engine has stopped. */
  closeHost?: () => Promise<void>;
}

export class Agent {
  readonly engine: Engine;
  readonly host: HostContext;
  readonly store: AgentStore | undefined;
  private readonly log: Logger;
  private readonly closeHost: (() => Promise<void>) | undefined;
  private readonly sets: Record<BaselineOrigin, ActiveSet> = { local: EMPTY, controller: EMPTY };
  /** The policy documents of each origin; the engine decides every drift by both together. */
  private readonly policySets: Record<BaselineOrigin, readonly ActivePolicy[]> = { local: [], controller: [] };
  private started = false;
  /** Called after each activation that changed the managed set (the daemon gives memory back then). */
  afterActivation: (() => void) | undefined;

  constructor(parts: AgentParts) {
    this.engine = parts.engine;
    this.host = parts.host;
    this.store = parts.store;
    this.log = parts.log;
    this.closeHost = parts.closeHost;
  }

  /**
   * Makes `baselines` the enforced set of their origin (the other origin's set stays). Everything is checked before
   * anything changes: on error this throws and what was enforced keeps being enforced.
   */
  async activate(baselines: Baseline[], meta: ActivationMeta, trigger: Trigger = 'manual'): Promise<ActiveBaseline[]> {
    const origin = meta.origin;
    const other = origin === 'local' ? this.sets.controller : this.sets.local;
    const otherOrigin: BaselineOrigin = origin === 'local' ? 'controller' : 'local';
    const owner = new Map<string, { baseline: string; version: number; origin: BaselineOrigin }>();
    for (const a of other.baselines) for (const id of other.ids.get(a.name) ?? []) owner.set(id, { baseline: a.name, version: a.version, origin: otherOrigin });
    const next: ActiveSet = { baselines: [], ids: new Map(), managed: [], signedBy: meta.signedBy };
    for (const b of baselines) {
      const clash = other.baselines.find((a) => a.name === b.name);
      if (clash) {
        throw new HsError(
          'HS_BASELINE_CONFLICT',
          `baseline '${b.name}' from ${describeOrigin(origin, meta.signedBy)} is refused: '${b.name}' v${clash.version} is enforced from ${describeOrigin(otherOrigin, other.signedBy)}; a baseline is enforced from one place — remove it from ${originNoun(otherOrigin)} to hand it over`,
        );
      }
      const version = this.storeVersion(b, meta);
      const ref: BaselineRef = { name: b.name, version };
      const decls = this.declsOf(b);
      next.ids.set(b.name, decls.map((d) => d.id));
      for (const decl of decls) {
        const first = owner.get(decl.id);
        if (first !== undefined) {
          const where = (x: { baseline: string; version: number; origin: BaselineOrigin }, signedBy: string | undefined): string => `baseline '${x.baseline}' v${x.version} (${describeOrigin(x.origin, signedBy)})`;
          throw new HsError(
            'HS_BASELINE_CONFLICT',
            `${decl.id} is managed by both ${where(first, first.origin === origin ? meta.signedBy : other.signedBy)} and ${where({ baseline: b.name, version, origin }, meta.signedBy)}${first.origin === origin ? '' : `: a resource is enforced from one place — remove it from ${originNoun(first.origin)} to hand it over`}`,
            { location: decl.location, resource: decl.id },
          );
        }
        owner.set(decl.id, { baseline: b.name, version, origin });
        next.managed.push({ decl, baseline: ref });
      }
      next.baselines.push({ name: b.name, version, sha256: b.origin.sha256, origin, resources: decls.length });
    }
    const previous = this.sets[origin];
    const before = new Map(previous.baselines.map((a) => [a.name, a.version]));
    // Recorded once the new set is in place and before it is looked at: the activation comes before the drifts it causes.
    const recordActivated = (): void => {
      for (const a of next.baselines) {
        if (before.get(a.name) !== a.version) this.recordAgent('baseline_activated', trigger, `${a.name} v${a.version} (${a.resources} resources, ${a.origin})`, a);
      }
    };
    await this.engine.setResources(origin === 'local' ? [...next.managed, ...other.managed] : [...other.managed, ...next.managed], trigger, recordActivated);
    this.sets[origin] = next;
    this.saveActive(origin, previous, next);
    this.afterActivation?.();
    // The link records the controller's signed removals itself; what else leaves is recorded here.
    if (origin === 'local' || previous.signedBy !== next.signedBy) {
      for (const a of previous.baselines) {
        if (!next.baselines.some((n) => n.name === a.name)) this.recordAgent('baseline_removed', trigger, `${a.name} v${a.version} (${a.origin}) no longer enforced`, a);
      }
    }
    return next.baselines;
  }

  /**
   * Baselines of `origin` cached by an earlier run that are not to be enforced now (a host managed by a controller and
   * given no baseline files of its own): no longer active in the cache, each recorded as removed, saying why.
   */
  dropCached(origin: BaselineOrigin, cached: { name: string; version: number; signedBy: string | undefined }[], detail: (b: BaselineRef) => string): void {
    for (const b of cached) {
      try {
        this.store?.deactivate(origin, b.signedBy, b.name);
      } catch (err) {
        this.log.error({ baseline: b.name, err: errorMessage(err) }, 'cached baseline not deactivated');
      }
      this.recordAgent('baseline_removed', 'startup', detail(b), b);
    }
  }

  /** What activating `b` would change here, from observation only: nothing is written or recorded. */
  async plan(b: Baseline): Promise<PlanOutcome & { currentVersion: number }> {
    const set = this.sets.controller;
    const out = await planResources(this.declsOf(b), this.host, set.ids.get(b.name) ?? []);
    return { ...out, currentVersion: set.baselines.find((a) => a.name === b.name)?.version ?? 0 };
  }

  /** Once the engine has settled: the worst outcome per active baseline, and which resources failed or were escalated. */
  async convergence(): Promise<BaselineOutcome[]> {
    await this.engine.idle();
    const results = new Map(this.engine.results().map((r) => [r.id, r]));
    return this.activeSets().flatMap((set) =>
      set.baselines.map((a) => {
        const rs = (set.ids.get(a.name) ?? []).flatMap((id) => {
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
      }),
    );
  }

  /**
   * Makes `policies` the active policy set of `origin` (the controller's by default; the other origin's set stays). A set
   * naming one policy twice, with a version below 1, or a name the other origin has, is refused as a whole
   * (`policy_rejected`, and the previous set stays); otherwise `policy_activated` is recorded for each version new here,
   * `policy_removed` for each local one no longer given, and the engine decides by the new policies, standing drifts too.
   */
  async setPolicies(policies: ActivePolicy[], trigger: Trigger, origin: BaselineOrigin = 'controller'): Promise<void> {
    const names = new Set<string>();
    const other = this.policySets[origin === 'local' ? 'controller' : 'local'];
    for (const p of policies) {
      const name = p.document.name;
      const clash = other.find((o) => o.document.name === name);
      const problem = !Number.isInteger(p.version) || p.version < 1
        ? `version ${p.version} is not a positive integer`
        : names.has(name)
          ? 'given twice in one set'
          : clash
            ? `v${clash.version} is active from ${originNoun(origin === 'local' ? 'controller' : 'local')}; a policy is taken from one place`
            : null;
      if (problem) {
        const err = new HsError('HS_POLICY_INVALID', `policy ${name}: ${problem}; the previous policies stay active`);
        this.recordAgent('policy_rejected', trigger, err.message, { name, version: p.version });
        throw err;
      }
      names.add(name);
    }
    const previous = new Map(this.policySets[origin].map((p) => [p.document.name, p.version]));
    const next = new PolicySet(policies).policies;
    this.policySets[origin] = next;
    this.engine.setPolicies(new PolicySet([...this.policySets.local, ...this.policySets.controller]));
    for (const p of next) {
      const d = p.document;
      if (previous.get(d.name) !== p.version) this.recordAgent('policy_activated', trigger, `${d.name} v${p.version} (${d.rules.length} rules, ${d.windows.size} windows${origin === 'local' ? ', local' : ''})`, { name: d.name, version: p.version });
    }
    // The link records the controller's signed removals itself; a local file no longer given is recorded here.
    if (origin === 'local') {
      for (const [name, version] of previous) if (!names.has(name)) this.recordAgent('policy_removed', trigger, `${name} v${version} (local) no longer active`, { name, version });
    }
  }

  /**
   * Makes the host's own policy files the local policy set, numbered like local baselines: the same text keeps its
   * version, a new text of a name is the next version. The texts are kept in the cache (meta `policies.local`), so
   * `explain` can quote the rule that decided and a start with a bad file can fall back to the last good versions.
   */
  async setLocalPolicies(docs: PolicyDocument[], trigger: Trigger): Promise<ActivePolicy[]> {
    const cache = readLocalPolicies(this.store);
    const active: ActivePolicy[] = [];
    for (const d of docs) {
      const versions = cache[d.name] ?? [];
      let known = versions.find((v) => v.sha256 === d.origin.sha256);
      if (!known) {
        known = { version: (versions[versions.length - 1]?.version ?? 0) + 1, sha256: d.origin.sha256, file: d.origin.file, text: d.origin.text };
        cache[d.name] = [...versions, known].slice(-LOCAL_POLICY_VERSIONS_KEPT);
      }
      active.push({ document: d, version: known.version });
    }
    await this.setPolicies(active, trigger, 'local');
    try {
      this.store?.setMeta(LOCAL_POLICIES_KEY, JSON.stringify({ ...cache, [ACTIVE]: active.map((a) => ({ name: a.document.name, version: a.version })) }));
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'local policies not cached; they are enforced all the same');
    }
    return active;
  }

  activePolicies(): readonly ActivePolicy[] {
    return this.engine.policies.policies;
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
    return this.activeSets().flatMap((s) => s.baselines);
  }

  async start(): Promise<void> {
    this.started = true;
    this.recordAgent('agent_started', 'startup', `${this.activeBaselines().length} baseline(s), ${this.engine.resourceIds().length} resources`);
    await this.engine.start(this.host.settings.resyncIntervalMs);
  }

  async stop(): Promise<void> {
    await this.engine.stop();
    await this.closeHost?.();
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

  /** Whether drift of this resource is only ever reported (monitor mode). */
  isReportOnly(resourceId: string): boolean {
    for (const set of this.activeSets()) for (const m of set.managed) if (m.decl.id === resourceId) return m.decl.policy.mode === 'monitor';
    return false;
  }

  onAudit(listener: (e: AuditEntry) => void): () => void {
    return this.engine.onAudit(listener);
  }

  private activeSets(): ActiveSet[] {
    return [this.sets.local, this.sets.controller];
  }

  private declsOf(b: Baseline): ResourceDecl[] {
    const decls: ResourceDecl[] = [...b.resources];
    for (const kind of registry.values()) decls.push(...(kind.derive?.(b, this.host.settings) ?? []));
    return decls;
  }

  /** The version `b` is stored as. A store that cannot be written (disk full) does not stop enforcement: see below. */
  private storeVersion(b: Baseline, meta: ActivationMeta): number {
    const assigned = meta.versions?.[b.name];
    const store = this.store;
    if (!store) return assigned ?? 0;
    try {
      return store.putBaseline({
        name: b.name,
        sha256: b.origin.sha256,
        text: b.origin.text,
        sources: b.origin.sources,
        origin: meta.origin,
        ...(meta.signedBy !== undefined ? { signedBy: meta.signedBy } : {}),
        ...(assigned !== undefined ? { version: assigned } : {}),
      }).version;
    } catch (err) {
      if (err instanceof HsError && (err.code === 'HS_CONFLICT' || err.code === 'HS_STORE_MIGRATION')) throw err;
      // Enforced all the same: a full or damaged cache must not leave the host unenforced. The version is the one the
      // controller gave, or the one already stored for this text, or 0 when it could not be numbered.
      const known = assigned ?? store.findVersion(meta.origin, meta.signedBy, b.name, b.origin.sha256) ?? 0;
      this.log.error({ baseline: b.name, version: known, err: errorMessage(err) }, 'baseline enforced but not stored');
      return known;
    }
  }

  /** Remembers the active set of `origin` for the next start; a failure is logged (enforcement already changed). */
  private saveActive(origin: BaselineOrigin, previous: ActiveSet, next: ActiveSet): void {
    const store = this.store;
    if (!store) return;
    try {
      store.transaction(() => {
        for (const a of previous.baselines) if (!next.baselines.some((n) => n.name === a.name)) store.deactivate(origin, previous.signedBy, a.name);
        if (origin === 'controller' && previous.signedBy !== next.signedBy) store.deactivateAll('controller');
        for (const a of next.baselines) if (a.version > 0) store.activate(origin, next.signedBy, a.name, a.version);
      });
    } catch (err) {
      this.log.error({ origin, err: errorMessage(err) }, 'active baselines not saved; the next start enforces what the cache had');
    }
  }

  private recordAgent(event: AuditEvent, trigger: Trigger | null, detail: string, baseline?: BaselineRef): void {
    this.engine.recordAgentEvent(event, trigger, detail, baseline ? { name: baseline.name, version: baseline.version } : undefined);
  }
}

/** Meta key of the local policy versions: by name, the last few versions (text included), and which are active. */
export const LOCAL_POLICIES_KEY = 'policies.local';
const ACTIVE = '#active';
const LOCAL_POLICY_VERSIONS_KEPT = 8;

export interface LocalPolicyVersion {
  version: number;
  sha256: string;
  file: string;
  text: string;
}

/** The local policy versions cached in `store`, by name (an unreadable cache is empty). */
export function readLocalPolicies(store: Pick<AgentStore, 'getMeta'> | undefined): Record<string, LocalPolicyVersion[]> {
  try {
    const parsed = JSON.parse(store?.getMeta(LOCAL_POLICIES_KEY) ?? '{}') as Record<string, unknown>;
    const out: Record<string, LocalPolicyVersion[]> = {};
    for (const [k, v] of Object.entries(parsed)) if (k !== ACTIVE && Array.isArray(v)) out[k] = v as LocalPolicyVersion[];
    return out;
  } catch {
    return {};
  }
}

/** The local policy versions active when the cache was last written. */
export function activeLocalPolicies(store: Pick<AgentStore, 'getMeta'> | undefined): LocalPolicyVersion[] {
  try {
    const parsed = JSON.parse(store?.getMeta(LOCAL_POLICIES_KEY) ?? '{}') as Record<string, unknown>;
    const active = Array.isArray(parsed[ACTIVE]) ? (parsed[ACTIVE] as { name: string; version: number }[]) : [];
    const all = readLocalPolicies(store);
    return active.flatMap((a) => all[a.name]?.filter((v) => v.version === a.version) ?? []);
  } catch {
    return [];
  }
}

function describeOrigin(origin: BaselineOrigin, signedBy: string | undefined): string {
  return origin === 'local' ? "this host's own baseline files" : `the controller${signedBy ? ` (signing key ${signedBy})` : ''}`;
}

function originNoun(origin: BaselineOrigin): string {
  return origin === 'local' ? "this host's baseline files" : 'the controller';
}

function unknownResource(id: string): HsError {
  return new HsError('HS_NOT_FOUND', `no managed resource ${id} on this agent`, { resource: id });
}
