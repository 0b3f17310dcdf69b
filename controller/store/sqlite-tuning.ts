// The SQLite side of the tuning store (schema 5): history pages read by the events' (agent, seq) index, proposals with
// their evidence as JSON, and settings.
import type { Database, Statement } from '../../lib/sqlite.js';
import type {
  EscalationDecisionRow,
  HistoryQuery,
  HistoryRow,
  ProposalRecord,
  ProposalState,
  SettingRecord,
  TuningStore,
} from './tuning.js';

type Row = Record<string, unknown>;
const str = (v: unknown): string => (typeof v === 'string' ? v : v == null ? '' : String(v));
const num = (v: unknown): number => (typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : Number(v ?? 0));
const optStr = (v: unknown): string | null => (v == null ? null : str(v));
const optNum = (v: unknown): number | null => (v == null ? null : num(v));

/** Proposal fields kept in their own columns; the rest of the record is one JSON body. */
const PROPOSAL_COLUMNS = { key: 'key', kind: 'kind', state: 'state', createdAt: 'created_at', updatedAt: 'updated_at', decidedAt: 'decided_at', decidedBy: 'decided_by', reason: 'reason' } as const;
type ColumnKey = keyof typeof PROPOSAL_COLUMNS;
const BODY_KEYS = ['target', 'rationale', 'evidence', 'confidence', 'backtest', 'rule', 'window', 'autotune', 'applied', 'reverted'] as const;

function proposalFromRow(r: Row): ProposalRecord {
  const body = JSON.parse(str(r.body)) as Pick<ProposalRecord, (typeof BODY_KEYS)[number]>;
  return {
    id: num(r.id),
    key: str(r.key),
    kind: str(r.kind) as ProposalRecord['kind'],
    state: str(r.state) as ProposalState,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
    decidedAt: optNum(r.decided_at),
    decidedBy: optStr(r.decided_by),
    reason: optStr(r.reason),
    ...body,
  };
}

function bodyOf(p: Pick<ProposalRecord, (typeof BODY_KEYS)[number]>): string {
  const out: Record<string, unknown> = {};
  for (const k of BODY_KEYS) out[k] = p[k];
  return JSON.stringify(out);
}

/**
 * One page of history in (agent, seq) order: keyset pages on the (agent_id, seq) unique index, each starting where the last
 * one ended whatever was written since. `+time` keeps the planner off the time index, which would sort the whole range again
 * for every page.
 */
export const HISTORY_SQL = `SELECT id, agent_id, seq, time, received_at, resource, event, trigger, baseline, version,
         CASE WHEN event IN ('drift_detected', 'enforcement_paused') THEN detail END AS detail, actor, decision, changes, risk
       FROM events
       WHERE (agent_id, seq) > (?, ?) AND +time >= ? AND +time < ? AND (resource IS NOT NULL OR event = 'enforcement_paused')
       ORDER BY agent_id, seq LIMIT ?`;

export class SqliteTuningStore implements TuningStore {
  private readonly history: Statement;

  constructor(private readonly db: Database) {
    this.history = db.prepare(HISTORY_SQL);
  }

  async scanHistory(q: HistoryQuery): Promise<HistoryRow[]> {
    const rows = this.history.raw(true).all(q.after?.agentId ?? '', q.after?.seq ?? -1, q.since, q.until, Math.max(1, q.limit)) as unknown[][];
    const out: HistoryRow[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i] as unknown[];
      out[i] = {
        id: num(r[0]),
        agentId: str(r[1]),
        seq: num(r[2]),
        time: num(r[3]),
        receivedAt: num(r[4]),
        resource: optStr(r[5]),
        event: str(r[6]),
        trigger: optStr(r[7]),
        baseline: optStr(r[8]),
        version: optNum(r[9]),
        detail: optStr(r[10]),
        actor: optStr(r[11]),
        decision: optStr(r[12]),
        changes: optStr(r[13]),
        risk: optStr(r[14]),
      };
    }
    return out;
  }

  async escalationDecisions(since: number): Promise<EscalationDecisionRow[]> {
    const rows = this.db
      .prepare(
        `SELECT agent_id, resource, opened_at, decided_at, status, decided_by FROM escalations
         WHERE status IN ('approved', 'rejected') AND decided_at >= ? AND decided_by IS NOT NULL ORDER BY decided_at, id`,
      )
      .all(since) as Row[];
    return rows.map((r) => ({
      agentId: str(r.agent_id),
      resource: str(r.resource),
      openedAt: num(r.opened_at),
      decidedAt: num(r.decided_at),
      status: str(r.status) as 'approved' | 'rejected',
      decidedBy: str(r.decided_by),
    }));
  }

  async rejectedResources(): Promise<string[]> {
    return (this.db.prepare("SELECT DISTINCT resource FROM escalations WHERE status = 'rejected'").all() as Row[]).map((r) => str(r.resource));
  }

  async addProposal(p: Omit<ProposalRecord, 'id'>): Promise<ProposalRecord> {
    const res = this.db
      .prepare('INSERT INTO proposals (key, kind, state, created_at, updated_at, decided_at, decided_by, reason, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(p.key, p.kind, p.state, p.createdAt, p.updatedAt, p.decidedAt, p.decidedBy, p.reason, bodyOf(p));
    return { ...p, id: num(res.lastInsertRowid) };
  }

  async updateProposal(id: number, patch: Partial<Omit<ProposalRecord, 'id'>>): Promise<void> {
    this.db.transaction(() => {
      const current = this.db.prepare('SELECT * FROM proposals WHERE id = ?').get(id) as Row | undefined;
      if (!current) return;
      const next = { ...proposalFromRow(current), ...patch };
      const cols = Object.keys(PROPOSAL_COLUMNS) as ColumnKey[];
      this.db
        .prepare(`UPDATE proposals SET ${cols.map((k) => `${PROPOSAL_COLUMNS[k]} = ?`).join(', ')}, body = ? WHERE id = ?`)
        .run(...cols.map((k) => next[k]), bodyOf(next), id);
    })();
  }

  async getProposal(id: number): Promise<ProposalRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM proposals WHERE id = ?').get(id) as Row | undefined;
    return r ? proposalFromRow(r) : undefined;
  }

  async listProposals(f: { state?: ProposalState; limit?: number }): Promise<ProposalRecord[]> {
    const limit = Math.min(Math.max(f.limit ?? 1000, 1), 10_000);
    const rows = (
      f.state === undefined
        ? this.db.prepare('SELECT * FROM proposals ORDER BY id LIMIT ?').all(limit)
        : this.db.prepare('SELECT * FROM proposals WHERE state = ? ORDER BY id LIMIT ?').all(f.state, limit)
    ) as Row[];
    return rows.map(proposalFromRow);
  }

  async getSetting(name: string): Promise<SettingRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM settings WHERE name = ?').get(name) as Row | undefined;
    return r ? { value: JSON.parse(str(r.value)) as unknown, updatedAt: num(r.updated_at), updatedBy: str(r.updated_by) } : undefined;
  }

  async putSetting(name: string, value: unknown, at: number, by: string): Promise<void> {
    this.db
      .prepare(
        'INSERT INTO settings (name, value, updated_at, updated_by) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by',
      )
      .run(name, JSON.stringify(value), at, by);
  }
}
