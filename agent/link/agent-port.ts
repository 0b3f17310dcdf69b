// What the controller link needs from the agent: a narrow view of agent/agent.ts, so the link is testable on its own.
import type { Baseline } from '../../lib/baseline/types.js';
import type { BaselineOutcome, PlannedChange } from '../../proto/codec.js';
import type { AuditEntry, AuditEvent, OutboxItem, OutboxStats, Trigger } from '../store/types.js';

/** Audit records the link writes itself: removals carried out, plan requests answered or refused. */
export type LinkAuditEvent = Extract<AuditEvent, 'baseline_removed' | 'plan_requested' | 'plan_refused'>;

export interface LinkStore {
  outboxPending(limit: number): OutboxItem[];
  outboxAck(uptoSeq: number): void;
  outboxStats(): OutboxStats;
  getMeta(key: string): string | undefined;
  setMeta(key: string, value: string): void;
}

export interface LinkedAgent {
  activate(baselines: Baseline[], meta: { origin: 'controller'; versions: Record<string, number>; signedBy: string }, trigger?: Trigger): Promise<unknown>;
  recordRejectedBaseline(name: string | null, detail: string, trigger: Trigger): void;
  recordLinkEvent(event: LinkAuditEvent, detail: string, baseline: { name: string; version: number } | null): void;
  approve(resourceId: string): Promise<void>;
  reject(resourceId: string, reason: string, expiresAt: number): Promise<void>;
  setEnforcementPaused(paused: boolean, reason: string): void;
  onAudit(listener: (e: AuditEntry) => void): () => void;
  /** What activating `b` would change, changing nothing. */
  plan(b: Baseline): Promise<{ currentVersion: number; resources: number; changes: PlannedChange[] }>;
  /** Waits for the engine to settle, then the worst outcome per active baseline. */
  convergence(): Promise<BaselineOutcome[]>;
  readonly store: LinkStore | undefined;
}
