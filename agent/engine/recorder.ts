// The audit fan-out: every record goes to the store (when there is one) and then to each listener (the controller link,
// metrics). Neither may end enforcement: a record that cannot be written (disk full, damaged cache) is logged and
// counted, and a listener that throws is logged and skipped; the engine carries on either way.
import { errorMessage } from '../../lib/errors.js';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import type { AuditEntry, AuditEvent, DecisionFields, NewAuditEntry, Trigger } from '../store/types.js';
import type { BaselineRef, Runtime } from './runtime.js';

/** The part of the agent store that takes records. */
export interface AuditSink {
  appendAudit(e: NewAuditEntry): AuditEntry;
}

export interface RecordFields extends DecisionFields {
  observed?: Record<string, unknown> | null;
  desired?: Record<string, unknown> | null;
  diff?: string | null;
  detail?: string | null;
}

/** A failure repeated this often is logged once, then every this-many times: the count stays exact in `stats`. */
const LOG_EVERY = 1000;

export class Recorder {
  private readonly listeners = new Set<(e: AuditEntry) => void>();
  readonly stats = { recordErrors: 0, listenerErrors: 0 };

  constructor(
    private readonly sink: AuditSink | undefined,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  onAudit(listener: (e: AuditEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Records an event of `rt`; returns the record as stored (seq 0 when it could not be written). */
  resource(rt: Runtime, event: AuditEvent, trigger: Trigger | null, f: RecordFields): AuditEntry {
    return this.write({
      time: this.clock.now(),
      resource: rt.id,
      event,
      trigger,
      baseline: rt.baseline.name,
      version: rt.baseline.version,
      observed: f.observed ?? null,
      desired: f.desired ?? null,
      diff: f.diff ?? null,
      detail: f.detail ?? null,
      ...(f.actor !== undefined ? { actor: f.actor } : {}),
      ...(f.decision !== undefined ? { decision: f.decision } : {}),
      ...(f.changes !== undefined ? { changes: f.changes } : {}),
      ...(f.risk !== undefined ? { risk: f.risk } : {}),
    });
  }

  /** A record about the agent or a baseline rather than one resource. */
  agent(event: AuditEvent, trigger: Trigger | null, detail: string, baseline?: BaselineRef, resource: string | null = null): void {
    void this.write({
      time: this.clock.now(),
      resource,
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

  private write(entry: NewAuditEntry): AuditEntry {
    let stored: AuditEntry;
    try {
      stored = this.sink ? this.sink.appendAudit(entry) : { ...entry, seq: 0, prevHash: '', hash: '' };
    } catch (err) {
      // The host keeps being enforced even when the record cannot be written; the failure is logged and counted.
      this.stats.recordErrors++;
      if (this.stats.recordErrors % LOG_EVERY === 1) {
        this.log.error({ resource: entry.resource, event: entry.event, err: errorMessage(err), failures: this.stats.recordErrors }, 'audit record not written');
      }
      stored = { ...entry, seq: 0, prevHash: '', hash: '' };
    }
    for (const l of this.listeners) {
      try {
        l(stored);
      } catch (err) {
        this.stats.listenerErrors++;
        if (this.stats.listenerErrors % LOG_EVERY === 1) this.log.error({ event: entry.event, err: errorMessage(err) }, 'audit listener failed');
      }
    }
    return stored;
  }
}
