// The engine: one reconcile path for every resource kind — observe, compare, decide, repair, verify, record —
// driven by watch events, polls for kinds without events, and a periodic full resync as the safety net.
import { createHash } from 'node:crypto';
import { HsError, errorMessage } from '../../lib/errors.js';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import type { ResourceDecl } from '../../lib/baseline/types.js';
import type { Change, Disposer, HostContext, Resource } from '../resources/resource.js';
import { registry } from '../resources/registry.js';
import type { AuditEntry, AuditEvent, NewAuditEntry, Trigger } from '../store/types.js';
import { WorkQueue } from './queue.js';
import { decide, ESCALATE_AFTER_FAILURES, retryDelayMs, type Decision } from './policy.js';
import { sha256 } from '../host/fsops.js';
import { MOUNT_CHANGED } from '../host/fswatch.js';

/** A declared resource and the baseline version it came from. */
export interface ManagedResource {
  decl: ResourceDecl;
  baseline: { name: string; version: number };
}

/** The fixed set of outcomes of one reconcile; when several resources are summed up, the worst wins. */
export type Outcome = 'kept' | 'repaired' | 'drifted' | 'excepted' | 'escalated' | 'suppressed' | 'failed';

export interface ResourceResult {
  id: string;
  outcome: Outcome;
  changes: Change[];
  observed?: Record<string, unknown>;
  desired?: Record<string, unknown>;
  error?: { code: string; message: string };
}

export interface AcceptedDrift {
  resource: string;
  fingerprint: string;
  reason: string;
  expiresAt: number;
}

/** The part of the agent store the engine writes to; absent for a one-shot `check`. */
export interface EngineStore {
  appendAudit(e: NewAuditEntry): AuditEntry;
  putBackup(resource: string, time: number, content: Buffer, sha256: string): void;
  putException(e: AcceptedDrift): void;
  deleteException(resource: string): void;
  listExceptions(): AcceptedDrift[];
}

export interface EngineOptions {
  host: HostContext;
  store?: EngineStore;
  clock: Clock;
  log: Logger;
  concurrency?: number;
}

interface Runtime {
  managed: ManagedResource;
  resource: Resource;
  /** Identity of the declaration, computed when first needed. */
  key: string | undefined;
  repairs: number[];
  suppressed: boolean;
  approved: boolean;
  failures: number;
  retryAt: number;
  retryTimer: NodeJS.Timeout | undefined;
  /** Fingerprint of the drift last recorded without repair (report/escalate), so a standing drift is recorded once. */
  recordedDrift: string | undefined;
  disposeWatch: Disposer | undefined;
  last: ResourceResult | undefined;
}

const STARTUP_PASS_BOUND_MS = 60_000;

const WORST: Outcome[] = ['kept', 'repaired', 'excepted', 'drifted', 'escalated', 'suppressed', 'failed'];

export function worstOutcome(outcomes: Iterable<Outcome>): Outcome {
  let worst: Outcome = 'kept';
  for (const o of outcomes) if (WORST.indexOf(o) > WORST.indexOf(worst)) worst = o;
  return worst;
}

export class Engine {
  private readonly runtimes = new Map<string, Runtime>();
  private readonly queue: WorkQueue;
  private readonly listeners = new Set<(e: AuditEntry) => void>();
  private readonly exceptions = new Map<string, AcceptedDrift>();
  private readonly pollTimers = new Map<number, NodeJS.Timeout>();
  private running = false;
  private paused = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  readonly stats = { reconciles: 0, repairs: 0, failures: 0, recordErrors: 0 };

  constructor(private readonly opts: EngineOptions) {
    this.queue = new WorkQueue((id, trigger) => this.reconcile(id, trigger), opts.concurrency ?? 16);
    for (const e of opts.store?.listExceptions() ?? []) this.exceptions.set(e.resource, e);
  }

  onAudit(listener: (e: AuditEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  resourceIds(): string[] {
    return [...this.runtimes.keys()];
  }

  results(): ResourceResult[] {
    return [...this.runtimes.values()].flatMap((rt) => (rt.last ? [rt.last] : []));
  }

  /**
   * Replaces the managed set. Unchanged resources keep their runtime (watches, flap history); changed or new ones are
   * created afresh; removed ones are closed. Throws before changing anything when a resource cannot be created.
   */
  async setResources(list: ManagedResource[]): Promise<void> {
    const next = new Map<string, { managed: ManagedResource; key: string | undefined; resource?: Resource }>();
    for (const m of list) {
      const current = this.runtimes.get(m.decl.id);
      // Keys are computed only to compare with a running resource: a first activation of 10,000 resources skips the hashing.
      const key = current ? declKey(m.decl) : undefined;
      if (current && (current.key ??= declKey(current.managed.decl)) === key) {
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
      next.set(m.decl.id, { managed: m, key, resource: kind.create(m.decl, this.opts.host) });
    }
    for (const [id, rt] of this.runtimes) {
      const n = next.get(id);
      if (!n || n.resource) await this.retire(rt);
      if (!n) this.runtimes.delete(id);
    }
    for (const [id, n] of next) {
      const current = this.runtimes.get(id);
      if (current && !n.resource) {
        current.managed = n.managed;
        continue;
      }
      if (!n.resource) continue;
      const rt: Runtime = {
        managed: n.managed,
        resource: n.resource,
        key: n.key,
        repairs: [],
        suppressed: false,
        approved: false,
        failures: 0,
        retryAt: 0,
        retryTimer: undefined,
        recordedDrift: undefined,
        disposeWatch: undefined,
        last: undefined,
      };
      this.runtimes.set(id, rt);
      if (this.running) {
        await this.arm(rt);
        this.queue.add(id, 'controller');
      }
    }
    if (this.running) this.schedulePolls();
  }

  /** Starts continuous enforcement: arm every watch, then look at everything once (drift found now is `startup`). */
  async start(resyncIntervalMs: number): Promise<void> {
    this.running = true;
    for (const rt of this.runtimes.values()) await this.arm(rt);
    this.schedulePolls();
    const t0 = this.opts.clock.monotonic();
    this.enqueueAll('startup');
    this.resyncTimer = setInterval(() => this.enqueueAll('resync'), resyncIntervalMs);
    this.resyncTimer.unref();
    // Ready means enforced: wait for the first full pass, bounded so a storm of events cannot hold start-up forever.
    let bound: NodeJS.Timeout | undefined;
    await Promise.race([this.queue.idle(), new Promise<void>((r) => (bound = setTimeout(r, STARTUP_PASS_BOUND_MS)))]);
    clearTimeout(bound);
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
    const worker = async (): Promise<void> => {
      for (let i = next++; i < list.length; i = next++) {
        const rt = list[i];
        if (!rt) continue;
        const r = rt.resource;
        try {
          const observed = await r.observe();
          const changes = r.diff(observed);
          out.push({ id: r.id, outcome: changes.length ? 'drifted' : 'kept', changes, observed: r.summarize(observed), desired: r.desired() });
        } catch (err) {
          out.push({ id: r.id, outcome: 'failed', changes: [], desired: r.desired(), error: errorJson(err) });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(16, list.length) }, worker));
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  setPaused(paused: boolean): void {
    this.paused = paused;
    if (!paused) this.enqueueAll('controller');
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** An operator approved a repair: lift suppression and backoff, repair once now. */
  approve(id: string, trigger: Trigger = 'controller'): boolean {
    const rt = this.runtimes.get(id);
    if (!rt) return false;
    rt.approved = true;
    rt.suppressed = false;
    rt.repairs = [];
    rt.retryAt = 0;
    this.exceptions.delete(id);
    this.opts.store?.deleteException(id);
    this.record(rt, 'approved', trigger, {});
    this.queue.add(id, trigger);
    return true;
  }

  /** An operator accepted the current drift until `expiresAt`: it is left alone while it stays exactly this drift. */
  async reject(id: string, reason: string, expiresAt: number, trigger: Trigger = 'controller'): Promise<boolean> {
    const rt = this.runtimes.get(id);
    if (!rt) return false;
    const observed = await rt.resource.observe();
    const changes = rt.resource.diff(observed);
    const accepted: AcceptedDrift = { resource: id, fingerprint: fingerprint(changes), reason, expiresAt };
    this.exceptions.set(id, accepted);
    this.opts.store?.putException(accepted);
    rt.suppressed = false;
    this.record(rt, 'rejected', trigger, {
      observed: rt.resource.summarize(observed),
      desired: rt.resource.desired(),
      detail: `drift accepted until ${new Date(expiresAt).toISOString()}: ${reason}`,
    });
    return true;
  }

  async stop(): Promise<void> {
    this.running = false;
    this.queue.stop();
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    for (const t of this.pollTimers.values()) clearInterval(t);
    this.pollTimers.clear();
    await this.queue.idle();
    for (const rt of this.runtimes.values()) await this.retire(rt);
  }

  private async arm(rt: Runtime): Promise<void> {
    if (!rt.resource.watch) return;
    try {
      rt.disposeWatch = await rt.resource.watch((reason) => {
        if (reason === MOUNT_CHANGED) rt.retryAt = 0; // what failed for want of a filesystem may work now: no backoff
        this.queue.add(rt.managed.decl.id, 'watch');
      });
    } catch (err) {
      // A watch that cannot be armed leaves the resource to its poll and the resync; the reconcile reports the cause.
      this.opts.log.warn({ resource: rt.managed.decl.id, err: errorMessage(err) }, 'watch failed');
    }
  }

  private async retire(rt: Runtime): Promise<void> {
    if (rt.retryTimer) clearTimeout(rt.retryTimer);
    await rt.disposeWatch?.();
    rt.disposeWatch = undefined;
    await rt.resource.close?.();
  }

  /** Kinds without events (and kinds whose events can be missed) are polled; one timer per interval, not per resource. */
  private schedulePolls(): void {
    const byInterval = new Map<number, string[]>();
    for (const [id, rt] of this.runtimes) {
      const ms = rt.resource.pollIntervalMs;
      if (ms === undefined) continue;
      const ids = byInterval.get(ms) ?? [];
      ids.push(id);
      byInterval.set(ms, ids);
    }
    for (const t of this.pollTimers.values()) clearInterval(t);
    this.pollTimers.clear();
    for (const [ms, ids] of byInterval) {
      const t = setInterval(() => {
        for (const id of ids) this.queue.add(id, 'poll');
      }, ms);
      t.unref();
      this.pollTimers.set(ms, t);
    }
  }

  private async reconcile(id: string, trigger: Trigger): Promise<void> {
    const rt = this.runtimes.get(id);
    if (!rt) return;
    this.stats.reconciles++;
    const r = rt.resource;
    const clock = this.opts.clock;
    const t0 = clock.monotonic();
    let observed: unknown;
    let changes: Change[];
    try {
      observed = await r.observe();
      changes = r.diff(observed);
    } catch (err) {
      this.fail(rt, trigger, err, undefined);
      return;
    }
    if (changes.length === 0) {
      r.commit?.(observed);
      rt.failures = 0;
      rt.recordedDrift = undefined;
      // An approval answers one drift; once compliant, the next drift is judged by the policy again.
      rt.approved = false;
      // A compliant resource keeps no summaries: with 10,000 files they would be the largest thing in the daemon's heap.
      rt.last = { id, outcome: 'kept', changes: NO_CHANGES };
      return;
    }
    const now = clock.now();
    const fp = fingerprint(changes);
    const exception = this.activeException(rt, fp, now, trigger);
    const windowStart = now - rt.managed.decl.policy.flap.windowMs;
    rt.repairs = rt.repairs.filter((t) => t > windowStart);
    const decision = decide({
      policy: rt.managed.decl.policy,
      paused: this.paused,
      approved: rt.approved,
      suppressed: rt.suppressed,
      excepted: exception,
      recentRepairs: rt.repairs.length,
      backingOff: rt.failures > 0 && now < rt.retryAt,
    });
    const observedSummary = r.summarize(observed);
    const desired = r.desired();
    const diffText = changes.flatMap((c) => (c.diff ? [c.diff] : [])).join('\n') || null;
    const drift = { observed: observedSummary, desired, diff: diffText, detail: describeChanges(changes) };
    const result = (outcome: Outcome): void => {
      rt.last = { id, outcome, changes, observed: observedSummary, desired };
    };

    if (decision.action !== 'repair') {
      this.holdOrReport(rt, trigger, decision, fp, drift);
      result(outcomeOf(decision));
      return;
    }

    if (rt.recordedDrift !== fp || decision.reason === 'approved' || rt.failures === 0) this.record(rt, 'drift_detected', trigger, drift);
    try {
      const applied = await r.apply(observed, changes);
      const after = await r.observe();
      const remaining = r.diff(after);
      if (remaining.length > 0) {
        throw new HsError('HS_VERIFY_FAILED', `repair did not hold: ${describeChanges(remaining)}`, { resource: id, retryable: true });
      }
      r.commit?.(after);
      const ms = clock.monotonic() - t0;
      rt.repairs.push(clock.now());
      rt.failures = 0;
      rt.approved = false;
      rt.recordedDrift = undefined;
      this.stats.repairs++;
      if (applied && applied.replaced) this.keepBackup(id, applied.replaced);
      this.record(rt, 'repaired', trigger, { observed: r.summarize(after), desired, diff: null, detail: `verified in ${ms.toFixed(2)} ms` });
      this.opts.log.info({ resource: id, trigger, ms: Number(ms.toFixed(2)) }, 'repaired');
      rt.last = { id, outcome: 'repaired', changes, observed: observedSummary, desired };
    } catch (err) {
      rt.recordedDrift = fp;
      this.fail(rt, trigger, err, drift);
    }
  }

  private holdOrReport(
    rt: Runtime,
    trigger: Trigger,
    d: Exclude<Decision, { action: 'repair' }>,
    fp: string,
    drift: { observed: Record<string, unknown>; desired: Record<string, unknown>; diff: string | null; detail: string },
  ): void {
    if (d.action === 'hold') return;
    // A standing drift is recorded once, not on every event or poll that sees it again.
    if (rt.recordedDrift === fp) return;
    rt.recordedDrift = fp;
    this.record(rt, 'drift_detected', trigger, drift);
    if (d.action === 'escalate') {
      const p = rt.managed.decl.policy;
      this.record(rt, 'escalated', trigger, { ...drift, detail: `risk ${p.risk} is at or above escalateAt ${p.escalateAt}: left for a human` });
    } else if (d.action === 'suppress') {
      rt.suppressed = true;
      const f = rt.managed.decl.policy.flap;
      const why = `${rt.repairs.length} repairs within ${Math.round(f.windowMs / 1000)} s (maxRepairs ${f.maxRepairs}): repairs stopped`;
      this.record(rt, 'suppressed_flapping', trigger, { ...drift, detail: why });
      this.record(rt, 'escalated', trigger, { ...drift, detail: `flapping: ${why}` });
    }
  }

  private fail(
    rt: Runtime,
    trigger: Trigger,
    err: unknown,
    drift: { observed: Record<string, unknown>; desired: Record<string, unknown>; diff: string | null } | undefined,
  ): void {
    const id = rt.managed.decl.id;
    const e = err instanceof HsError ? err : new HsError('HS_HOST_IO', errorMessage(err), { cause: err, resource: id, retryable: true });
    rt.failures++;
    this.stats.failures++;
    rt.approved = false;
    this.record(rt, 'repair_failed', trigger, {
      observed: drift?.observed ?? null,
      desired: drift?.desired ?? rt.resource.desired(),
      diff: drift?.diff ?? null,
      detail: `${e.code}: ${e.message}`,
    });
    this.opts.log.warn({ resource: id, code: e.code, err: e.message, failures: rt.failures }, 'repair failed');
    rt.last = { id, outcome: 'failed', changes: [], ...(drift ? { observed: drift.observed } : {}), desired: rt.resource.desired(), error: errorJson(e) };
    if (rt.failures === ESCALATE_AFTER_FAILURES || (!e.retryable && rt.failures === 1)) {
      this.record(rt, 'escalated', trigger, { detail: `repair failed ${rt.failures} time(s): ${e.code}: ${e.message}` });
    }
    if (!this.running) return;
    // Retried with backoff whatever the cause: a non-retryable cause (say, a rejected validate) may be fixed by a new baseline.
    const delay = retryDelayMs(rt.failures);
    rt.retryAt = this.opts.clock.now() + delay;
    if (rt.retryTimer) clearTimeout(rt.retryTimer);
    rt.retryTimer = setTimeout(() => {
      rt.retryTimer = undefined;
      this.queue.add(id, 'poll');
    }, delay);
    rt.retryTimer.unref();
  }

  private activeException(rt: Runtime, fp: string, now: number, trigger: Trigger): boolean {
    const id = rt.managed.decl.id;
    const e = this.exceptions.get(id);
    if (!e) return false;
    if (now >= e.expiresAt) {
      this.exceptions.delete(id);
      this.opts.store?.deleteException(id);
      this.record(rt, 'exception_expired', trigger, { detail: `accepted drift expired: ${e.reason}` });
      return false;
    }
    return e.fingerprint === fp;
  }

  private keepBackup(id: string, content: Buffer): void {
    try {
      this.opts.store?.putBackup(id, this.opts.clock.now(), content, sha256(content));
    } catch (err) {
      this.opts.log.warn({ resource: id, err: errorMessage(err) }, 'backup not kept');
    }
  }

  /** Records an event that concerns the agent or a baseline rather than one resource. */
  recordAgentEvent(event: AuditEvent, trigger: Trigger | null, detail: string, baseline?: { name: string; version: number }): void {
    this.write({
      time: this.opts.clock.now(),
      resource: null,
      event,
      trigger,
      baseline: baseline?.name ?? null,
      version: baseline?.version ?? null,
      observed: null,
      desired: null,
      diff: null,
      detail,
    });
  }

  private record(
    rt: Runtime,
    event: AuditEvent,
    trigger: Trigger | null,
    f: { observed?: Record<string, unknown> | null; desired?: Record<string, unknown> | null; diff?: string | null; detail?: string | null },
  ): void {
    const entry: NewAuditEntry = {
      time: this.opts.clock.now(),
      resource: rt.managed.decl.id,
      event,
      trigger,
      baseline: rt.managed.baseline.name,
      version: rt.managed.baseline.version,
      observed: f.observed ?? null,
      desired: f.desired ?? null,
      diff: f.diff ?? null,
      detail: f.detail ?? null,
    };
    this.write(entry);
  }

  private write(entry: NewAuditEntry): void {
    let stored: AuditEntry;
    try {
      stored = this.opts.store ? this.opts.store.appendAudit(entry) : { ...entry, seq: 0, prevHash: '', hash: '' };
    } catch (err) {
      // The host keeps being enforced even when the record cannot be written (disk full); the failure is logged and counted.
      this.stats.recordErrors++;
      this.opts.log.error({ resource: entry.resource, event: entry.event, err: errorMessage(err) }, 'audit record not written');
      stored = { ...entry, seq: 0, prevHash: '', hash: '' };
    }
    for (const l of this.listeners) l(stored);
  }
}

const NO_CHANGES: Change[] = [];

function outcomeOf(d: Exclude<Decision, { action: 'repair' }>): Outcome {
  switch (d.action) {
    case 'report':
      return 'drifted';
    case 'escalate':
      return 'escalated';
    case 'suppress':
      return 'suppressed';
    case 'hold':
      return d.reason === 'excepted' ? 'excepted' : d.reason === 'suppressed' ? 'suppressed' : 'failed';
  }
}

function describeChanges(changes: Change[]): string {
  return changes.map((c) => `${c.field}: ${fmt(c.observed)} -> ${fmt(c.desired)}`).join('; ');
}

function fmt(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** Identifies one drift (what differs and how) so the same standing drift is recognised across reconciles. */
export function fingerprint(changes: Change[]): string {
  const h = createHash('sha256');
  for (const c of changes) h.update(`${c.field}\0${fmt(c.observed)}\0${fmt(c.desired)}\n`);
  return h.digest('hex').slice(0, 32);
}

/** Identifies a declaration, so an unchanged resource keeps its runtime across activations. */
function declKey(d: ResourceDecl): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ id: d.id, policy: d.policy }));
  for (const k of Object.keys(d.fields).sort()) {
    const v = d.fields[k];
    h.update(`\0${k}\0`);
    h.update(Buffer.isBuffer(v) ? v : JSON.stringify(v) ?? '');
  }
  return h.digest('hex');
}

function errorJson(err: unknown): { code: string; message: string } {
  if (err instanceof HsError) return { code: err.code, message: err.message };
  return { code: 'HS_HOST_IO', message: errorMessage(err) };
}
