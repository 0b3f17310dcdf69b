// What the controller link needs from the agent: a narrow view of agent/agent.ts, so the link is testable on its own.
import type { Baseline } from '../../lib/baseline/types.js';
import type { BaselineOutcome, PlannedChange } from '../../proto/codec.js';
import type { AuditEntry, OutboxItem, OutboxStats, Trigger } from '../store/types.js';

export interface LinkStore {
  outboxPending(limit: number): OutboxItem[];
  outboxAck(uptoSeq: number): void;
  outboxStats(): OutboxStats;
  getMeta(key: string): string | undefined;
  setMeta(key: string, value: string): void;
}

export interface LinkedAgent {
  activate(baselines: Baseline[], meta: { origin: 'controller'; versions: Record<string, number> }, trigger?: Trigger): Promise<unknown>;
  recordRejectedBaseline(name: string | null, detail: string, trigger: Trigger): void;
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
