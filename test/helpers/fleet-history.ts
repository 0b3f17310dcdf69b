// A fleet's history written into a real controller the way agents and operators make it: each host's records in the order
// the agent writes them (drift_detected, escalated, approved, ...), escalations opened by the controller's own
// EscalationService from those records and decided through it, on a clock the test moves.
import type { ManualClock } from '../../lib/clock.js';
import type { ControllerCore } from '../../controller/core.js';
import type { EventInput } from '../../controller/store/types.js';

export interface DriftOptions {
  changes?: string[];
  /** The structured `actor` field, as agents will send it. */
  actor?: Record<string, unknown>;
}

export class FleetHistory {
  private readonly seqs = new Map<string, number>();

  constructor(
    private readonly core: ControllerCore,
    private readonly clock: ManualClock,
    private readonly baseline: { name: string; version: number },
  ) {}

  async host(id: string, labels: Record<string, string> = {}): Promise<string> {
    const now = this.clock.now();
    await this.core.store.putAgent({
      id,
      credentialHash: 'x',
      enrolledAt: now,
      tokenId: 't',
      labels,
      tokenLabels: labels,
      allowLabels: [],
      requestedLabels: {},
      operatorLabels: {},
      facts: null,
      protocolVersion: 1,
      agentVersion: 'test',
      lastSeen: now,
      revokedAt: null,
      outboxPending: 0,
      outboxDropped: 0,
      enforcementPaused: false,
      lastEventSeq: 0,
    });
    return id;
  }

  /** Appends records of one host at the clock's time, and lets the controller see them as ingest does. */
  async record(host: string, resource: string, event: string, over: Partial<EventInput> = {}): Promise<void> {
    const seq = (this.seqs.get(host) ?? 0) + 1;
    this.seqs.set(host, seq);
    const e: EventInput = {
      seq,
      time: this.clock.now(),
      resource,
      event,
      trigger: 'watch',
      baseline: this.baseline.name,
      version: this.baseline.version,
      observed: null,
      desired: null,
      diff: null,
      detail: null,
      prevHash: '',
      hash: `${host}-${seq}`,
      ...over,
    };
    const { inserted } = await this.core.store.appendEvents([{ agentId: host, events: [e] }], this.clock.now());
    await this.core.escalations.observe(inserted);
  }

  private async drift(host: string, resource: string, o: DriftOptions, trigger = 'watch'): Promise<void> {
    const changes = o.changes ?? ['content'];
    await this.record(host, resource, 'drift_detected', {
      trigger,
      detail: changes.map((c) => `${c}: ${c === 'content' ? 'sha256:aa -> sha256:bb' : 'x -> y'}`).join('; '),
      observed: '{"sha256":"aa"}',
      desired: '{"sha256":"bb"}',
      ...(o.actor ? { actor: JSON.stringify(o.actor) } : {}),
    });
  }

  /** Below escalateAt: the host repairs at once. */
  async autoRepaired(host: string, resource: string, o: DriftOptions = {}): Promise<void> {
    await this.drift(host, resource, o);
    await this.record(host, resource, 'repaired', { detail: 'verified in 1.00 ms' });
  }

  /** At or above escalateAt: recorded and escalated; returns the escalation the controller opened. */
  async escalated(host: string, resource: string, o: DriftOptions = {}): Promise<number> {
    await this.drift(host, resource, o);
    await this.record(host, resource, 'escalated', { detail: 'risk high is at or above escalateAt high: left for a human' });
    const open = await this.core.store.findOpenEscalation(host, resource);
    if (!open) throw new Error(`no escalation opened for ${host} ${resource}`);
    return open.id;
  }

  /** An operator approves after `afterMs`; the agent records the approval, sees the drift again and repairs it. */
  async approve(host: string, resource: string, escalation: number, afterMs: number, o: DriftOptions = {}): Promise<void> {
    this.clock.advance(afterMs);
    await this.core.escalations.decide(escalation, { action: 'approve', reason: '', by: 'alice' });
    await this.record(host, resource, 'approved', { trigger: 'controller' });
    await this.drift(host, resource, o, 'controller');
    await this.record(host, resource, 'repaired', { trigger: 'controller' });
  }

  async reject(host: string, resource: string, escalation: number, afterMs: number): Promise<void> {
    this.clock.advance(afterMs);
    await this.core.escalations.decide(escalation, { action: 'reject', reason: 'vendor hotfix', by: 'bob', expiresAt: this.clock.now() + 7 * 86_400_000 });
    await this.record(host, resource, 'rejected', { trigger: 'controller', detail: 'drift accepted: vendor hotfix' });
  }

  /** Escalated, then decided after `afterMs`. */
  async decided(host: string, resource: string, action: 'approve' | 'reject', afterMs: number, o: DriftOptions = {}): Promise<void> {
    const id = await this.escalated(host, resource, o);
    if (action === 'approve') await this.approve(host, resource, id, afterMs, o);
    else await this.reject(host, resource, id, afterMs);
  }
}
