// Escalations: opened from the agents' own events (escalated, suppressed_flapping, repair_failed), one open per agent and
// resource; decided by operators; delivered to the agent as signed decisions until it acknowledges them.
import type { Clock } from '../lib/clock.js';
import { HsError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { signBytes, type SigningKey } from '../lib/signing.js';
import { encodeDecisionDoc, type DecisionAck, type DecisionAction, type DecisionDoc } from '../proto/codec.js';
import type { ControllerStore, EscalationRecord, EventRecord } from './store/types.js';

/** The agent events that ask for a human. */
export const ESCALATING_EVENTS: ReadonlySet<string> = new Set(['escalated', 'suppressed_flapping', 'repair_failed']);
export const DEFAULT_EXCEPTION_MS = 7 * 86_400_000;

export interface DecisionInput {
  action: DecisionAction;
  reason: string;
  /** reject: when the exception ends and the state is enforced again. */
  expiresAt?: number;
  by: string;
}

export class EscalationService {
  private readonly listeners = new Set<(agentId: string) => void>();
  /** agent + resource of every open escalation, so the common case (a routine repair) costs no query. */
  private readonly openKeys = new Set<string>();

  constructor(
    private readonly store: ControllerStore,
    private readonly key: SigningKey,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Loads the open escalations' keys; call once before events flow. */
  async load(): Promise<void> {
    for (const e of await this.store.listEscalations({ status: 'open', limit: Number.MAX_SAFE_INTEGER })) this.openKeys.add(key(e.agentId, e.resource));
  }

  /** Called when a decision is ready for an agent, so a connected one gets it at once. */
  onDecision(listener: (agentId: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Opens, repeats or resolves escalations from newly persisted events (never run twice for one event). */
  async observe(events: EventRecord[]): Promise<void> {
    for (const e of events) {
      if (e.resource === null) continue;
      if (ESCALATING_EVENTS.has(e.event)) {
        this.openKeys.add(key(e.agentId, e.resource));
        const open = await this.store.findOpenEscalation(e.agentId, e.resource);
        if (open) {
          await this.store.updateEscalation(open.id, { repeats: open.repeats + 1, detail: e.detail ?? open.detail });
          continue;
        }
        const rec = await this.store.addEscalation({
          agentId: e.agentId,
          resource: e.resource,
          baseline: e.baseline,
          version: e.version,
          kind: e.event,
          detail: e.detail,
          observed: e.observed,
          desired: e.desired,
          diff: e.diff,
          openedAt: e.time,
          repeats: 0,
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
      } else if (e.event === 'repaired' && e.trigger !== 'controller' && this.openKeys.has(key(e.agentId, e.resource))) {
        // The agent repaired it on its own (e.g. a flap window passed): nothing is left to decide.
        const open = await this.store.findOpenEscalation(e.agentId, e.resource);
        if (open) await this.store.updateEscalation(open.id, { status: 'resolved', decidedAt: e.time, decidedBy: 'agent' });
        this.openKeys.delete(key(e.agentId, e.resource));
      }
    }
  }

  async get(id: number): Promise<EscalationRecord> {
    const rec = await this.store.getEscalation(id);
    if (!rec) throw new HsError('HS_NOT_FOUND', `no escalation ${id}`);
    return rec;
  }

  async decide(id: number, d: DecisionInput): Promise<EscalationRecord> {
    const rec = await this.get(id);
    if (rec.status !== 'open') throw new HsError('HS_CONFLICT', `escalation ${id} is already ${rec.status}`);
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
    this.openKeys.delete(key(rec.agentId, rec.resource));
    this.log.info({ escalation: id, agent: rec.agentId, resource: rec.resource, action: d.action }, 'escalation decided');
    for (const l of this.listeners) l(rec.agentId);
    return { ...rec, ...patch };
  }

  /** Records what the agent did with a decision. */
  async acknowledged(agentId: string, ack: DecisionAck): Promise<void> {
    const id = Number(ack.escalationId);
    const rec = Number.isInteger(id) ? await this.store.getEscalation(id) : undefined;
    if (!rec || rec.agentId !== agentId) return;
    await this.store.updateEscalation(id, { outcome: ack.ok ? 'done' : 'failed', outcomeError: ack.ok ? null : ack.error });
  }

  pending(agentId: string): Promise<EscalationRecord[]> {
    return this.store.pendingDecisions(agentId);
  }
}

const key = (agentId: string, resource: string): string => `${agentId}\u0000${resource}`;
