// Escalations: opened from the agents' own events (escalated, suppressed_flapping, repair_failed), one open per agent and
// resource, showing who made the drift and, for a fight, the opponent; decided by operators; delivered to the agent as
// signed decisions until it acknowledges them. An agent can open them only for resources of a baseline version this
// controller assigns it, and only so many at once.
import type { Clock } from '../lib/clock.js';
import { HsError, errorMessage } from '../lib/errors.js';
import { selectorMatches } from '../lib/labels.js';
import type { Logger } from '../lib/log.js';
import { ACTOR_SOURCES, actorLabel, type Actor } from '../lib/policy/actor.js';
import { signBytes, type SigningKey } from '../lib/signing.js';
import { encodeDecisionDoc, type DecisionAck, type DecisionAction, type DecisionDoc } from '../proto/codec.js';
import type { ControllerStore, EscalationRecord, EscalationSighting, EventRecord } from './store/types.js';
import { validateBaseline } from './validate.js';

/** The agent events that ask for a human. */
export const ESCALATING_EVENTS: ReadonlySet<string> = new Set(['escalated', 'suppressed_flapping', 'repair_failed']);
export const DEFAULT_EXCEPTION_MS = 7 * 86_400_000;

export interface EscalationLimits {
  /** Open escalations one agent may have; past it, its escalating events are kept as events only. */
  maxOpenPerAgent: number;
}

export const DEFAULT_ESCALATION_LIMITS: EscalationLimits = { maxOpenPerAgent: 1000 };

/** Why an escalating event did not open an escalation. */
export type RefusedEscalation = 'not_assigned' | 'cap';

/** Parsed versions kept for the resource check (versions are immutable, so an entry never goes stale). */
const RESOURCE_CACHE = 32;

export interface DecisionInput {
  action: DecisionAction;
  reason: string;
  /** reject: when the exception ends and the state is enforced again. */
  expiresAt?: number;
  by: string;
}

/**
 * The actor an agent sent as JSON, kept to the known fields of their types (the text is the agent's: anything else is
 * dropped); null when it is not an actor at all.
 */
export function actorOf(text: string | null): Actor | null {
  if (text === null || text.length > 64 * 1024) return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  const source = ACTOR_SOURCES.find((x) => x === o.source);
  if (source === undefined) return null;
  const a: Actor = { source };
  const strings = ['exe', 'cmdline', 'user', 'loginUser', 'unit', 'detail'] as const;
  const numbers = ['pid', 'uid', 'loginUid', 'time'] as const;
  for (const k of strings) if (typeof o[k] === 'string') a[k] = (o[k] as string).slice(0, 4096);
  for (const k of numbers) if (typeof o[k] === 'number' && Number.isFinite(o[k])) a[k] = o[k] as number;
  if (Array.isArray(o.parents)) a.parents = o.parents.filter((p): p is string => typeof p === 'string').slice(0, 64).map((p) => p.slice(0, 4096));
  return a;
}

/**
 * The opponent a flap escalation names: lib/policy/patterns.ts's findFight words it `fighting /usr/bin/puppet
 * (puppet.service): 6 changes in 10 min`, in the decision's reason or the event's detail. Null when none is named.
 */
export function opponentOf(...texts: (string | null | undefined)[]): string | null {
  for (const t of texts) {
    const m = t ? /fighting (.+?): \d+ changes in /.exec(t.slice(0, 4096)) : null;
    if (m?.[1]) return m[1];
  }
  return null;
}

/** The reason of a decision an agent sent as JSON, if it has one. */
function decisionReason(text: string | null): string | null {
  if (text === null) return null;
  try {
    const d = JSON.parse(text) as unknown;
    return typeof d === 'object' && d !== null && typeof (d as { reason?: unknown }).reason === 'string' ? (d as { reason: string }).reason : null;
  } catch {
    return null;
  }
}

/** What the escalation shows of the event that opened (or last repeated) it: who, how it was decided, whom it fights. */
function attribution(e: EventRecord): Pick<EscalationRecord, 'actor' | 'decision' | 'opponent'> {
  return { actor: e.actor, decision: e.decision, opponent: e.event === 'suppressed_flapping' ? opponentOf(decisionReason(e.decision), e.detail) : null };
}

/** A short name for the actor of an escalation (`/usr/bin/puppet (puppet.service)`), or null when none is known. */
export function actorLabelOf(text: string | null): string | null {
  const a = actorOf(text);
  return a ? actorLabel(a) : null;
}

export class EscalationService {
  private readonly listeners = new Set<(agentId: string) => void>();
  private readonly updates = new Set<(e: { id: number; agentId: string }) => void>();
  /** agent + resource of every open escalation, so the common case (a routine repair) costs no query. */
  private readonly openKeys = new Set<string>();
  private readonly openPerAgent = new Map<string, number>();
  /** Resource ids by `name@version`, most recently used last. */
  private readonly resources = new Map<string, Set<string>>();
  private readonly lastRefusalLog = new Map<string, number>();
  private readonly limits: EscalationLimits;
  /** Hears of each escalating event that opened nothing (metrics). */
  onRefused: (reason: RefusedEscalation) => void = () => undefined;

  constructor(
    private readonly store: ControllerStore,
    private readonly key: SigningKey,
    private readonly clock: Clock,
    private readonly log: Logger,
    limits: Partial<EscalationLimits> = {},
  ) {
    this.limits = { ...DEFAULT_ESCALATION_LIMITS, ...limits };
  }

  /** Loads the open escalations' keys; call once before events flow. */
  async load(): Promise<void> {
    for (const e of await this.store.listEscalations({ status: 'open', limit: Number.MAX_SAFE_INTEGER })) this.markOpen(e.agentId, e.resource);
  }

  private markOpen(agentId: string, resource: string): void {
    const k = key(agentId, resource);
    if (this.openKeys.has(k)) return;
    this.openKeys.add(k);
    this.openPerAgent.set(agentId, (this.openPerAgent.get(agentId) ?? 0) + 1);
  }

  private markClosed(agentId: string, resource: string): void {
    if (!this.openKeys.delete(key(agentId, resource))) return;
    const n = (this.openPerAgent.get(agentId) ?? 1) - 1;
    if (n <= 0) this.openPerAgent.delete(agentId);
    else this.openPerAgent.set(agentId, n);
  }

  /** The resource ids of a stored version, parsed once. */
  private async resourcesOf(name: string, version: number): Promise<{ ids: Set<string>; selector: { matchLabels: Record<string, string> } | null } | undefined> {
    const v = await this.store.getBaselineVersion(name, version);
    if (!v) return undefined;
    const k = `${name}@${version}`;
    let ids = this.resources.get(k);
    if (ids) this.resources.delete(k);
    else {
      const sources = Object.fromEntries(Object.entries(v.sources).map(([rel, b64]) => [rel, Buffer.from(b64, 'base64')]));
      ids = new Set(validateBaseline(v.yaml, v.file, sources).resources.map((r) => r.id));
    }
    this.resources.set(k, ids);
    while (this.resources.size > RESOURCE_CACHE) this.resources.delete(this.resources.keys().next().value ?? '');
    return { ids, selector: v.selector };
  }

  /** Whether this event may open an escalation: a resource of the version it names, assigned to this agent, under its cap. */
  private async refusal(e: EventRecord & { resource: string }): Promise<RefusedEscalation | undefined> {
    if ((this.openPerAgent.get(e.agentId) ?? 0) >= this.limits.maxOpenPerAgent) return 'cap';
    if (e.baseline === null || e.version === null) return 'not_assigned';
    try {
      const v = await this.resourcesOf(e.baseline, e.version);
      if (!v?.ids.has(e.resource)) return 'not_assigned';
      const agent = await this.store.getAgent(e.agentId);
      return agent && selectorMatches(v.selector ?? undefined, agent.labels) ? undefined : 'not_assigned';
    } catch (err) {
      this.log.error({ err: errorMessage(err), baseline: e.baseline, version: e.version }, 'stored baseline version unreadable');
      return 'not_assigned';
    }
  }

  private refused(e: EventRecord, reason: RefusedEscalation): void {
    this.onRefused(reason);
    // One line per agent and minute: a flood of refused events must not become a flood of logs.
    const now = this.clock.now();
    if ((this.lastRefusalLog.get(e.agentId) ?? -Infinity) > now - 60_000) return;
    this.lastRefusalLog.set(e.agentId, now);
    if (this.lastRefusalLog.size > 10_000) this.lastRefusalLog.clear();
    this.log.warn({ agent: e.agentId, resource: e.resource, baseline: e.baseline, version: e.version, reason }, 'escalation not opened');
  }

  /** Called when a decision is ready for an agent, so a connected one gets it at once. */
  onDecision(listener: (agentId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called whenever an escalation is decided, resolved, or its decision carried out (rollouts waiting on it look again). */
  onUpdate(listener: (e: { id: number; agentId: string }) => void): () => void {
    this.updates.add(listener);
    return () => this.updates.delete(listener);
  }

  private updated(id: number, agentId: string): void {
    for (const l of this.updates) {
      try {
        l({ id, agentId });
      } catch (err) {
        this.log.error({ err: errorMessage(err), escalation: id }, 'escalation listener failed');
      }
    }
  }

  /** Opens, repeats or closes escalations from newly persisted events (never run twice for one event). */
  async observe(events: EventRecord[]): Promise<void> {
    for (const e of events) {
      if (e.resource === null) continue;
      const known = this.openKeys.has(key(e.agentId, e.resource));
      if (ESCALATING_EVENTS.has(e.event)) {
        const open = known ? await this.store.findOpenEscalation(e.agentId, e.resource) : undefined;
        if (open) {
          await this.repeat(open, e);
          continue;
        }
        const why = await this.refusal({ ...e, resource: e.resource });
        if (why) {
          this.refused(e, why);
          continue;
        }
        this.markOpen(e.agentId, e.resource);
        const rec = await this.store.addEscalation({
          agentId: e.agentId,
          resource: e.resource,
          baseline: e.baseline,
          version: e.version,
          kind: e.event,
          detail: e.detail,
          ...attribution(e),
          observed: e.observed,
          desired: e.desired,
          diff: e.diff,
          openedAt: e.time,
          lastSeenAt: e.time,
          repeats: 0,
          history: [sighting(e)],
          status: 'open',
          decidedAt: null,
          decidedBy: null,
          reason: null,
          expiresAt: null,
          outcome: null,
          outcomeError: null,
          decisionPayload: null,
          decisionSignature: null,
        });
        this.log.info({ escalation: rec.id, agent: e.agentId, resource: e.resource, kind: e.event }, 'escalation opened');
      } else if (known && (e.event === 'repaired' || e.event === 'escalation_resolved' || e.event === 'approved' || e.event === 'rejected')) {
        const open = await this.store.findOpenEscalation(e.agentId, e.resource);
        if (!open) {
          this.markClosed(e.agentId, e.resource);
          continue;
        }
        if (e.event === 'approved') {
          // Approved on the host itself: the repair that follows closes it, and says so.
          await this.store.updateEscalation(open.id, { history: appendSighting(open.history, sighting(e)) });
          continue;
        }
        await this.close(open, e);
      }
    }
  }

  /** The same drift again, or drift of the same resource that changed since: the record shows the latest. */
  private async repeat(open: EscalationRecord, e: EventRecord): Promise<void> {
    // The latest event that names an actor or an opponent says most about who is at work now.
    const seen = attribution(e);
    await this.store.updateEscalation(open.id, {
      repeats: open.repeats + 1,
      lastSeenAt: Math.max(open.lastSeenAt, e.time),
      history: appendSighting(open.history, sighting(e)),
      detail: e.detail ?? open.detail,
      // An event with the observed state brings its diff along (none when the content agrees): the three go together.
      ...(e.observed !== null ? { observed: e.observed, desired: e.desired, diff: e.diff } : {}),
      ...(e.baseline !== null ? { baseline: e.baseline } : {}),
      ...(e.version !== null ? { version: e.version } : {}),
      ...(seen.actor !== null ? { actor: seen.actor } : {}),
      ...(seen.decision !== null ? { decision: seen.decision } : {}),
      ...(seen.opponent !== null ? { opponent: seen.opponent } : {}),
    });
  }

  /**
   * The agent says the drift is gone (a repair, whatever caused it: a flap window that passed, an approval on the host, a
   * version rolled out or back) or that the host itself accepted it: nothing is left for an operator to decide here.
   */
  private async close(open: EscalationRecord, e: EventRecord): Promise<void> {
    const history = appendSighting(open.history, sighting(e));
    // The controller's time: the agent's own clock (or a hostile agent) must not decide when retention removes it.
    const at = e.receivedAt;
    const patch: Partial<EscalationRecord> =
      e.event === 'rejected'
        ? { status: 'rejected', decidedAt: at, decidedBy: `${e.agentId} (on the host)`, reason: clipText(e.detail ?? 'rejected on the host', 1000), outcome: 'done', history }
        : { status: 'resolved', decidedAt: at, decidedBy: 'agent', reason: resolution(open, e), history };
    await this.store.updateEscalation(open.id, patch);
    this.markClosed(open.agentId, open.resource);
    this.log.info({ escalation: open.id, agent: open.agentId, resource: open.resource, status: patch.status, reason: patch.reason }, 'escalation closed by the agent');
    this.updated(open.id, open.agentId);
  }

  async get(id: number): Promise<EscalationRecord> {
    const rec = await this.store.getEscalation(id);
    if (!rec) throw new HsError('HS_NOT_FOUND', `no escalation ${id}`);
    return rec;
  }

  async decide(id: number, d: DecisionInput): Promise<EscalationRecord> {
    const rec = await this.get(id);
    if (rec.status === 'resolved') {
      // Its drift is gone: an approval would repair nothing, a rejection would accept nothing.
      throw new HsError('HS_CONFLICT', `escalation ${id} is already resolved, there is nothing to ${d.action === 'approve' ? 'repair' : 'accept'}: ${rec.reason ?? 'the agent repaired it'}`);
    }
    if (rec.status !== 'open') throw new HsError('HS_CONFLICT', `escalation ${id} is already ${rec.status}${rec.decidedBy ? ` by ${rec.decidedBy}` : ''}${rec.reason ? ` (${rec.reason})` : ''}`);
    const now = this.clock.now();
    const expiresAt = d.action === 'reject' ? (d.expiresAt ?? now + DEFAULT_EXCEPTION_MS) : 0;
    if (d.action === 'reject' && expiresAt <= now) throw new HsError('HS_CONFIG', 'the exception must expire in the future');
    const doc: DecisionDoc = {
      escalationId: String(id),
      agentId: rec.agentId,
      resource: rec.resource,
      action: d.action,
      reason: d.reason,
      expiresAt,
      issuedAt: now,
      decidedBy: d.by,
    };
    const payload = Buffer.from(encodeDecisionDoc(doc));
    const patch = {
      status: d.action === 'approve' ? ('approved' as const) : ('rejected' as const),
      decidedAt: now,
      decidedBy: d.by,
      reason: d.reason,
      expiresAt: d.action === 'reject' ? expiresAt : null,
      outcome: 'pending' as const,
      decisionPayload: payload,
      decisionSignature: signBytes(this.key, payload),
    };
    await this.store.updateEscalation(id, patch);
    this.markClosed(rec.agentId, rec.resource);
    this.log.info({ escalation: id, agent: rec.agentId, resource: rec.resource, action: d.action }, 'escalation decided');
    for (const l of this.listeners) l(rec.agentId);
    this.updated(id, rec.agentId);
    return { ...rec, ...patch };
  }

  /** Records what the agent did with a decision. */
  async acknowledged(agentId: string, ack: DecisionAck): Promise<void> {
    const id = Number(ack.escalationId);
    const rec = Number.isInteger(id) ? await this.store.getEscalation(id) : undefined;
    if (!rec || rec.agentId !== agentId) return;
    await this.store.updateEscalation(id, { outcome: ack.ok ? 'done' : 'failed', outcomeError: ack.ok ? null : ack.error });
    this.updated(id, agentId);
  }

  pending(agentId: string): Promise<EscalationRecord[]> {
    return this.store.pendingDecisions(agentId);
  }
}

const key = (agentId: string, resource: string): string => `${agentId}\u0000${resource}`;

/** Sightings an escalation keeps: the one that opened it and the latest others (the count of all is `repeats`). */
export const MAX_HISTORY = 20;
const MAX_SIGHTING_DETAIL = 300;

const clipText = (text: string, max: number): string => (text.length <= max ? text : `${text.slice(0, max - 1)}…`);

function sighting(e: EventRecord): EscalationSighting {
  return {
    time: e.time,
    event: e.event,
    trigger: e.trigger,
    baseline: e.baseline,
    version: e.version,
    detail: e.detail === null ? null : clipText(e.detail, MAX_SIGHTING_DETAIL),
    actor: actorLabelOf(e.actor),
  };
}

/** The history with one more sighting: the first one stays, the oldest of the others leaves past MAX_HISTORY. */
export function appendSighting(history: readonly EscalationSighting[], s: EscalationSighting): EscalationSighting[] {
  const all = [...history, s];
  return all.length <= MAX_HISTORY ? all : [...all.slice(0, 1), ...all.slice(all.length - (MAX_HISTORY - 1))];
}

const iso = (ms: number): string => (Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : String(ms));

/** Why an escalation closed on a repair, in words an operator reads on `escalations show`. */
function resolution(open: EscalationRecord, e: EventRecord): string {
  const version = e.baseline !== null ? `, ${e.baseline}${e.version !== null ? ` v${e.version}` : ''}` : '';
  const where = `(trigger ${e.trigger ?? 'unknown'}${version}, at ${iso(e.time)})`;
  const before = open.history[open.history.length - 1];
  if (before?.event === 'approved') return `the drift was repaired after an approval on the host ${where}`;
  // The agent saw the resource as it should be again without repairing it (put back by hand, or a version that wants it so).
  if (e.event === 'escalation_resolved') return `${clipText(e.detail ?? 'the drift is gone: the resource is compliant again', 500)} ${where}`;
  return `the resource is compliant again: the agent repaired it ${where}`;
}
