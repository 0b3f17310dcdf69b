// The engine: keeps the managed set, and drives the one reconcile path (reconcile.ts) from watch events, polls, retries
// and a periodic full resync (polls.ts), deciding with decisions.ts and recording through recorder.ts. Nothing a resource
// kind, a listener or the store throws ends it.
import { HsError, errorMessage, type SourceLocation } from '../../lib/errors.js';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import type { HostContext, Resource } from '../resources/resource.js';
import { registry } from '../resources/registry.js';
import type { AuditEntry, AuditEvent, Trigger } from '../store/types.js';
import { sha256 } from '../host/fsops.js';
import { MOUNT_CHANGED } from '../host/fswatch.js';
import type { PolicySet } from '../../lib/policy/decide.js';
import { Decisions, type ExceptionStore } from './decisions.js';
import { DriftHistory, type DriftHistorySource } from './history.js';
import { Polls } from './polls.js';
import { errorJson, finishedWithin, reconcile, type ActorLookup, type EngineStats, type ReconcileContext } from './reconcile.js';
import { Recorder, type AuditSink } from './recorder.js';
import { declKey, fingerprint, newRuntime, resultOf, type BaselineRef, type ManagedResource, type ResourceResult, type Runtime } from './runtime.js';
import { WorkQueue } from './queue.js';

export type { ActorLookup } from './reconcile.js';
export { worstOutcome, type ManagedResource, type Outcome, type ResourceResult, type BaselineRef } from './runtime.js';
export type { AcceptedDrift } from './decisions.js';

/** The part of the agent store the engine writes to; absent for a one-shot `check`. */
export interface EngineStore extends AuditSink, ExceptionStore, DriftHistorySource {
  putBackup(resource: string, time: number, content: Buffer, sha256: string, seq?: number): void;
}

export interface EngineOptions {
  host: HostContext;
  store?: EngineStore;
  clock: Clock;
  log: Logger;
  concurrency?: number;
  /** How long one reconcile may take before it is recorded as timed out (default 2 min). */
  reconcileTimeoutMs?: number;
}

/** What a declaration's fields become once its resource exists (see setResources). */
const RELEASED_FIELDS: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>;

const releasedLocations = new Map<string, SourceLocation>();
/** One location per baseline file for every declaration whose resource exists: line and column are not kept. */
function releasedLocation(file: string): SourceLocation {
  let l = releasedLocations.get(file);
  if (!l) {
    if (releasedLocations.size > 64) releasedLocations.clear();
    l = Object.freeze({ file, line: 0, column: 0 });
    releasedLocations.set(file, l);
  }
  return l;
}

/** Longer than any host adapter's own timeout (a systemd job may take 90 s), so the adapter says what it waited for. */
export const DEFAULT_RECONCILE_TIMEOUT_MS = 120_000;
const STARTUP_PASS_BOUND_MS = 60_000;
/** Stopping waits this long for reconciles in flight; one stuck on a hung filesystem is left behind. */
const STOP_WAIT_MS = 10_000;

export class Engine {
  private readonly runtimes = new Map<string, Runtime>();
  private readonly queue: WorkQueue;
  private readonly recorder: Recorder;
  private readonly decisions: Decisions;
  private readonly polls: Polls;
  private readonly ctx: ReconcileContext;
  private running = false;
  private actors: ActorLookup | undefined;
  private readonly counters: EngineStats = { reconciles: 0, repairs: 0, failures: 0, timeouts: 0 };

  constructor(private readonly opts: EngineOptions) {
    const { clock, log, store } = opts;
    this.recorder = new Recorder(store, clock, log);
    this.decisions = new Decisions(store, this.recorder, clock, log);
    this.queue = new WorkQueue(
      (id, trigger) => this.reconcileId(id, trigger),
      opts.concurrency ?? 16,
      (id, err) => log.error({ resource: id, err: errorMessage(err) }, 'reconcile failed unexpectedly'),
    );
    this.polls = new Polls(clock, (id, trigger) => this.queue.add(id, trigger));
    this.ctx = {
      decisions: this.decisions,
      actors: () => this.actors,
      history: new DriftHistory(store, log),
      recorder: this.recorder,
      polls: this.polls,
      clock,
      log,
      stats: this.counters,
      deadlineMs: opts.reconcileTimeoutMs ?? DEFAULT_RECONCILE_TIMEOUT_MS,
      retries: () => this.running,
      keepReplaced: (rt, content, seq) => this.keepReplaced(rt, content, seq),
    };
  }

  /** Counts since start: reconciles, repairs, failures, timeouts, records not written, listeners that failed. */
  get stats(): EngineStats & { recordErrors: number; listenerErrors: number } {
    return { ...this.counters, recordErrors: this.recorder.stats.recordErrors, listenerErrors: this.recorder.stats.listenerErrors };
  }

  onAudit(listener: (e: AuditEntry) => void): () => void {
    return this.recorder.onAudit(listener);
  }

  resourceIds(): string[] {
    return [...this.runtimes.keys()];
  }

  results(): ResourceResult[] {
    const out: ResourceResult[] = [];
    for (const rt of this.runtimes.values()) {
      const r = resultOf(rt);
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * Replaces the managed set. Unchanged resources keep their runtime (watches, flap history); changed or new ones are
   * created afresh; removed ones are closed. Throws before changing anything when a resource cannot be created.
   * `beforeReconcile` runs once the new set is in place and before any of it is looked at (the activation's record then
   * comes before the drifts it causes); new and changed resources are then reconciled with `trigger`.
   */
  async setResources(list: ManagedResource[], trigger: Trigger = 'controller', beforeReconcile?: () => void): Promise<void> {
    const next = new Map<string, { managed: ManagedResource; key: string; resource?: Resource }>();
    const created: Resource[] = [];
    try {
      for (const m of list) {
        const current = this.runtimes.get(m.decl.id);
        // The very declaration it runs (the other origin's set, passed again): unchanged without looking.
        if (current && current.decl === m.decl) {
          next.set(m.decl.id, { managed: m, key: current.key });
          continue;
        }
        const key = declKey(m.decl);
        if (current && current.key === key) {
          next.set(m.decl.id, { managed: m, key });
          continue;
        }
        const kind = registry.get(m.decl.type);
        if (!kind) {
          throw new HsError('HS_RESOURCE_UNKNOWN_TYPE', `resource type '${m.decl.type}' is not known to this agent (known: ${[...registry.keys()].join(', ')})`, {
            location: m.decl.location,
            resource: m.decl.id,
          });
        }
        const resource = kind.create(m.decl, this.opts.host);
        created.push(resource);
        next.set(m.decl.id, { managed: m, key, resource });
      }
    } catch (err) {
      for (const r of created) await this.closeQuietly(r);
      throw err;
    }
    const fresh: string[] = [];
    for (const [id, rt] of this.runtimes) {
      const n = next.get(id);
      if (!n || n.resource) await this.retire(rt);
      if (!n) this.runtimes.delete(id);
    }
    for (const [id, n] of next) {
      // The resource has read what it needs, and the key stands for the rest: content, modes and owners are not kept
      // twice (with 10,000 files the declarations' fields would be the largest thing in the heap), nor where each was
      // written (only errors at creation name it).
      n.managed.decl.fields = RELEASED_FIELDS;
      n.managed.decl.location = n.managed.decl.location.line === 0 ? n.managed.decl.location : releasedLocation(n.managed.decl.location.file);
      const current = this.runtimes.get(id);
      if (current && !n.resource) {
        current.decl = n.managed.decl;
        current.baseline = n.managed.baseline;
        continue;
      }
      if (!n.resource) continue;
      const rt = newRuntime(n.managed, n.resource, n.key);
      // A drift waiting for a human keeps waiting under the new declaration (docs/baseline.md, "Escalations").
      const waiting = current?.drift?.awaitingHuman;
      if (waiting !== undefined) this.decisions.awaitHuman(rt, waiting);
      this.runtimes.set(id, rt);
      if (this.running) {
        await this.arm(rt);
        fresh.push(id);
      }
    }
    beforeReconcile?.();
    for (const id of fresh) this.queue.add(id, trigger);
    if (this.running) this.polls.schedule(this.runtimes.values());
  }

  /** Drifts of these resources were escalated before (an earlier run's records) and wait for a human; returns how many are managed here. */
  holdForHuman(escalations: { resource: string; baseline: string | null; version: number | null }[]): number {
    let n = 0;
    for (const e of escalations) {
      const rt = this.runtimes.get(e.resource);
      if (!rt) continue;
      this.decisions.awaitHuman(rt, e.baseline ? `${e.baseline} v${e.version ?? 0}` : undefined);
      n++;
    }
    return n;
  }

  /** Starts continuous enforcement: arm every watch, then look at everything once (drift found now is `startup`). */
  async start(resyncIntervalMs: number): Promise<void> {
    this.running = true;
    for (const rt of this.runtimes.values()) await this.arm(rt);
    this.polls.schedule(this.runtimes.values());
    const t0 = this.opts.clock.monotonic();
    this.enqueueAll('startup');
    this.polls.startResync(resyncIntervalMs, () => this.enqueueAll('resync'));
    // Ready means enforced: wait for the first full pass, bounded so a storm of events cannot hold start-up forever.
    await finishedWithin(this.queue.idle(), STARTUP_PASS_BOUND_MS);
    this.opts.log.info({ resources: this.runtimes.size, ms: Math.round(this.opts.clock.monotonic() - t0) }, 'initial pass done');
  }

  enqueueAll(trigger: Trigger): void {
    for (const id of this.runtimes.keys()) this.queue.add(id, trigger);
  }

  idle(): Promise<void> {
    return this.queue.idle();
  }

  /** One pass over every resource (the one-shot `apply`): reconcile, wait for all, return the results. */
  async converge(trigger: Trigger): Promise<ResourceResult[]> {
    this.enqueueAll(trigger);
    await this.queue.idle();
    return this.results();
  }

  /** Observes and compares every resource without changing or recording anything. */
  async check(): Promise<ResourceResult[]> {
    const out: ResourceResult[] = [];
    const list = [...this.runtimes.values()];
    let next = 0;
    const one = async (r: Resource): Promise<ResourceResult> => {
      const observed = await r.observe();
      const changes = r.diff(observed);
      return { id: r.id, outcome: changes.length ? 'drifted' : 'kept', changes, observed: r.summarize(observed), desired: r.desired() };
    };
    const worker = async (): Promise<void> => {
      for (let i = next++; i < list.length; i = next++) {
        const rt = list[i];
        if (!rt) continue;
        const r = rt.resource;
        const failed = (err: unknown): ResourceResult => ({ id: r.id, outcome: 'failed', changes: [], ...desiredOf(r), error: errorJson(err) });
        const p = one(r).catch(failed);
        if (await finishedWithin(p, this.ctx.deadlineMs)) out.push(await p);
        else out.push(failed(new HsError('HS_HOST_TIMEOUT', `${r.id} did not answer within ${this.ctx.deadlineMs / 1000} s`, { resource: r.id, retryable: true })));
      }
    };
    await Promise.all(Array.from({ length: Math.min(16, list.length) }, worker));
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Who made each drift is asked of `actors` from now on (undefined: drifts carry no actor). */
  setActors(actors: ActorLookup | undefined): void {
    this.actors = actors;
  }

  /**
   * Decides drift by `set` from now on, and looks again at every standing drift (deferred, monitored, escalated, accepted)
   * so the new rules apply to it; a drift waiting for a human or accepted by one stays so (decisions.ts).
   */
  setPolicies(set: PolicySet): void {
    this.decisions.policies = set;
    for (const rt of this.runtimes.values()) {
      if (rt.outcome === 'drifted' || rt.outcome === 'escalated' || rt.outcome === 'excepted') this.queue.add(rt.id, 'controller');
    }
  }

  get policies(): PolicySet {
    return this.decisions.policies;
  }

  setPaused(paused: boolean): void {
    this.decisions.paused = paused;
    if (!paused) this.enqueueAll('controller');
  }

  get isPaused(): boolean {
    return this.decisions.paused;
  }

  /** An operator approved a repair: lift suppression and backoff, repair once now. */
  approve(id: string, trigger: Trigger = 'controller', detail?: string): boolean {
    const rt = this.runtimes.get(id);
    if (!rt) return false;
    this.decisions.approve(rt);
    this.recorder.resource(rt, 'approved', trigger, detail !== undefined ? { detail } : {});
    this.queue.add(id, trigger);
    return true;
  }

  /** An operator accepted the current drift until `expiresAt`: it is left alone while it stays exactly this drift. */
  async reject(id: string, reason: string, expiresAt: number, trigger: Trigger = 'controller', by?: string): Promise<boolean> {
    const rt = this.runtimes.get(id);
    if (!rt) return false;
    const r = rt.resource;
    const look = (async () => {
      const observed = await r.observe();
      return { observed, changes: r.diff(observed) };
    })();
    if (!(await finishedWithin(look, this.ctx.deadlineMs))) {
      throw new HsError('HS_HOST_TIMEOUT', `${id} did not answer within ${this.ctx.deadlineMs / 1000} s; the drift to accept is not known`, { resource: id, retryable: true });
    }
    const { observed, changes } = await look;
    this.decisions.accept(rt, fingerprint(changes), reason, expiresAt);
    this.recorder.resource(rt, 'rejected', trigger, {
      observed: r.summarize(observed),
      desired: r.desired(),
      detail: `drift accepted until ${new Date(expiresAt).toISOString()}${by ? ` by ${by}` : ''}: ${reason}`,
    });
    return true;
  }

  /** Records an event that concerns the agent or a baseline rather than one resource. */
  recordAgentEvent(event: AuditEvent, trigger: Trigger | null, detail: string, baseline?: BaselineRef, resource: string | null = null): void {
    this.recorder.agent(event, trigger, detail, baseline, resource);
  }

  async stop(): Promise<void> {
    this.running = false;
    this.queue.stop();
    this.polls.stop();
    for (const rt of this.runtimes.values()) rt.drift?.cancelRetry?.();
    if (!(await finishedWithin(this.queue.idle(), STOP_WAIT_MS))) this.opts.log.warn({ waitedMs: STOP_WAIT_MS }, 'stopping with reconciles still in flight');
    for (const rt of this.runtimes.values()) await this.retire(rt);
  }

  private reconcileId(id: string, trigger: Trigger): Promise<void> {
    const rt = this.runtimes.get(id);
    return rt ? reconcile(this.ctx, rt, trigger) : Promise.resolve();
  }

  private async arm(rt: Runtime): Promise<void> {
    if (!rt.resource.watch) return;
    const id = rt.id;
    try {
      rt.disposeWatch = await rt.resource.watch((reason) => {
        if (reason === MOUNT_CHANGED) this.decisions.liftBackoff(rt); // what failed for want of a filesystem may work now
        this.queue.add(id, 'watch');
      });
    } catch (err) {
      // A watch that cannot be armed leaves the resource to its poll and the resync; the reconcile reports the cause.
      this.opts.log.warn({ resource: id, err: errorMessage(err) }, 'watch failed');
    }
  }

  private async retire(rt: Runtime): Promise<void> {
    rt.retired = true;
    rt.drift?.cancelRetry?.();
    try {
      await rt.disposeWatch?.();
    } catch (err) {
      this.opts.log.warn({ resource: rt.id, err: errorMessage(err) }, 'watch not released');
    }
    rt.disposeWatch = undefined;
    await this.closeQuietly(rt.resource);
  }

  private async closeQuietly(r: Resource): Promise<void> {
    try {
      await r.close?.();
    } catch (err) {
      this.opts.log.warn({ resource: r.id, err: errorMessage(err) }, 'resource not closed cleanly');
    }
  }

  private keepReplaced(rt: Runtime, content: Buffer, seq: number): void {
    try {
      this.opts.store?.putBackup(rt.id, this.opts.clock.now(), content, sha256(content), seq);
    } catch (err) {
      this.opts.log.warn({ resource: rt.id, err: errorMessage(err) }, 'replaced content not kept');
    }
  }
}

function desiredOf(r: Resource): { desired?: Record<string, unknown> } {
  try {
    return { desired: r.desired() };
  } catch {
    return {};
  }
}
