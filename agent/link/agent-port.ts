// What the controller link needs from the agent: a narrow view of agent/agent.ts, so the link is testable on its own.
import type { Baseline } from '../../lib/baseline/types.js';
import type { ActivePolicy } from '../../lib/policy/index.js';
import type { BaselineOutcome, PlannedChange } from '../../proto/codec.js';
import type { AuditEntry, AuditEvent, OutboxItem, OutboxStats, Trigger } from '../store/types.js';

/** Audit records the link writes itself: removals carried out, plan requests answered or refused, policies it refused. */
export type LinkAuditEvent = Extract<AuditEvent, 'baseline_removed' | 'plan_requested' | 'plan_refused' | 'policy_rejected' | 'policy_removed'>;

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
  /**
   * Makes `policies` the agent's policy set (signed ones from the controller, or their cached copies at start). Checks the
   * set first: refused as a whole (throws; the previous set stays), or taken, with `policy_activated` recorded for each
   * version new to the agent. What the agent refuses itself it records as `policy_rejected`.
   */
  setPolicies(policies: ActivePolicy[], trigger: Trigger): Promise<void>;
  /** `document`: the baseline (or policy) the record is about, kept in the record's baseline and version fields. */
  recordLinkEvent(event: LinkAuditEvent, detail: string, document: { name: string; version: number } | null): void;
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
