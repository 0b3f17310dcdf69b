// The part of the controller store that adaptive tuning reads and writes: the event history walked in each agent's own
// order, the operators' decisions, proposals and tuning settings.
import type { Confidence } from '../../lib/tuning/confidence.js';

/** One stored event as a replay reads it: no hashes, no observed or desired state. */
export interface HistoryRow {
  id: number;
  agentId: string;
  seq: number;
  /** The agent's time of the record. */
  time: number;
  /** The controller's time of arrival. */
  receivedAt: number;
  resource: string | null;
  event: string;
  trigger: string | null;
  baseline: string | null;
  version: number | null;
  /** Only for `drift_detected` and `enforcement_paused`, the records whose detail a replay reads. */
  detail: string | null;
  actor: string | null;
  decision: string | null;
  changes: string | null;
  risk: string | null;
}

export interface HistoryQuery {
  /** Agent time, inclusive. */
  since: number;
  /** Agent time, exclusive. */
  until: number;
  /** The last row of the previous page: rows come in (agent, seq) order after it. */
  after: { agentId: string; seq: number } | null;
  limit: number;
}

/** An operator's decision on an escalation. */
export interface EscalationDecisionRow {
  agentId: string;
  resource: string;
  openedAt: number;
  decidedAt: number;
  status: 'approved' | 'rejected';
  decidedBy: string;
}

export type ProposalKind = 'auto-repair' | 'defer' | 'exception' | 'coordination' | 'maintenance-window';
export type ProposalState = 'open' | 'accepted' | 'rejected' | 'reverted' | 'withdrawn';

/** What a proposal is about: one kind of change of one resource of one baseline (and an opponent, or a schedule). */
export interface ProposalTarget {
  baseline: string;
  resource: string;
  change: string[];
  /** coordination: the actor the agent keeps fighting. */
  opponent?: string;
  /** maintenance-window: when the drift comes. */
  schedule?: { cron: string; duration: string; description: string };
}

export interface ProposalRecord {
  id: number;
  /** Identifies the proposal across refreshes: kind and target. */
  key: string;
  kind: ProposalKind;
  target: ProposalTarget;
  rationale: string;
  evidence: Record<string, unknown>;
  confidence: Confidence;
  /** The replay of the recorded history with this change (see BacktestResult), events cut to a few. */
  backtest: Record<string, unknown> | null;
  /** The rule (and window) the change adds to the tuning policy document, as the document writes it. */
  rule: Record<string, unknown>;
  window: Record<string, unknown> | null;
  /** Whether bounded autotuning may apply it, and what holds it back. */
  autotune: { eligible: boolean; reasons: string[] };
  state: ProposalState;
  createdAt: number;
  updatedAt: number;
  decidedAt: number | null;
  decidedBy: string | null;
  reason: string | null;
  /** The tuning document version that added it, and the one that took it out again (when and by whom). */
  applied: { name: string; version: number } | null;
  reverted: { name: string; version: number; at: number; by: string; reason: string } | null;
}

export interface SettingRecord {
  value: unknown;
  updatedAt: number;
  updatedBy: string;
}

export interface TuningStore {
  /** One page of stored events in (agent, seq) order: resource records and `enforcement_paused`, within [since, until). */
  scanHistory(q: HistoryQuery): Promise<HistoryRow[]>;
  /** Escalations approved or rejected by an operator at or after `since`. */
  escalationDecisions(since: number): Promise<EscalationDecisionRow[]>;
  /** Every resource an operator ever rejected a drift of (as long as the escalation is kept). */
  rejectedResources(): Promise<string[]>;

  addProposal(p: Omit<ProposalRecord, 'id'>): Promise<ProposalRecord>;
  updateProposal(id: number, patch: Partial<Omit<ProposalRecord, 'id'>>): Promise<void>;
  getProposal(id: number): Promise<ProposalRecord | undefined>;
  listProposals(filter: { state?: ProposalState; limit?: number }): Promise<ProposalRecord[]>;

  getSetting(name: string): Promise<SettingRecord | undefined>;
  putSetting(name: string, value: unknown, at: number, by: string): Promise<void>;
}
