// The controller's persistence seam: records and the ControllerStore interface. SQLite fills it by default (sqlite.ts);
// a PostgreSQL implementation can fill it later without touching the rest, which is why every method returns a Promise.
import type { Applied, HostFacts, Rejected } from '../../proto/codec.js';
import type { Labels } from '../../lib/labels.js';
import type { TuningStore } from './tuning.js';

export interface JoinTokenRecord {
  id: string;
  secretHash: string; // sha256 hex of the secret part; the token itself is never stored
  createdAt: number;
  expiresAt: number;
  maxUses: number | null;
  uses: number;
  /** Labels every agent enrolled with this token gets; an agent cannot ask for another value of these keys. */
  labels: Labels;
  /** What an agent enrolled with it may ask for: `key=*`, `key=value` or `key=pattern` (lib/labels.ts). */
  allowLabels: string[];
  description: string;
}

export interface AgentRecord {
  id: string;
  credentialHash: string;
  enrolledAt: number;
  tokenId: string;
  /** The labels selectors, canaries and plans match: trusted ones only (token, granted requests and facts, operator). */
  labels: Labels;
  /** The join token's labels and allowance, as they were at enrollment (deleting the token changes neither). */
  tokenLabels: Labels;
  allowLabels: string[];
  /** What the agent last asked for in its hello (granted or not). */
  requestedLabels: Labels;
  /** Set by an operator through the API; they win over every other source. */
  operatorLabels: Labels;
  facts: HostFacts | null;
  protocolVersion: number;
  agentVersion: string;
  lastSeen: number;
  revokedAt: number | null;
  outboxPending: number;
  outboxDropped: number;
  enforcementPaused: boolean;
  /** Highest event seq persisted from this agent. */
  lastEventSeq: number;
}

/** The two kinds of signed document the controller versions, signs and rolls out. */
export type DocumentKind = 'baseline' | 'policy';

/** What one agent acknowledged it enforces (or refused), per baseline (or, through the policy methods, policy) name. */
export interface AgentBaselineRecord {
  agentId: string;
  name: string;
  version: number;
  sha256: string;
  state: 'enforcing' | 'rejected';
  error: string | null;
  at: number;
}

export interface BaselineVersionRecord {
  name: string;
  version: number;
  sha256: string;
  yaml: string;
  sources: Record<string, string>; // base64 bytes by relative path
  file: string;
  description: string;
  selector: { matchLabels: Labels } | null;
  resources: number;
  createdAt: number;
}

/** One stored version of a policy document, validated by lib/policy's parser when pushed. */
export interface PolicyVersionRecord {
  name: string;
  version: number;
  sha256: string;
  yaml: string;
  file: string;
  description: string;
  selector: { matchLabels: Labels } | null;
  priority: number;
  rules: number;
  windows: number;
  createdAt: number;
}

/** The signed document currently assigned for a baseline (or policy) name: what every selected agent is sent. */
export interface TargetRecord {
  name: string;
  version: number;
  rollback: boolean;
  issuedAt: number;
  expiresAt: number;
  payload: Buffer;
  signature: Buffer;
  keyId: string;
  rolloutId: number;
}

export type RolloutState = 'running' | 'paused' | 'completed' | 'rolled_back' | 'aborted' | 'superseded';

/** One wave's cumulative extent: a percentage of the targeted hosts, or an absolute number of hosts. */
export type WaveStep = number | { hosts: number };

export interface RolloutStrategy {
  waves: WaveStep[];
  gate: { maxFailedHosts: number; soakSeconds: number; ackTimeoutSeconds: number };
  canary: { matchLabels: Labels } | null;
  /** What an unhealthy wave does: roll the hosts that got the version back (default), or only pause for an operator. */
  onFailure: 'rollback' | 'pause';
  /**
   * What an escalation raised by the new version itself does to its host: `pause` (default) makes it a pending approval
   * the wave waits on, `ignore` counts the host healthy, `fail` fails the host (as before this option existed).
   */
  onEscalation: 'pause' | 'ignore' | 'fail';
}

export interface RolloutRecord {
  id: number;
  /** What is rolled out: a baseline (the default, and every rollout stored before policies existed) or a policy. */
  document: DocumentKind;
  /** The name of the document rolled out: a baseline's, or a policy's when `document` is `policy`. */
  baseline: string;
  version: number;
  previousVersion: number | null;
  strategy: 'all-at-once' | 'waves';
  rollback: boolean;
  createdAt: number;
  state: RolloutState;
  spec: RolloutStrategy;
  /** Index of the wave being rolled out (or the last one reached); -1 before the first. */
  currentWave: number;
  waveStartedAt: number | null;
  /** Why it stopped (gate failure, operator action, escalations to decide), or null. */
  reason: string | null;
  /** While paused: by an operator, or by escalations of the new version that wait for decisions (resumes by itself). */
  pausedFor: 'operator' | 'escalations' | null;
  updatedAt: number;
  finishedAt: number | null;
  /** The signed document of `version` the rollout hands out wave by wave. */
  signed: { payload: Buffer; signature: Buffer; keyId: string; issuedAt: number; expiresAt: number } | null;
}

/**
 * `escalated`: the new version's own pass escalated and an operator's decision is awaited (onEscalation: pause).
 * `unsupported`: an agent too old for the document (policies need protocol 4); it keeps what it has and holds nothing up.
 */
export type RolloutHostStatus = 'waiting' | 'sent' | 'acknowledged' | 'converged' | 'failed' | 'offline' | 'escalated' | 'unsupported';

/** A resource the new version escalated on a host, and the escalation opened for it at the controller once known. */
export interface RolloutEscalation {
  resource: string;
  id: number | null;
  /** When the rollout learned of it (controller time): an escalation decided before then is an older one. */
  seenAt: number;
}

/** One targeted host of a rollout: its wave (fixed at the start) and how it fared. */
export interface RolloutHostRecord {
  rolloutId: number;
  agentId: string;
  wave: number;
  status: RolloutHostStatus;
  reason: string | null;
  /** Sent the version back to the previous one after the rollout was rolled back. */
  rolledBack: boolean;
  updatedAt: number;
  /** What the new version escalated on this host during its wave (onEscalation: pause), decided or not. */
  escalations: RolloutEscalation[];
}

/** A step of the controller's own work (rollouts, plans): the controller-side audit trail. */
export interface ControllerEventRecord {
  id: number;
  time: number;
  kind: string;
  rolloutId: number | null;
  baseline: string | null;
  detail: Record<string, unknown>;
}

export type PlanState = 'collecting' | 'done';

export interface PlanRecord {
  id: number;
  baseline: string;
  version: number;
  createdAt: number;
  state: PlanState;
  /** The per-host answers and the fleet summary, as the API returns them. */
  result: Record<string, unknown>;
}

export interface EventInput {
  seq: number;
  time: number;
  resource: string | null;
  event: string;
  trigger: string | null;
  baseline: string | null;
  version: number | null;
  observed: string | null; // JSON text
  desired: string | null;
  diff: string | null;
  detail: string | null;
  prevHash: string;
  hash: string;
  /**
   * Protocol 4 (absent or null from older agents, and when unknown): who made the drift, as JSON text (lib/policy/actor.ts's
   * Actor); how the agent decided it, as JSON text ({action, cause, rule: {document, version, index} | {baseline}, reason});
   * the changed field kinds, as JSON text of a list (`["content","mode"]`); the resource's risk (low ... critical).
   */
  actor?: string | null;
  decision?: string | null;
  changes?: string | null;
  risk?: string | null;
}

export interface EventRecord extends EventInput {
  actor: string | null;
  decision: string | null;
  changes: string | null;
  risk: string | null;
  id: number; // controller-wide, increasing in arrival order
  agentId: string;
  receivedAt: number;
}

export interface EventFilter {
  agent?: string;
  /** One resource id, or any of a few (a bare path may be a file or a directory). */
  resource?: string | readonly string[];
  kind?: string;
  since?: number;
  until?: number;
  /** Only events with a larger id (a cursor for paging and following). */
  after?: number;
  limit?: number;
  /** `desc`: the newest first (default: oldest first). */
  order?: 'asc' | 'desc';
}

export type EscalationStatus = 'open' | 'approved' | 'rejected' | 'resolved';

/** One agent event seen for an open escalation: the one that opened it, a repeat, or what closed it. */
export interface EscalationSighting {
  /** The agent's time of the event. */
  time: number;
  event: string;
  trigger: string | null;
  baseline: string | null;
  version: number | null;
  /** The event's detail, cut short. */
  detail: string | null;
  /** Who made the drift, as a short label (`/usr/bin/vim (session-4.scope)`), when the event named one. */
  actor: string | null;
}
/** What became of a decision on the agent: pending until the agent acknowledged it. */
export type DecisionOutcome = 'pending' | 'done' | 'failed';

export interface EscalationRecord {
  id: number;
  agentId: string;
  resource: string;
  baseline: string | null;
  version: number | null;
  /** The event that opened it: escalated, suppressed_flapping or repair_failed. */
  kind: string;
  detail: string | null;
  /** Who made the drift, as JSON text (from the latest event of this escalation that named one); null when unknown. */
  actor: string | null;
  /** The agent's decision record, as JSON text; null when none was sent. */
  decision: string | null;
  /** For a flap escalation, the actor the agent is fighting (`/usr/bin/puppet (puppet.service)`); null when none named. */
  opponent: string | null;
  /** The latest observed and desired state and diff (each repeat replaces them: what an approval repairs is the latest). */
  observed: string | null;
  desired: string | null;
  diff: string | null;
  openedAt: number;
  /** The agent's time of the latest event of this escalation (openedAt until it repeats). */
  lastSeenAt: number;
  /** How many further events for the same agent and resource arrived while it was open. */
  repeats: number;
  /** The first sighting and the latest ones, at most MAX_HISTORY (controller/escalations.ts), oldest first. */
  history: EscalationSighting[];
  status: EscalationStatus;
  decidedAt: number | null;
  decidedBy: string | null;
  /** The operator's reason for a decision; for a resolved one, why it closed (`the resource is compliant again: ...`). */
  reason: string | null;
  expiresAt: number | null;
  outcome: DecisionOutcome | null;
  outcomeError: string | null;
  /** The signed decision, kept until the agent acknowledges it. */
  decisionPayload: Buffer | null;
  decisionSignature: Buffer | null;
}

/** A new escalation; an event that named no actor or decision leaves them out (lastSeenAt defaults to openedAt). */
export type EscalationInput = Omit<EscalationRecord, 'id' | 'actor' | 'decision' | 'opponent' | 'lastSeenAt' | 'history'> &
  Partial<Pick<EscalationRecord, 'actor' | 'decision' | 'opponent' | 'lastSeenAt' | 'history'>>;

export interface EscalationFilter {
  status?: EscalationStatus;
  agent?: string;
  limit?: number;
}

export interface ControllerStore {
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;

  putJoinToken(t: JoinTokenRecord): Promise<void>;
  getJoinToken(id: string): Promise<JoinTokenRecord | undefined>;
  /** Counts one use; false when the token is unknown, expired or used up (checked and counted atomically). */
  useJoinToken(id: string, now: number): Promise<boolean>;
  listJoinTokens(): Promise<JoinTokenRecord[]>;
  deleteJoinToken(id: string): Promise<boolean>;

  putAgent(a: AgentRecord): Promise<void>;
  getAgent(id: string): Promise<AgentRecord | undefined>;
  listAgents(): Promise<AgentRecord[]>;
  updateAgentHello(id: string, h: { labels: Labels; requestedLabels: Labels; facts: HostFacts | null; protocolVersion: number; agentVersion: string; lastSeen: number }): Promise<void>;
  /** An operator's labels for one agent, with the trusted labels they result in. */
  setAgentOperatorLabels(id: string, operatorLabels: Labels, labels: Labels): Promise<void>;
  /** Batched liveness updates (heartbeats of many agents in one write). */
  updateAgentsSeen(rows: { id: string; lastSeen: number; outboxPending: number; outboxDropped: number; enforcementPaused: boolean }[]): Promise<void>;
  revokeAgent(id: string, at: number): Promise<boolean>;
  /** An agent enrolled with this join token and since revoked, if any. */
  revokedAgentOfToken(tokenId: string): Promise<string | undefined>;
  /** Replaces each listed agent's acknowledged set (many agents in one write). */
  setAgentBaselines(updates: { agentId: string; rows: AgentBaselineRecord[] }[]): Promise<void>;
  listAgentBaselines(agentId?: string): Promise<AgentBaselineRecord[]>;
  /** The same for policies (protocol 4 agents). */
  setAgentPolicies(updates: { agentId: string; rows: AgentBaselineRecord[] }[]): Promise<void>;
  listAgentPolicies(agentId?: string): Promise<AgentBaselineRecord[]>;

  /** Stores a new immutable version, numbered after the latest; if the latest has the same sha256 it is returned instead. */
  addBaselineVersion(v: Omit<BaselineVersionRecord, 'version'>): Promise<{ record: BaselineVersionRecord; created: boolean }>;
  getBaselineVersion(name: string, version: number): Promise<BaselineVersionRecord | undefined>;
  listBaselineVersions(name?: string): Promise<BaselineVersionRecord[]>;

  putTarget(t: TargetRecord): Promise<void>;
  listTargets(): Promise<TargetRecord[]>;

  /** Policy versions and targets, numbered and kept like baselines'. */
  addPolicyVersion(v: Omit<PolicyVersionRecord, 'version'>): Promise<{ record: PolicyVersionRecord; created: boolean }>;
  getPolicyVersion(name: string, version: number): Promise<PolicyVersionRecord | undefined>;
  listPolicyVersions(name?: string): Promise<PolicyVersionRecord[]>;
  putPolicyTarget(t: TargetRecord): Promise<void>;
  listPolicyTargets(): Promise<TargetRecord[]>;

  addRollout(r: Omit<RolloutRecord, 'id'>): Promise<RolloutRecord>;
  getRollout(id: number): Promise<RolloutRecord | undefined>;
  listRollouts(): Promise<RolloutRecord[]>;
  updateRollout(id: number, patch: Partial<Omit<RolloutRecord, 'id'>>): Promise<void>;
  /** Inserts or replaces hosts of rollouts (many in one write). */
  putRolloutHosts(rows: RolloutHostRecord[]): Promise<void>;
  listRolloutHosts(rolloutId: number): Promise<RolloutHostRecord[]>;

  addControllerEvent(e: Omit<ControllerEventRecord, 'id'>): Promise<ControllerEventRecord>;
  listControllerEvents(filter: { rolloutId?: number; after?: number; limit?: number }): Promise<ControllerEventRecord[]>;

  addPlan(p: Omit<PlanRecord, 'id'>): Promise<PlanRecord>;
  updatePlan(id: number, patch: { state: PlanState; result: Record<string, unknown> }): Promise<void>;
  getPlan(id: number): Promise<PlanRecord | undefined>;
  listPlans(limit: number): Promise<PlanRecord[]>;

  /**
   * Persists events of many agents in one transaction; a (agent, seq) already held is skipped.
   * Returns the events actually inserted (so side effects run once) and each agent's highest seq now held.
   */
  appendEvents(batches: { agentId: string; events: EventInput[] }[], receivedAt: number): Promise<{ inserted: EventRecord[]; lastSeq: Map<string, number> }>;
  listEvents(filter: EventFilter): Promise<EventRecord[]>;
  countEvents(): Promise<number>;
  /** Agents whose stored events take more than `maxBytes` (see eventSize), largest first. */
  agentsOverEventQuota(maxBytes: number): Promise<{ agentId: string; bytes: number }[]>;
  /** Deletes an agent's oldest events until `bytes` are freed, at most `maxRows` in one transaction. */
  trimAgentEvents(agentId: string, bytes: number, maxRows: number): Promise<{ deleted: number; freed: number }>;
  /** Deletes up to `maxRows` of the events received before `before` (controller time), oldest first; returns how many. */
  deleteEventsReceivedBefore(before: number, maxRows: number): Promise<number>;

  addEscalation(e: EscalationInput): Promise<EscalationRecord>;
  getEscalation(id: number): Promise<EscalationRecord | undefined>;
  /** The undecided escalation for this agent and resource, if any (the dedup key). */
  findOpenEscalation(agentId: string, resource: string): Promise<EscalationRecord | undefined>;
  /** The newest escalation for this agent and resource, whatever its status. */
  findLatestEscalation(agentId: string, resource: string): Promise<EscalationRecord | undefined>;
  /** The escalations of these ids that exist (many in one read). */
  getEscalations(ids: number[]): Promise<EscalationRecord[]>;
  updateEscalation(id: number, patch: Partial<Omit<EscalationRecord, 'id'>>): Promise<void>;
  listEscalations(filter: EscalationFilter): Promise<EscalationRecord[]>;
  /** Decisions signed but not yet acknowledged by this agent, oldest first. */
  pendingDecisions(agentId: string): Promise<EscalationRecord[]>;
  /** Deletes up to `maxRows` escalations decided or resolved before `before` whose outcome is no longer pending. */
  deleteDecidedEscalationsBefore(before: number, maxRows: number): Promise<number>;

  /** Outcomes, proposals, backtests and their settings (controller/tuning). */
  readonly tuning: TuningStore;

  close(): Promise<void>;
}
