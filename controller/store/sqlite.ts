// The embedded default ControllerStore: one SQLite file in the data dir, WAL mode, events inserted in batched transactions.
import * as fs from 'node:fs';
import { HsError } from '../../lib/errors.js';
import { migrate, openDatabase, type Database, type Migrations, type Statement } from '../../lib/sqlite.js';
import { SqliteTuningStore } from './sqlite-tuning.js';
import type {
  AgentBaselineRecord,
  AgentRecord,
  BaselineVersionRecord,
  ControllerStore,
  EscalationFilter,
  EscalationInput,
  EscalationRecord,
  EventFilter,
  EventInput,
  EventRecord,
  JoinTokenRecord,
  ControllerEventRecord,
  PlanRecord,
  PlanState,
  PolicyVersionRecord,
  RolloutHostRecord,
  RolloutRecord,
  RolloutState,
  RolloutStrategy,
  TargetRecord,
} from './types.js';

/**
 * The schema's steps in order: the first makes version 1 (lib/sqlite.ts migrate). Append; never edit a shipped one.
 * Exported so a test can build a database of an older schema (`MIGRATIONS[v - 1]` makes version v).
 */
export const MIGRATIONS: readonly string[] = [
  // 1
  `
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE join_tokens (
      id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
      max_uses INTEGER, uses INTEGER NOT NULL DEFAULT 0, labels TEXT NOT NULL, description TEXT NOT NULL);
    CREATE TABLE agents (
      id TEXT PRIMARY KEY, credential_hash TEXT NOT NULL, enrolled_at INTEGER NOT NULL, token_id TEXT NOT NULL,
      labels TEXT NOT NULL, facts TEXT, protocol_version INTEGER NOT NULL, agent_version TEXT NOT NULL,
      last_seen INTEGER NOT NULL, revoked_at INTEGER, outbox_pending INTEGER NOT NULL DEFAULT 0,
      outbox_dropped INTEGER NOT NULL DEFAULT 0, enforcement_paused INTEGER NOT NULL DEFAULT 0,
      last_event_seq INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE agent_baselines (
      agent_id TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, state TEXT NOT NULL,
      error TEXT, at INTEGER NOT NULL, PRIMARY KEY (agent_id, name, state));
    CREATE TABLE baseline_versions (
      name TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, yaml TEXT NOT NULL, sources TEXT NOT NULL,
      file TEXT NOT NULL, description TEXT NOT NULL, selector TEXT, resources INTEGER NOT NULL, created_at INTEGER NOT NULL,
      PRIMARY KEY (name, version));
    CREATE TABLE targets (
      name TEXT PRIMARY KEY, version INTEGER NOT NULL, rollback INTEGER NOT NULL, issued_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL, payload BLOB NOT NULL, signature BLOB NOT NULL, key_id TEXT NOT NULL, rollout_id INTEGER NOT NULL);
    CREATE TABLE rollouts (
      id INTEGER PRIMARY KEY AUTOINCREMENT, baseline TEXT NOT NULL, version INTEGER NOT NULL, previous_version INTEGER,
      strategy TEXT NOT NULL, rollback INTEGER NOT NULL, created_at INTEGER NOT NULL);
    CREATE TABLE events (
      id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL, seq INTEGER NOT NULL, time INTEGER NOT NULL,
      received_at INTEGER NOT NULL, resource TEXT, event TEXT NOT NULL, trigger TEXT, baseline TEXT, version INTEGER,
      observed TEXT, desired TEXT, diff TEXT, detail TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
      UNIQUE (agent_id, seq));
    CREATE INDEX events_time ON events (time);
    CREATE TABLE escalations (
      id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL, resource TEXT NOT NULL, baseline TEXT, version INTEGER,
      kind TEXT NOT NULL, detail TEXT, observed TEXT, desired TEXT, diff TEXT, opened_at INTEGER NOT NULL,
      repeats INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL, decided_at INTEGER, decided_by TEXT, reason TEXT,
      expires_at INTEGER, outcome TEXT, outcome_error TEXT, decision_payload BLOB, decision_signature BLOB);
    CREATE INDEX escalations_agent ON escalations (agent_id, resource, status);
  `,
  // Staged rollouts: their state, the signed version they hand out, their hosts by wave; controller audit; plans.
  // 2
  `
    ALTER TABLE rollouts ADD COLUMN state TEXT NOT NULL DEFAULT 'completed';
    ALTER TABLE rollouts ADD COLUMN spec TEXT;
    ALTER TABLE rollouts ADD COLUMN current_wave INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rollouts ADD COLUMN wave_started_at INTEGER;
    ALTER TABLE rollouts ADD COLUMN reason TEXT;
    ALTER TABLE rollouts ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rollouts ADD COLUMN finished_at INTEGER;
    ALTER TABLE rollouts ADD COLUMN signed TEXT;
    CREATE TABLE rollout_hosts (
      rollout_id INTEGER NOT NULL, agent_id TEXT NOT NULL, wave INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT,
      rolled_back INTEGER NOT NULL DEFAULT 0, updated_at INTEGER NOT NULL, PRIMARY KEY (rollout_id, agent_id));
    CREATE TABLE controller_events (
      id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, kind TEXT NOT NULL, rollout_id INTEGER, baseline TEXT,
      detail TEXT NOT NULL);
    CREATE INDEX controller_events_rollout ON controller_events (rollout_id, id);
    CREATE TABLE plans (
      id INTEGER PRIMARY KEY AUTOINCREMENT, baseline TEXT NOT NULL, version INTEGER NOT NULL, created_at INTEGER NOT NULL,
      state TEXT NOT NULL, result TEXT NOT NULL);
  `,
  // Trusted labels: what a token lets agents ask for, and each agent's labels by source. Agents enrolled before keep the
  // labels they had, as operator labels (review them with GET /api/v1/agents).
  // 3
  `
    ALTER TABLE join_tokens ADD COLUMN allow_labels TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE agents ADD COLUMN token_labels TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE agents ADD COLUMN allow_labels TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE agents ADD COLUMN requested_labels TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE agents ADD COLUMN operator_labels TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX agents_revoked_by_token ON agents (token_id) WHERE revoked_at IS NOT NULL;
    UPDATE agents SET operator_labels = labels,
      token_labels = COALESCE((SELECT t.labels FROM join_tokens t WHERE t.id = agents.token_id), '{}');
  `,
  // Per-agent storage accounting for quotas: each event's size, and each agent's total (events stored before this
  // version count as size 0 and leave with age retention).
  // 4
  `
    ALTER TABLE events ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE agents ADD COLUMN event_bytes INTEGER NOT NULL DEFAULT 0;
  `,
  // Policies versioned, signed and acknowledged like baselines; rollouts of either kind, paused by escalations to decide;
  // events with the actor, decision, changed fields and risk, and escalations showing the actor and the opponent.
  // 5
  `
    CREATE TABLE policy_versions (
      name TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, yaml TEXT NOT NULL, file TEXT NOT NULL,
      description TEXT NOT NULL, selector TEXT, priority INTEGER NOT NULL, rules INTEGER NOT NULL, windows INTEGER NOT NULL,
      created_at INTEGER NOT NULL, PRIMARY KEY (name, version));
    CREATE TABLE policy_targets (
      name TEXT PRIMARY KEY, version INTEGER NOT NULL, rollback INTEGER NOT NULL, issued_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL, payload BLOB NOT NULL, signature BLOB NOT NULL, key_id TEXT NOT NULL, rollout_id INTEGER NOT NULL);
    CREATE TABLE agent_policies (
      agent_id TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, state TEXT NOT NULL,
      error TEXT, at INTEGER NOT NULL, PRIMARY KEY (agent_id, name, state));
    ALTER TABLE rollouts ADD COLUMN document TEXT NOT NULL DEFAULT 'baseline';
    ALTER TABLE rollouts ADD COLUMN paused_for TEXT;
    UPDATE rollouts SET paused_for = 'operator' WHERE state = 'paused';
    ALTER TABLE rollout_hosts ADD COLUMN escalations TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE events ADD COLUMN actor TEXT;
    ALTER TABLE events ADD COLUMN decision TEXT;
    ALTER TABLE events ADD COLUMN changes TEXT;
    ALTER TABLE events ADD COLUMN risk TEXT;
    ALTER TABLE escalations ADD COLUMN actor TEXT;
    ALTER TABLE escalations ADD COLUMN decision TEXT;
    ALTER TABLE escalations ADD COLUMN opponent TEXT;
  `,
  // Adaptive tuning: proposals, tuning settings, and the versions of the tuning policy document (dropped by 7).
  // 6
  `
    CREATE TABLE proposals (
      id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,
      created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, decided_at INTEGER, decided_by TEXT, reason TEXT, body TEXT NOT NULL);
    CREATE INDEX proposals_key ON proposals (key);
    CREATE INDEX proposals_state ON proposals (state, id);
    CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at INTEGER NOT NULL, updated_by TEXT NOT NULL);
    CREATE TABLE tuning_documents (
      name TEXT NOT NULL, version INTEGER NOT NULL, yaml TEXT NOT NULL, sha256 TEXT NOT NULL, created_at INTEGER NOT NULL,
      created_by TEXT NOT NULL, PRIMARY KEY (name, version));
  `,
  // 7: the tuning document is a policy like any other now (policy_versions, signed and rolled out by the policy service).
  // Its old versions are not copied: a policy version needs the parsed document's counts, which SQL cannot compute, and
  // the document is a function of the accepted proposals, which the tuning service stores again as a policy version at
  // start when none exists (docs/tuning.md). Those old versions never reached an agent.
  `
    DROP TABLE tuning_documents;
  `,
  // 8: escalations kept current as their drift repeats: when it was last seen, and a bounded history of the sightings.
  `
    ALTER TABLE escalations ADD COLUMN last_seen_at INTEGER;
    ALTER TABLE escalations ADD COLUMN history TEXT NOT NULL DEFAULT '[]';
  `,
];

const CONTROLLER_SCHEMA: Migrations = { owner: 'controller', steps: MIGRATIONS };

/** What an event costs in storage, by the lengths of its text: the quantity per-agent quotas count. */
export function eventSize(e: EventInput): number {
  const len = (v: string | null | undefined): number => (v == null ? 0 : v.length);
  return (
    64 + len(e.resource) + e.event.length + len(e.trigger) + len(e.baseline) + len(e.observed) + len(e.desired) + len(e.diff) + len(e.detail) +
    e.prevHash.length + e.hash.length + len(e.actor) + len(e.decision) + len(e.changes) + len(e.risk)
  );
}


type Row = Record<string, unknown>;

const str = (v: unknown): string => (typeof v === 'string' ? v : v == null ? '' : String(v));
const num = (v: unknown): number => (typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : Number(v ?? 0));
const optStr = (v: unknown): string | null => (v == null ? null : str(v));
const optNum = (v: unknown): number | null => (v == null ? null : num(v));
const optBuf = (v: unknown): Buffer | null => (Buffer.isBuffer(v) ? v : null);
const json = <T>(v: unknown, fallback: T): T => (typeof v === 'string' && v !== '' ? (JSON.parse(v) as T) : fallback);

function tokenFromRow(r: Row): JoinTokenRecord {
  return {
    id: str(r.id),
    secretHash: str(r.secret_hash),
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    maxUses: optNum(r.max_uses),
    uses: num(r.uses),
    labels: json(r.labels, {}),
    allowLabels: json(r.allow_labels, []),
    description: str(r.description),
  };
}

function agentFromRow(r: Row): AgentRecord {
  return {
    id: str(r.id),
    credentialHash: str(r.credential_hash),
    enrolledAt: num(r.enrolled_at),
    tokenId: str(r.token_id),
    labels: json(r.labels, {}),
    tokenLabels: json(r.token_labels, {}),
    allowLabels: json(r.allow_labels, []),
    requestedLabels: json(r.requested_labels, {}),
    operatorLabels: json(r.operator_labels, {}),
    facts: json(r.facts, null),
    protocolVersion: num(r.protocol_version),
    agentVersion: str(r.agent_version),
    lastSeen: num(r.last_seen),
    revokedAt: optNum(r.revoked_at),
    outboxPending: num(r.outbox_pending),
    outboxDropped: num(r.outbox_dropped),
    enforcementPaused: num(r.enforcement_paused) === 1,
    lastEventSeq: num(r.last_event_seq),
  };
}

function versionFromRow(r: Row): BaselineVersionRecord {
  return {
    name: str(r.name),
    version: num(r.version),
    sha256: str(r.sha256),
    yaml: str(r.yaml),
    sources: json(r.sources, {}),
    file: str(r.file),
    description: str(r.description),
    selector: json(r.selector, null),
    resources: num(r.resources),
    createdAt: num(r.created_at),
  };
}

function policyVersionFromRow(r: Row): PolicyVersionRecord {
  return {
    name: str(r.name),
    version: num(r.version),
    sha256: str(r.sha256),
    yaml: str(r.yaml),
    file: str(r.file),
    description: str(r.description),
    selector: json(r.selector, null),
    priority: num(r.priority),
    rules: num(r.rules),
    windows: num(r.windows),
    createdAt: num(r.created_at),
  };
}

function targetFromRow(r: Row): TargetRecord {
  return {
    name: str(r.name),
    version: num(r.version),
    rollback: num(r.rollback) === 1,
    issuedAt: num(r.issued_at),
    expiresAt: num(r.expires_at),
    payload: optBuf(r.payload) ?? Buffer.alloc(0),
    signature: optBuf(r.signature) ?? Buffer.alloc(0),
    keyId: str(r.key_id),
    rolloutId: num(r.rollout_id),
  };
}

function agentDocumentFromRow(r: Row): AgentBaselineRecord {
  return {
    agentId: str(r.agent_id),
    name: str(r.name),
    version: num(r.version),
    sha256: str(r.sha256),
    state: str(r.state) as AgentBaselineRecord['state'],
    error: optStr(r.error),
    at: num(r.at),
  };
}

function eventFromRow(r: Row): EventRecord {
  return {
    id: num(r.id),
    agentId: str(r.agent_id),
    seq: num(r.seq),
    time: num(r.time),
    receivedAt: num(r.received_at),
    resource: optStr(r.resource),
    event: str(r.event),
    trigger: optStr(r.trigger),
    baseline: optStr(r.baseline),
    version: optNum(r.version),
    observed: optStr(r.observed),
    desired: optStr(r.desired),
    diff: optStr(r.diff),
    detail: optStr(r.detail),
    prevHash: str(r.prev_hash),
    hash: str(r.hash),
    actor: optStr(r.actor),
    decision: optStr(r.decision),
    changes: optStr(r.changes),
    risk: optStr(r.risk),
  };
}

function escalationFromRow(r: Row): EscalationRecord {
  return {
    id: num(r.id),
    agentId: str(r.agent_id),
    resource: str(r.resource),
    baseline: optStr(r.baseline),
    version: optNum(r.version),
    kind: str(r.kind),
    detail: optStr(r.detail),
    actor: optStr(r.actor),
    decision: optStr(r.decision),
    opponent: optStr(r.opponent),
    observed: optStr(r.observed),
    desired: optStr(r.desired),
    diff: optStr(r.diff),
    openedAt: num(r.opened_at),
    lastSeenAt: optNum(r.last_seen_at) ?? num(r.opened_at),
    repeats: num(r.repeats),
    history: json(r.history, []),
    status: str(r.status) as EscalationRecord['status'],
    decidedAt: optNum(r.decided_at),
    decidedBy: optStr(r.decided_by),
    reason: optStr(r.reason),
    expiresAt: optNum(r.expires_at),
    outcome: optStr(r.outcome) as EscalationRecord['outcome'],
    outcomeError: optStr(r.outcome_error),
    decisionPayload: optBuf(r.decision_payload),
    decisionSignature: optBuf(r.decision_signature),
  };
}

const ESCALATION_COLUMNS: Record<keyof Omit<EscalationRecord, 'id'>, string> = {
  agentId: 'agent_id',
  resource: 'resource',
  baseline: 'baseline',
  version: 'version',
  kind: 'kind',
  detail: 'detail',
  actor: 'actor',
  decision: 'decision',
  opponent: 'opponent',
  observed: 'observed',
  desired: 'desired',
  diff: 'diff',
  openedAt: 'opened_at',
  lastSeenAt: 'last_seen_at',
  repeats: 'repeats',
  history: 'history',
  status: 'status',
  decidedAt: 'decided_at',
  decidedBy: 'decided_by',
  reason: 'reason',
  expiresAt: 'expires_at',
  outcome: 'outcome',
  outcomeError: 'outcome_error',
  decisionPayload: 'decision_payload',
  decisionSignature: 'decision_signature',
};

const RESTORE_HINT =
  'Stop the controller and restore controller.db from a backup (removing controller.db-wal and controller.db-shm next to it); agents keep enforcing their cached baselines meanwhile and resend the events they still hold';

/**
 * Creates the file 0600 whatever the umask (SQLite gives its -wal and -shm files the database's mode), never through a
 * symlink, and takes group and other access away from one created more openly by an older version.
 */
function createPrivate(file: string): void {
  fs.closeSync(fs.openSync(file, fs.constants.O_CREAT | fs.constants.O_RDWR | fs.constants.O_NOFOLLOW, 0o600));
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    const st = fs.lstatSync(f, { throwIfNoEntry: false });
    if (st?.isFile() && (st.mode & 0o077) !== 0) fs.chmodSync(f, st.mode & 0o700);
  }
}

/** A damaged page is found at start, not when some later query trips on it. */
function checkIntegrity(db: Database, file: string): void {
  let problems: string[];
  try {
    problems = (db.pragma('quick_check(5)') as Row[]).map((r) => str(r.quick_check));
  } catch (err) {
    throw new HsError('HS_STORE', `${file} is damaged and cannot be checked (${err instanceof Error ? err.message : String(err)}). ${RESTORE_HINT}.`, { cause: err });
  }
  if (problems.length !== 1 || problems[0] !== 'ok') {
    throw new HsError('HS_STORE', `${file} is damaged (PRAGMA quick_check: ${problems.join('; ')}). ${RESTORE_HINT}.`);
  }
}

/** Opens (creating or migrating) the controller database at `file`; `:memory:` for tests. */
export function openControllerDatabase(file: string): Database {
  const memory = file === ':memory:' || file === '';
  let db: Database;
  try {
    if (!memory) createPrivate(file);
    db = openDatabase(file);
  } catch (err) {
    if (err instanceof HsError && /SQLITE_(NOTADB|CORRUPT)|not a database|malformed/i.test(`${err.message} ${String((err.cause as Error | undefined)?.message)}`)) {
      throw new HsError('HS_STORE', `${file} is damaged (${err.message}). ${RESTORE_HINT}.`, { cause: err });
    }
    if (err instanceof HsError) throw err;
    throw new HsError('HS_STORE', `cannot create ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (!memory) {
    try {
      checkIntegrity(db, file);
    } catch (err) {
      db.close();
      throw err;
    }
  }
  try {
    migrate(db, file, CONTROLLER_SCHEMA);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

export class SqliteControllerStore implements ControllerStore {
  private readonly db: Database;
  private readonly insertEvent: Statement;
  /** For events without decision fields (every event of an agent before protocol 4): the columns default to NULL. */
  private readonly insertPlainEvent: Statement;
  private readonly updateLastSeq: Statement;
  readonly tuning: SqliteTuningStore;

  constructor(file: string) {
    this.db = openControllerDatabase(file);
    this.insertEvent = this.db.prepare(
      `INSERT OR IGNORE INTO events (agent_id, seq, time, received_at, resource, event, trigger, baseline, version, observed, desired, diff, detail, prev_hash, hash, size,
         actor, decision, changes, risk)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.insertPlainEvent = this.db.prepare(
      `INSERT OR IGNORE INTO events (agent_id, seq, time, received_at, resource, event, trigger, baseline, version, observed, desired, diff, detail, prev_hash, hash, size)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.tuning = new SqliteTuningStore(this.db);
    this.updateLastSeq = this.db.prepare('UPDATE agents SET last_event_seq = MAX(last_event_seq, ?), event_bytes = event_bytes + ? WHERE id = ?');
  }

  async getMeta(key: string): Promise<string | undefined> {
    const r = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as Row | undefined;
    return r ? str(r.value) : undefined;
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  async putJoinToken(t: JoinTokenRecord): Promise<void> {
    this.db
      .prepare('INSERT INTO join_tokens (id, secret_hash, created_at, expires_at, max_uses, uses, labels, allow_labels, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(t.id, t.secretHash, t.createdAt, t.expiresAt, t.maxUses, t.uses, JSON.stringify(t.labels), JSON.stringify(t.allowLabels), t.description);
  }

  async getJoinToken(id: string): Promise<JoinTokenRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM join_tokens WHERE id = ?').get(id) as Row | undefined;
    return r ? tokenFromRow(r) : undefined;
  }

  async useJoinToken(id: string, now: number): Promise<boolean> {
    const res = this.db
      .prepare('UPDATE join_tokens SET uses = uses + 1 WHERE id = ? AND expires_at > ? AND (max_uses IS NULL OR uses < max_uses)')
      .run(id, now);
    return res.changes === 1;
  }

  async listJoinTokens(): Promise<JoinTokenRecord[]> {
    return (this.db.prepare('SELECT * FROM join_tokens ORDER BY created_at').all() as Row[]).map(tokenFromRow);
  }

  async deleteJoinToken(id: string): Promise<boolean> {
    return this.db.prepare('DELETE FROM join_tokens WHERE id = ?').run(id).changes === 1;
  }

  async putAgent(a: AgentRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO agents (id, credential_hash, enrolled_at, token_id, labels, facts, protocol_version, agent_version, last_seen, revoked_at,
           outbox_pending, outbox_dropped, enforcement_paused, last_event_seq, token_labels, allow_labels, requested_labels, operator_labels)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        a.id,
        a.credentialHash,
        a.enrolledAt,
        a.tokenId,
        JSON.stringify(a.labels),
        a.facts === null ? null : JSON.stringify(a.facts),
        a.protocolVersion,
        a.agentVersion,
        a.lastSeen,
        a.revokedAt,
        a.outboxPending,
        a.outboxDropped,
        a.enforcementPaused ? 1 : 0,
        a.lastEventSeq,
        JSON.stringify(a.tokenLabels),
        JSON.stringify(a.allowLabels),
        JSON.stringify(a.requestedLabels),
        JSON.stringify(a.operatorLabels),
      );
  }

  async getAgent(id: string): Promise<AgentRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM agents WHERE id = ?').get(id) as Row | undefined;
    return r ? agentFromRow(r) : undefined;
  }

  async listAgents(): Promise<AgentRecord[]> {
    return (this.db.prepare('SELECT * FROM agents ORDER BY enrolled_at, id').all() as Row[]).map(agentFromRow);
  }

  async updateAgentHello(id: string, h: Parameters<ControllerStore['updateAgentHello']>[1]): Promise<void> {
    this.db
      .prepare('UPDATE agents SET labels = ?, requested_labels = ?, facts = ?, protocol_version = ?, agent_version = ?, last_seen = ? WHERE id = ?')
      .run(JSON.stringify(h.labels), JSON.stringify(h.requestedLabels), h.facts === null ? null : JSON.stringify(h.facts), h.protocolVersion, h.agentVersion, h.lastSeen, id);
  }

  async setAgentOperatorLabels(id: string, operatorLabels: Parameters<ControllerStore['setAgentOperatorLabels']>[1], labels: Parameters<ControllerStore['setAgentOperatorLabels']>[2]): Promise<void> {
    this.db.prepare('UPDATE agents SET operator_labels = ?, labels = ? WHERE id = ?').run(JSON.stringify(operatorLabels), JSON.stringify(labels), id);
  }

  async updateAgentsSeen(rows: Parameters<ControllerStore['updateAgentsSeen']>[0]): Promise<void> {
    const stmt = this.db.prepare('UPDATE agents SET last_seen = ?, outbox_pending = ?, outbox_dropped = ?, enforcement_paused = ? WHERE id = ?');
    this.db.transaction(() => {
      for (const r of rows) stmt.run(r.lastSeen, r.outboxPending, r.outboxDropped, r.enforcementPaused ? 1 : 0, r.id);
    })();
  }

  async revokedAgentOfToken(tokenId: string): Promise<string | undefined> {
    const r = this.db.prepare('SELECT id FROM agents WHERE token_id = ? AND revoked_at IS NOT NULL LIMIT 1').get(tokenId) as Row | undefined;
    return r ? str(r.id) : undefined;
  }

  async revokeAgent(id: string, at: number): Promise<boolean> {
    return this.db.prepare('UPDATE agents SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(at, id).changes === 1;
  }

  async setAgentBaselines(updates: { agentId: string; rows: AgentBaselineRecord[] }[]): Promise<void> {
    this.setAgentDocuments('agent_baselines', updates);
  }

  async listAgentBaselines(agentId?: string): Promise<AgentBaselineRecord[]> {
    return this.listAgentDocuments('agent_baselines', agentId);
  }

  async setAgentPolicies(updates: { agentId: string; rows: AgentBaselineRecord[] }[]): Promise<void> {
    this.setAgentDocuments('agent_policies', updates);
  }

  async listAgentPolicies(agentId?: string): Promise<AgentBaselineRecord[]> {
    return this.listAgentDocuments('agent_policies', agentId);
  }

  private setAgentDocuments(table: 'agent_baselines' | 'agent_policies', updates: { agentId: string; rows: AgentBaselineRecord[] }[]): void {
    const del = this.db.prepare(`DELETE FROM ${table} WHERE agent_id = ?`);
    const ins = this.db.prepare(`INSERT OR REPLACE INTO ${table} (agent_id, name, version, sha256, state, error, at) VALUES (?, ?, ?, ?, ?, ?, ?)`);
    this.db.transaction(() => {
      for (const { agentId, rows } of updates) {
        del.run(agentId);
        for (const r of rows) ins.run(agentId, r.name, r.version, r.sha256, r.state, r.error, r.at);
      }
    })();
  }

  private listAgentDocuments(table: 'agent_baselines' | 'agent_policies', agentId?: string): AgentBaselineRecord[] {
    const rows = (
      agentId === undefined ? this.db.prepare(`SELECT * FROM ${table}`).all() : this.db.prepare(`SELECT * FROM ${table} WHERE agent_id = ?`).all(agentId)
    ) as Row[];
    return rows.map(agentDocumentFromRow);
  }

  async addBaselineVersion(v: Omit<BaselineVersionRecord, 'version'>): Promise<{ record: BaselineVersionRecord; created: boolean }> {
    return this.db.transaction(() => {
      const latest = this.db.prepare('SELECT * FROM baseline_versions WHERE name = ? ORDER BY version DESC LIMIT 1').get(v.name) as Row | undefined;
      if (latest && str(latest.sha256) === v.sha256) return { record: versionFromRow(latest), created: false };
      const version = latest ? num(latest.version) + 1 : 1;
      this.db
        .prepare(
          'INSERT INTO baseline_versions (name, version, sha256, yaml, sources, file, description, selector, resources, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(v.name, version, v.sha256, v.yaml, JSON.stringify(v.sources), v.file, v.description, v.selector ? JSON.stringify(v.selector) : null, v.resources, v.createdAt);
      return { record: { ...v, version }, created: true };
    })();
  }

  async getBaselineVersion(name: string, version: number): Promise<BaselineVersionRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM baseline_versions WHERE name = ? AND version = ?').get(name, version) as Row | undefined;
    return r ? versionFromRow(r) : undefined;
  }

  async listBaselineVersions(name?: string): Promise<BaselineVersionRecord[]> {
    const rows = (
      name === undefined
        ? this.db.prepare('SELECT * FROM baseline_versions ORDER BY name, version').all()
        : this.db.prepare('SELECT * FROM baseline_versions WHERE name = ? ORDER BY version').all(name)
    ) as Row[];
    return rows.map(versionFromRow);
  }

  async putTarget(t: TargetRecord): Promise<void> {
    this.putTargetIn('targets', t);
  }

  async listTargets(): Promise<TargetRecord[]> {
    return (this.db.prepare('SELECT * FROM targets ORDER BY name').all() as Row[]).map(targetFromRow);
  }

  async putPolicyTarget(t: TargetRecord): Promise<void> {
    this.putTargetIn('policy_targets', t);
  }

  async listPolicyTargets(): Promise<TargetRecord[]> {
    return (this.db.prepare('SELECT * FROM policy_targets ORDER BY name').all() as Row[]).map(targetFromRow);
  }

  private putTargetIn(table: 'targets' | 'policy_targets', t: TargetRecord): void {
    this.db
      .prepare(
        `INSERT INTO ${table} (name, version, rollback, issued_at, expires_at, payload, signature, key_id, rollout_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET version = excluded.version, rollback = excluded.rollback, issued_at = excluded.issued_at,
           expires_at = excluded.expires_at, payload = excluded.payload, signature = excluded.signature, key_id = excluded.key_id, rollout_id = excluded.rollout_id`,
      )
      .run(t.name, t.version, t.rollback ? 1 : 0, t.issuedAt, t.expiresAt, t.payload, t.signature, t.keyId, t.rolloutId);
  }

  async addPolicyVersion(v: Omit<PolicyVersionRecord, 'version'>): Promise<{ record: PolicyVersionRecord; created: boolean }> {
    return this.db.transaction(() => {
      const latest = this.db.prepare('SELECT * FROM policy_versions WHERE name = ? ORDER BY version DESC LIMIT 1').get(v.name) as Row | undefined;
      if (latest && str(latest.sha256) === v.sha256) return { record: policyVersionFromRow(latest), created: false };
      const version = latest ? num(latest.version) + 1 : 1;
      this.db
        .prepare(
          'INSERT INTO policy_versions (name, version, sha256, yaml, file, description, selector, priority, rules, windows, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(v.name, version, v.sha256, v.yaml, v.file, v.description, v.selector ? JSON.stringify(v.selector) : null, v.priority, v.rules, v.windows, v.createdAt);
      return { record: { ...v, version }, created: true };
    })();
  }

  async getPolicyVersion(name: string, version: number): Promise<PolicyVersionRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM policy_versions WHERE name = ? AND version = ?').get(name, version) as Row | undefined;
    return r ? policyVersionFromRow(r) : undefined;
  }

  async listPolicyVersions(name?: string): Promise<PolicyVersionRecord[]> {
    const rows = (
      name === undefined
        ? this.db.prepare('SELECT * FROM policy_versions ORDER BY name, version').all()
        : this.db.prepare('SELECT * FROM policy_versions WHERE name = ? ORDER BY version').all(name)
    ) as Row[];
    return rows.map(policyVersionFromRow);
  }

  async addRollout(r: Omit<RolloutRecord, 'id'>): Promise<RolloutRecord> {
    const keys = Object.keys(ROLLOUT_COLUMNS) as (keyof typeof ROLLOUT_COLUMNS)[];
    const res = this.db
      .prepare(`INSERT INTO rollouts (${keys.map((k) => ROLLOUT_COLUMNS[k]).join(', ')}) VALUES (${keys.map(() => '?').join(', ')})`)
      .run(...keys.map((k) => rolloutValue(k, r[k])));
    return { ...r, id: num(res.lastInsertRowid) };
  }

  async updateRollout(id: number, patch: Partial<Omit<RolloutRecord, 'id'>>): Promise<void> {
    const keys = (Object.keys(patch) as (keyof typeof ROLLOUT_COLUMNS)[]).filter((k) => k in ROLLOUT_COLUMNS);
    if (keys.length === 0) return;
    this.db
      .prepare(`UPDATE rollouts SET ${keys.map((k) => `${ROLLOUT_COLUMNS[k]} = ?`).join(', ')} WHERE id = ?`)
      .run(...keys.map((k) => rolloutValue(k, patch[k])), id);
  }

  async putRolloutHosts(rows: RolloutHostRecord[]): Promise<void> {
    if (rows.length === 0) return;
    const stmt = this.db.prepare(
      'INSERT OR REPLACE INTO rollout_hosts (rollout_id, agent_id, wave, status, reason, rolled_back, updated_at, escalations) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.db.transaction(() => {
      for (const h of rows) stmt.run(h.rolloutId, h.agentId, h.wave, h.status, h.reason, h.rolledBack ? 1 : 0, h.updatedAt, JSON.stringify(h.escalations));
    })();
  }

  async listRolloutHosts(rolloutId: number): Promise<RolloutHostRecord[]> {
    return (this.db.prepare('SELECT * FROM rollout_hosts WHERE rollout_id = ? ORDER BY wave, agent_id').all(rolloutId) as Row[]).map((r) => ({
      rolloutId: num(r.rollout_id),
      agentId: str(r.agent_id),
      wave: num(r.wave),
      status: str(r.status) as RolloutHostRecord['status'],
      reason: optStr(r.reason),
      rolledBack: num(r.rolled_back) === 1,
      updatedAt: num(r.updated_at),
      escalations: json(r.escalations, []),
    }));
  }

  async addControllerEvent(e: Omit<ControllerEventRecord, 'id'>): Promise<ControllerEventRecord> {
    const res = this.db
      .prepare('INSERT INTO controller_events (time, kind, rollout_id, baseline, detail) VALUES (?, ?, ?, ?, ?)')
      .run(e.time, e.kind, e.rolloutId, e.baseline, JSON.stringify(e.detail));
    return { ...e, id: num(res.lastInsertRowid) };
  }

  async listControllerEvents(f: { rolloutId?: number; after?: number; limit?: number }): Promise<ControllerEventRecord[]> {
    const where: string[] = [];
    const args: number[] = [];
    if (f.rolloutId !== undefined) (where.push('rollout_id = ?'), args.push(f.rolloutId));
    if (f.after !== undefined) (where.push('id > ?'), args.push(f.after));
    args.push(Math.min(Math.max(f.limit ?? 1000, 1), 10_000));
    const sql = `SELECT * FROM controller_events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT ?`;
    return (this.db.prepare(sql).all(...args) as Row[]).map((r) => ({
      id: num(r.id),
      time: num(r.time),
      kind: str(r.kind),
      rolloutId: optNum(r.rollout_id),
      baseline: optStr(r.baseline),
      detail: json(r.detail, {}),
    }));
  }

  async addPlan(p: Omit<PlanRecord, 'id'>): Promise<PlanRecord> {
    const res = this.db
      .prepare('INSERT INTO plans (baseline, version, created_at, state, result) VALUES (?, ?, ?, ?, ?)')
      .run(p.baseline, p.version, p.createdAt, p.state, JSON.stringify(p.result));
    return { ...p, id: num(res.lastInsertRowid) };
  }

  async updatePlan(id: number, patch: { state: PlanState; result: Record<string, unknown> }): Promise<void> {
    this.db.prepare('UPDATE plans SET state = ?, result = ? WHERE id = ?').run(patch.state, JSON.stringify(patch.result), id);
  }

  async getPlan(id: number): Promise<PlanRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM plans WHERE id = ?').get(id) as Row | undefined;
    return r ? planFromRow(r) : undefined;
  }

  async listPlans(limit: number): Promise<PlanRecord[]> {
    return (this.db.prepare('SELECT * FROM plans ORDER BY id DESC LIMIT ?').all(Math.max(1, limit)) as Row[]).map(planFromRow);
  }

  async getRollout(id: number): Promise<RolloutRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM rollouts WHERE id = ?').get(id) as Row | undefined;
    return r ? rolloutFromRow(r) : undefined;
  }

  async listRollouts(): Promise<RolloutRecord[]> {
    return (this.db.prepare('SELECT * FROM rollouts ORDER BY id').all() as Row[]).map(rolloutFromRow);
  }

  async appendEvents(batches: { agentId: string; events: EventInput[] }[], receivedAt: number): Promise<{ inserted: EventRecord[]; lastSeq: Map<string, number> }> {
    const inserted: EventRecord[] = [];
    const lastSeq = new Map<string, number>();
    this.db.transaction(() => {
      for (const { agentId, events } of batches) {
        let max = lastSeq.get(agentId) ?? 0;
        let bytes = 0;
        for (const e of events) {
          const size = eventSize(e);
          const plain = e.actor == null && e.decision == null && e.changes == null && e.risk == null;
          const res = plain
            ? this.insertPlainEvent.run(agentId, e.seq, e.time, receivedAt, e.resource, e.event, e.trigger, e.baseline, e.version, e.observed, e.desired, e.diff, e.detail, e.prevHash, e.hash, size)
            : this.insertEvent.run(
                agentId, e.seq, e.time, receivedAt, e.resource, e.event, e.trigger, e.baseline, e.version, e.observed, e.desired, e.diff, e.detail, e.prevHash, e.hash, size,
                e.actor ?? null, e.decision ?? null, e.changes ?? null, e.risk ?? null,
              );
          if (res.changes === 1) {
            inserted.push({ ...e, actor: e.actor ?? null, decision: e.decision ?? null, changes: e.changes ?? null, risk: e.risk ?? null, id: num(res.lastInsertRowid), agentId, receivedAt });
            bytes += size;
          }
          if (e.seq > max) max = e.seq;
        }
        lastSeq.set(agentId, max);
        this.updateLastSeq.run(max, bytes, agentId);
      }
    })();
    return { inserted, lastSeq };
  }

  async listEvents(f: EventFilter): Promise<EventRecord[]> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (f.agent !== undefined) (where.push('agent_id = ?'), args.push(f.agent));
    const resources = f.resource === undefined ? [] : typeof f.resource === 'string' ? [f.resource] : f.resource;
    if (resources.length > 0) (where.push(`resource IN (${resources.map(() => '?').join(', ')})`), args.push(...resources));
    if (f.kind !== undefined) (where.push('event = ?'), args.push(f.kind));
    if (f.since !== undefined) (where.push('time >= ?'), args.push(f.since));
    if (f.until !== undefined) (where.push('time < ?'), args.push(f.until));
    if (f.after !== undefined) (where.push('id > ?'), args.push(f.after));
    const sql = `SELECT * FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id ${f.order === 'desc' ? 'DESC' : ''} LIMIT ?`;
    args.push(Math.min(Math.max(f.limit ?? 1000, 1), 10_000));
    return (this.db.prepare(sql).all(...args) as Row[]).map(eventFromRow);
  }

  async countEvents(): Promise<number> {
    return num((this.db.prepare('SELECT count(*) AS n FROM events').get() as Row).n);
  }

  async agentsOverEventQuota(maxBytes: number): Promise<{ agentId: string; bytes: number }[]> {
    return (this.db.prepare('SELECT id, event_bytes FROM agents WHERE event_bytes > ? ORDER BY event_bytes DESC').all(maxBytes) as Row[]).map((r) => ({
      agentId: str(r.id),
      bytes: num(r.event_bytes),
    }));
  }

  async trimAgentEvents(agentId: string, bytes: number, maxRows: number): Promise<{ deleted: number; freed: number }> {
    return this.db.transaction(() => {
      // Oldest first, in the agent's own order, stopping once enough is freed.
      const rows = this.db.prepare('SELECT id, size FROM events WHERE agent_id = ? ORDER BY seq LIMIT ?').all(agentId, maxRows) as Row[];
      const del = this.db.prepare('DELETE FROM events WHERE id = ?');
      let freed = 0;
      let deleted = 0;
      for (const r of rows) {
        if (freed >= bytes) break;
        del.run(num(r.id));
        freed += num(r.size);
        deleted++;
      }
      this.db.prepare('UPDATE agents SET event_bytes = MAX(0, event_bytes - ?) WHERE id = ?').run(freed, agentId);
      return { deleted, freed };
    })();
  }

  async deleteEventsReceivedBefore(before: number, maxRows: number): Promise<number> {
    return this.db.transaction(() => {
      // Ids grow in arrival order, so the oldest rows by id are the oldest received: no scan past the first young one.
      const rows = this.db.prepare('SELECT id, agent_id, size, received_at FROM events ORDER BY id LIMIT ?').all(maxRows) as Row[];
      const del = this.db.prepare('DELETE FROM events WHERE id = ?');
      const freed = new Map<string, number>();
      let deleted = 0;
      for (const r of rows) {
        if (num(r.received_at) >= before) break;
        del.run(num(r.id));
        freed.set(str(r.agent_id), (freed.get(str(r.agent_id)) ?? 0) + num(r.size));
        deleted++;
      }
      const upd = this.db.prepare('UPDATE agents SET event_bytes = MAX(0, event_bytes - ?) WHERE id = ?');
      for (const [agentId, bytes] of freed) upd.run(bytes, agentId);
      return deleted;
    })();
  }

  async deleteDecidedEscalationsBefore(before: number, maxRows: number): Promise<number> {
    return this.db
      .prepare(
        `DELETE FROM escalations WHERE id IN (SELECT id FROM escalations WHERE status != 'open' AND (outcome IS NULL OR outcome != 'pending')
           AND decided_at IS NOT NULL AND decided_at < ? ORDER BY id LIMIT ?)`,
      )
      .run(before, maxRows).changes;
  }

  async addEscalation(input: EscalationInput): Promise<EscalationRecord> {
    const e: Omit<EscalationRecord, 'id'> = {
      ...input,
      actor: input.actor ?? null,
      decision: input.decision ?? null,
      opponent: input.opponent ?? null,
      lastSeenAt: input.lastSeenAt ?? input.openedAt,
      history: input.history ?? [],
    };
    const keys = Object.keys(ESCALATION_COLUMNS) as (keyof typeof ESCALATION_COLUMNS)[];
    const res = this.db
      .prepare(`INSERT INTO escalations (${keys.map((k) => ESCALATION_COLUMNS[k]).join(', ')}) VALUES (${keys.map(() => '?').join(', ')})`)
      .run(...keys.map((k) => sqlValue(e[k])));
    return { ...e, id: num(res.lastInsertRowid) };
  }

  async getEscalation(id: number): Promise<EscalationRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM escalations WHERE id = ?').get(id) as Row | undefined;
    return r ? escalationFromRow(r) : undefined;
  }

  async findOpenEscalation(agentId: string, resource: string): Promise<EscalationRecord | undefined> {
    const r = this.db
      .prepare("SELECT * FROM escalations WHERE agent_id = ? AND resource = ? AND status = 'open' ORDER BY id DESC LIMIT 1")
      .get(agentId, resource) as Row | undefined;
    return r ? escalationFromRow(r) : undefined;
  }

  async findLatestEscalation(agentId: string, resource: string): Promise<EscalationRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM escalations WHERE agent_id = ? AND resource = ? ORDER BY id DESC LIMIT 1').get(agentId, resource) as Row | undefined;
    return r ? escalationFromRow(r) : undefined;
  }

  async getEscalations(ids: number[]): Promise<EscalationRecord[]> {
    const out: EscalationRecord[] = [];
    // SQLite binds at most 32,766 parameters: read in chunks well under it.
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      const rows = this.db.prepare(`SELECT * FROM escalations WHERE id IN (${chunk.map(() => '?').join(', ')})`).all(...chunk) as Row[];
      out.push(...rows.map(escalationFromRow));
    }
    return out;
  }

  async updateEscalation(id: number, patch: Partial<Omit<EscalationRecord, 'id'>>): Promise<void> {
    const keys = (Object.keys(patch) as (keyof typeof ESCALATION_COLUMNS)[]).filter((k) => k in ESCALATION_COLUMNS);
    if (keys.length === 0) return;
    this.db
      .prepare(`UPDATE escalations SET ${keys.map((k) => `${ESCALATION_COLUMNS[k]} = ?`).join(', ')} WHERE id = ?`)
      .run(...keys.map((k) => sqlValue(patch[k])), id);
  }

  async listEscalations(f: EscalationFilter): Promise<EscalationRecord[]> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (f.status !== undefined) (where.push('status = ?'), args.push(f.status));
    if (f.agent !== undefined) (where.push('agent_id = ?'), args.push(f.agent));
    args.push(Math.max(f.limit ?? 1000, 1));
    const sql = `SELECT * FROM escalations ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT ?`;
    return (this.db.prepare(sql).all(...args) as Row[]).map(escalationFromRow);
  }

  async pendingDecisions(agentId: string): Promise<EscalationRecord[]> {
    return (
      this.db.prepare("SELECT * FROM escalations WHERE agent_id = ? AND outcome = 'pending' ORDER BY decided_at, id").all(agentId) as Row[]
    ).map(escalationFromRow);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

const ROLLOUT_COLUMNS: Record<keyof Omit<RolloutRecord, 'id'>, string> = {
  document: 'document',
  baseline: 'baseline',
  version: 'version',
  previousVersion: 'previous_version',
  strategy: 'strategy',
  rollback: 'rollback',
  createdAt: 'created_at',
  state: 'state',
  spec: 'spec',
  currentWave: 'current_wave',
  waveStartedAt: 'wave_started_at',
  reason: 'reason',
  pausedFor: 'paused_for',
  updatedAt: 'updated_at',
  finishedAt: 'finished_at',
  signed: 'signed',
};

/** Rollout columns as SQL values; the signed document is kept as JSON with base64 bytes. */
function rolloutValue(key: keyof typeof ROLLOUT_COLUMNS, v: unknown): string | number | Buffer | null {
  if (key === 'signed' && v !== null && typeof v === 'object') {
    const s = v as NonNullable<RolloutRecord['signed']>;
    return JSON.stringify({ ...s, payload: s.payload.toString('base64'), signature: s.signature.toString('base64') });
  }
  return sqlValue(v);
}

/** Strategy defaults for rollouts stored before staged rollouts existed (they were all at once). */
const LEGACY_SPEC: RolloutStrategy = { waves: [100], gate: { maxFailedHosts: 0, soakSeconds: 0, ackTimeoutSeconds: 300 }, canary: null, onFailure: 'rollback', onEscalation: 'fail' };

function rolloutFromRow(r: Row): RolloutRecord {
  const signed = json<{ payload: string; signature: string; keyId: string; issuedAt: number; expiresAt: number } | null>(r.signed, null);
  return {
    id: num(r.id),
    document: str(r.document) === 'policy' ? 'policy' : 'baseline',
    baseline: str(r.baseline),
    version: num(r.version),
    previousVersion: optNum(r.previous_version),
    strategy: str(r.strategy) === 'waves' ? 'waves' : 'all-at-once',
    rollback: num(r.rollback) === 1,
    createdAt: num(r.created_at),
    state: (optStr(r.state) ?? 'completed') as RolloutState,
    // Strategies stored before onEscalation existed failed the host on an escalation: they keep doing so.
    spec: { onEscalation: 'fail', ...json<Omit<RolloutStrategy, 'onEscalation'> & Partial<RolloutStrategy>>(r.spec, LEGACY_SPEC) },
    currentWave: num(r.current_wave),
    waveStartedAt: optNum(r.wave_started_at),
    reason: optStr(r.reason),
    pausedFor: pausedForOf(r.paused_for),
    updatedAt: num(r.updated_at),
    finishedAt: optNum(r.finished_at),
    signed: signed ? { ...signed, payload: Buffer.from(signed.payload, 'base64'), signature: Buffer.from(signed.signature, 'base64') } : null,
  };
}

function pausedForOf(v: unknown): RolloutRecord['pausedFor'] {
  return v === 'operator' || v === 'escalations' ? v : null;
}

function planFromRow(r: Row): PlanRecord {
  return {
    id: num(r.id),
    baseline: str(r.baseline),
    version: num(r.version),
    createdAt: num(r.created_at),
    state: str(r.state) === 'done' ? 'done' : 'collecting',
    result: json(r.result, {}),
  };
}

function sqlValue(v: unknown): string | number | Buffer | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'string' || typeof v === 'number' || Buffer.isBuffer(v)) return v;
  return JSON.stringify(v);
}
