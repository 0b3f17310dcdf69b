// The append-only, hash-chained audit log: append on the hot repair path, query, count, and verify the whole chain.
// Records a damaged database lost are never numbered again: the log continues after the highest seq it is known to have
// reached (the head kept outside the database, or what the controller acknowledged), with a `records_lost` record that
// names the gap, which verification accepts and reports. Delivered records may be removed by age (retention).
import { HsError } from '../../lib/errors.js';
import { isSqliteError, type Database, type Statement } from '../../lib/sqlite.js';
import { GENESIS_HASH, canonicalJson, chainHash, hashedText, wellFormed, type HashedFields } from './chain.js';
import type { HeadFile } from './head.js';
import { DocIds, StringIds } from './interning.js';
import type { Actor } from '../../lib/policy/actor.js';
import type { AuditEntry, AuditEvent, AuditQuery, AuditVerification, DecisionFields, DecisionRecord, LostRange, NewAuditEntry, Trigger } from './types.js';

/** A record as read back, texts and documents joined in; prev_hash from the record before it. */
export interface AuditRow {
  seq: number;
  time: number;
  resource: string | null;
  event: string | null;
  trigger: string | null;
  baseline: string | null;
  version: number | null;
  observed: string | null;
  desired: string | null;
  diff: string | null;
  detail: string | null;
  actor: string | null;
  decision: string | null;
  changes: string | null;
  risk: string | null;
  prev_hash: Buffer | null;
  hash: Buffer;
}

const COLUMNS = `a.seq, a.time, r.text AS resource, e.text AS event, t.text AS trigger, b.text AS baseline, a.version,
  o.json AS observed, d.json AS desired, a.diff, a.detail, a.actor, a.decision, a.changes, a.risk`;
const JOINS = `LEFT JOIN strings r ON r.id = a.resource_id
  LEFT JOIN strings e ON e.id = a.event_id
  LEFT JOIN strings t ON t.id = a.trigger_id
  LEFT JOIN strings b ON b.id = a.baseline_id
  LEFT JOIN docs o ON o.id = a.observed_id
  LEFT JOIN docs d ON d.id = a.desired_id`;

/**
 * Selects AuditRow columns from `audit a`; callers add WHERE/ORDER/LIMIT on `a.` columns. A record's predecessor is the
 * record before it; a `records_lost` record follows the last record before its gap, and the first record kept by
 * retention follows the hash retention kept.
 */
export const SELECT_AUDIT_ROWS = `SELECT ${COLUMNS},
  coalesce(p.hash,
    CASE WHEN e.text = 'records_lost' THEN (SELECT q.hash FROM audit q WHERE q.seq < a.seq ORDER BY q.seq DESC LIMIT 1) END,
    (SELECT r.prev_hash FROM audit_retention r WHERE r.id = 1 AND r.first_seq = a.seq)) AS prev_hash, a.hash
  FROM audit a ${JOINS} LEFT JOIN audit p ON p.seq = a.seq - 1`;

/** The verifier takes each predecessor's hash from its own recomputation, not from the table. */
const SELECT_FOR_VERIFY = `SELECT ${COLUMNS}, NULL AS prev_hash, a.hash FROM audit a ${JOINS} ORDER BY a.seq`;

export function rowToEntry(row: AuditRow): AuditEntry {
  return {
    seq: row.seq,
    time: row.time,
    resource: row.resource,
    // The schema only ever stores these from the typed fields; a tampered text still reads back (and fails verify).
    event: (row.event ?? '') as AuditEvent,
    trigger: row.trigger as Trigger | null,
    baseline: row.baseline,
    version: row.version,
    observed: row.observed === null ? null : (JSON.parse(row.observed) as Record<string, unknown>),
    desired: row.desired === null ? null : (JSON.parse(row.desired) as Record<string, unknown>),
    diff: row.diff,
    detail: row.detail,
    ...decisionFieldsOf(row),
    // Empty only when the record before it was removed, which verify reports.
    prevHash: row.prev_hash?.toString('hex') ?? (row.seq === 1 || row.event === 'records_lost' ? GENESIS_HASH : ''),
    hash: row.hash.toString('hex'),
  };
}

/** The decision fields of a row, present only when stored; an unreadable one is left out (verify reports the record). */
function decisionFieldsOf(row: AuditRow): DecisionFields {
  const out: DecisionFields = {};
  const json = (t: string | null): unknown => {
    if (t === null) return undefined;
    try {
      return JSON.parse(t) as unknown;
    } catch {
      return undefined;
    }
  };
  const actor = json(row.actor);
  if (actor !== undefined) out.actor = actor as Actor;
  const decision = json(row.decision);
  if (decision !== undefined) out.decision = decision as DecisionRecord;
  const changes = json(row.changes);
  if (Array.isArray(changes)) out.changes = changes as string[];
  if (row.risk !== null) out.risk = row.risk;
  return out;
}

type Head = { seq: number; hash: string };

/** The particulars a `records_lost` record carries (its `observed` document), which verification checks against the gap. */
interface LostDoc {
  firstLost: number;
  lastLost: number;
}

function lostDoc(json: string | null): LostDoc | undefined {
  if (json === null) return undefined;
  try {
    const v = JSON.parse(json) as Partial<LostDoc>;
    return Number.isSafeInteger(v.firstLost) && Number.isSafeInteger(v.lastLost) ? (v as LostDoc) : undefined;
  } catch {
    return undefined;
  }
}

interface RetentionRow {
  first_seq: number;
  prev_hash: Buffer | null;
  first_doc: number;
}

type InsertParams = [
  number,
  number,
  number | null,
  number,
  number | null,
  number | null,
  number | null,
  number | null,
  number | null,
  string | null,
  string | null,
  Buffer,
  string | null,
  string | null,
  string | null,
  string | null,
];

export class AuditLog {
  private cachedHead: Head | undefined;
  /** Seqs up to here are taken (by records this database lost): the next record is numbered after both it and the head. */
  private floor = 0;
  private readonly strings: StringIds;
  private readonly docs: DocIds;
  private readonly insert: Statement<InsertParams>;
  private readonly selectHead: Statement<[], { seq: number; hash: Buffer }>;
  private readonly verifyRows: Statement<[], AuditRow>;
  private readonly countRows: Statement<[], { event: string | null; n: number }>;
  private readonly queries = new Map<string, Statement<Record<string, number | string>, AuditRow>>();
  private readonly appendTx: (e: NewAuditEntry, observed: string | null, desired: string | null) => AuditEntry;
  private readonly selectRetention: Statement<[], RetentionRow>;
  private readonly selectAt: Statement<[number], Buffer>;
  private readonly selectOpen: Statement<[number], { seq: number; resource: string; baseline: string | null; version: number | null }>;
  private readonly selectLastStart: Statement<[], number>;
  private readonly selectStopAfter: Statement<[number], number>;
  private readonly selectPausedAfter: Statement<[number], { seq: number; detail: string | null }>;

  /** `onAppend` runs inside the append's transaction (the outbox bound); `headFile` is written after each commit. */
  constructor(
    private readonly db: Database,
    private readonly writable: boolean,
    private readonly onAppend: (seq: number) => void,
    private readonly headFile?: HeadFile,
  ) {
    this.strings = new StringIds(db);
    this.docs = new DocIds(db);
    this.insert = db.prepare<InsertParams>(
      `INSERT INTO audit (seq, time, resource_id, event_id, trigger_id, baseline_id, version, observed_id, desired_id, diff, detail, hash, actor, decision, changes, risk)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.selectHead = db.prepare<[], { seq: number; hash: Buffer }>('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
    this.verifyRows = db.prepare<[], AuditRow>(SELECT_FOR_VERIFY);
    this.countRows = db.prepare<[], { event: string | null; n: number }>(
      'SELECT s.text AS event, c.n FROM (SELECT event_id, count(*) AS n FROM audit GROUP BY event_id) c LEFT JOIN strings s ON s.id = c.event_id',
    );
    this.appendTx = db.transaction((e: NewAuditEntry, observed: string | null, desired: string | null) => this.insertEntry(e, observed, desired));
    this.selectRetention = db.prepare<[], RetentionRow>('SELECT first_seq, prev_hash, first_doc FROM audit_retention WHERE id = 1');
    this.selectAt = db.prepare<[number], Buffer>('SELECT hash FROM audit WHERE seq = ?').pluck();
    this.selectLastStart = db.prepare<[], number>(
      "SELECT max(seq) FROM audit WHERE event_id = (SELECT id FROM strings WHERE text = 'agent_started')",
    ).pluck();
    this.selectStopAfter = db.prepare<[number], number>(
      "SELECT seq FROM audit WHERE seq > ? AND event_id = (SELECT id FROM strings WHERE text = 'agent_stopped') LIMIT 1",
    ).pluck();
    this.selectPausedAfter = db.prepare<[number], { seq: number; detail: string | null }>(
      "SELECT seq, detail FROM audit WHERE seq > ? AND event_id = (SELECT id FROM strings WHERE text = 'enforcement_paused') ORDER BY seq",
    );
    // Per resource, its last record since the run began, when that record is a drift nothing answered.
    this.selectOpen = db.prepare(
      `SELECT a.seq, r.text AS resource, b.text AS baseline, a.version FROM audit a
         JOIN (SELECT resource_id, max(seq) AS seq FROM audit WHERE seq > ? AND resource_id IS NOT NULL GROUP BY resource_id) last ON last.seq = a.seq
         JOIN strings r ON r.id = a.resource_id LEFT JOIN strings b ON b.id = a.baseline_id
       WHERE a.event_id = (SELECT id FROM strings WHERE text = 'drift_detected') ORDER BY a.seq`,
    );
  }

  /** Appends one record, chained to the last one. Prefer calling through AgentStore, which restores the caches on failure. */
  append(e: NewAuditEntry): AuditEntry {
    if (!this.writable) throw new HsError('HS_STORE', 'the audit log was opened read-only');
    if (!Number.isFinite(e.time)) throw new HsError('HS_STORE', `audit record time must be a finite number, got ${String(e.time)}`);
    // Canonicalised before the transaction: pure work, and a bad summary then fails without touching the database.
    const observed = e.observed == null ? null : canonicalJson(e.observed);
    const desired = e.desired == null ? null : canonicalJson(e.desired);
    const entry = this.appendTx(e, observed, desired);
    this.headFile?.write(entry);
    return entry;
  }

  /**
   * Records that seqs `firstLost`..`lastLost` are gone from this database (they were written once: the head kept
   * outside it, or the controller, says so). The record takes seq lastLost + 1, so none of them is ever numbered again.
   */
  appendLost(firstLost: number, lastLost: number, time: number, detail: string): AuditEntry {
    this.floor = Math.max(this.floor, lastLost);
    return this.append({
      time,
      resource: null,
      event: 'records_lost',
      trigger: 'startup',
      baseline: null,
      version: null,
      observed: { firstLost, lastLost },
      desired: null,
      diff: null,
      detail,
    });
  }

  /** The stored hash of record `seq`, if it is there. */
  hashAt(seq: number): string | undefined {
    return this.selectAt.get(seq)?.toString('hex');
  }

  /**
   * Drifts the previous run recorded and never answered (it was killed mid-repair): per resource, its last record since
   * that run's `agent_started` when it is a `drift_detected`, unless the run stopped cleanly. `paused` says whether
   * enforcement was paused then (a paused drift is only reported, never answered).
   */
  openDrifts(): { seq: number; resource: string; baseline: { name: string; version: number } | null; paused: boolean }[] {
    const start = this.selectLastStart.get() ?? 0;
    if (this.selectStopAfter.get(start) !== undefined) return [];
    const pauses = this.selectPausedAfter.all(start);
    return this.selectOpen.all(start).map((r) => {
      const change = [...pauses].reverse().find((p) => p.seq < r.seq);
      return {
        seq: r.seq,
        resource: r.resource,
        baseline: r.baseline === null ? null : { name: r.baseline, version: r.version ?? 0 },
        paused: change !== undefined && (change.detail ?? '').startsWith('paused'),
      };
    });
  }

  private insertEntry(e: NewAuditEntry, observed: string | null, desired: string | null): AuditEntry {
    const fields: HashedFields = {
      seq: 0,
      time: e.time,
      resource: wellFormed(e.resource ?? null),
      event: e.event,
      trigger: e.trigger ?? null,
      baseline: wellFormed(e.baseline ?? null),
      version: e.version ?? null,
      observed,
      desired,
      diff: wellFormed(e.diff ?? null),
      detail: wellFormed(e.detail ?? null),
      actor: e.actor === undefined ? null : canonicalJson(e.actor),
      decision: e.decision === undefined ? null : canonicalJson(e.decision),
      changes: e.changes === undefined ? null : canonicalJson(e.changes),
      risk: wellFormed(e.risk ?? null),
    };
    const params: InsertParams = [
      0,
      fields.time,
      this.strings.idOrNull(fields.resource),
      this.strings.id(fields.event),
      this.strings.idOrNull(fields.trigger),
      this.strings.idOrNull(fields.baseline),
      fields.version,
      this.docs.idOrNull(observed),
      this.docs.idOrNull(desired),
      fields.diff,
      fields.detail,
      Buffer.alloc(0),
      fields.actor ?? null,
      fields.decision ?? null,
      fields.changes ?? null,
      fields.risk ?? null,
    ];
    let head = this.head();
    let hash: string;
    for (let attempt = 0; ; attempt++) {
      fields.seq = params[0] = Math.max(head.seq, this.floor) + 1;
      hash = chainHash(head.hash, hashedText(fields));
      params[11] = Buffer.from(hash, 'hex');
      try {
        this.insert.run(...params);
        break;
      } catch (err) {
        // Another process (a one-shot `apply` next to the daemon) appended since we cached the head: chain onto its record.
        if (attempt > 0 || !isSqliteError(err) || err.code !== 'SQLITE_CONSTRAINT_PRIMARYKEY') throw err;
        head = this.loadHead();
      }
    }
    this.onAppend(fields.seq);
    const entry: AuditEntry = {
      seq: fields.seq,
      time: fields.time,
      resource: fields.resource,
      event: e.event,
      trigger: e.trigger ?? null,
      baseline: fields.baseline,
      version: fields.version,
      observed: e.observed ?? null,
      desired: e.desired ?? null,
      diff: fields.diff,
      detail: fields.detail,
      ...(e.actor !== undefined ? { actor: e.actor } : {}),
      ...(e.decision !== undefined ? { decision: e.decision } : {}),
      ...(e.changes !== undefined ? { changes: e.changes } : {}),
      ...(fields.risk != null ? { risk: fields.risk } : {}),
      prevHash: head.hash,
      hash,
    };
    this.cachedHead = { seq: entry.seq, hash: entry.hash };
    return entry;
  }

  /** The last record's seq and hash (seq 0 and the genesis hash when empty). Cached for a writer; fresh for a reader. */
  head(): Head {
    if (this.writable && this.cachedHead) return this.cachedHead;
    const head = this.loadHead();
    if (this.writable) this.cachedHead = head;
    return head;
  }

  private loadHead(): Head {
    const row = this.selectHead.get();
    return row ? { seq: row.seq, hash: row.hash.toString('hex') } : { seq: 0, hash: GENESIS_HASH };
  }

  /** Drops in-memory state that a rolled-back transaction may have made wrong. */
  forget(): void {
    this.cachedHead = undefined;
    this.strings.forget();
    this.docs.forget();
  }

  query(q: AuditQuery): AuditEntry[] {
    const where: string[] = [];
    const params: Record<string, number | string> = {};
    if (q.since !== undefined) {
      // Left alone, the planner walks the whole log in seq order looking for recent times; the time index finds the
      // first seq at or after `since` cheaply, and times out of order (a clock step) stay correct through the filter.
      where.push('a.seq >= (SELECT min(seq) FROM audit INDEXED BY audit_time WHERE time >= @since)', 'a.time >= @since');
      params.since = q.since;
    }
    if (q.afterSeq !== undefined) {
      where.push('a.seq > @afterSeq');
      params.afterSeq = q.afterSeq;
    }
    if (q.resource !== undefined) {
      const ids = (Array.isArray(q.resource) ? q.resource : [q.resource]).slice(0, 16);
      where.push(`a.resource_id IN (SELECT id FROM strings WHERE text IN (${ids.map((_, i) => `@resource${i}`).join(', ')}))`);
      ids.forEach((id, i) => (params[`resource${i}`] = id));
    }
    if (q.event !== undefined) {
      where.push('a.event_id = (SELECT id FROM strings WHERE text = @event)');
      params.event = q.event;
    }
    const newest = q.newest === true && q.limit !== undefined;
    params.limit = q.limit === undefined ? -1 : Math.max(0, Math.floor(q.limit));
    const sql = `${SELECT_AUDIT_ROWS} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY a.seq ${newest ? 'DESC' : 'ASC'} LIMIT @limit`;
    let stmt = this.queries.get(sql);
    if (!stmt) {
      stmt = this.db.prepare<Record<string, number | string>, AuditRow>(sql);
      this.queries.set(sql, stmt);
    }
    const entries = stmt.all(params).map(rowToEntry);
    return newest ? entries.reverse() : entries;
  }

  /** Number of records per event. */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const row of this.countRows.all()) out[row.event ?? '?'] = row.n;
    return out;
  }

  /**
   * Recomputes the chain from the first record kept: a record whose hash does not match its content and predecessor was
   * edited (or its predecessor was), a gap in seq is a deleted record unless a `records_lost` record names exactly that
   * gap (a loss found and recorded at start-up), records swapped change both hashes. The end is checked against the
   * outbox cursor `ackedSeq` and the head kept outside the database (`headSeq`): records cut from the end show.
   */
  verify(ackedSeq: number, headSeq?: number): AuditVerification {
    const retention = this.selectRetention.get();
    let prev = retention?.prev_hash ? retention.prev_hash.toString('hex') : GENESIS_HASH;
    let expected = retention?.first_seq ?? 1;
    let count = 0;
    const lost: LostRange[] = [];
    for (const row of this.verifyRows.iterate()) {
      if (row.seq < expected) continue;
      if (row.seq !== expected) {
        const gap = row.event === 'records_lost' ? lostDoc(row.observed) : undefined;
        // Rows come in seq order, so a jump is a deleted record (returning ends the iterator, freeing the connection).
        if (!gap || gap.firstLost !== expected || gap.lastLost !== row.seq - 1) return { ok: false, count, seq: expected, reason: `record ${expected} is missing (deleted)` };
        lost.push({ from: gap.firstLost, to: gap.lastLost, recordedAt: row.seq });
      }
      const text = hashedText({
        seq: row.seq,
        time: row.time,
        resource: row.resource,
        event: row.event ?? '',
        trigger: row.trigger,
        baseline: row.baseline,
        version: row.version,
        observed: row.observed,
        desired: row.desired,
        diff: row.diff,
        detail: row.detail,
        actor: row.actor,
        decision: row.decision,
        changes: row.changes,
        risk: row.risk,
      });
      const hash = chainHash(prev, text);
      if (hash !== row.hash.toString('hex')) {
        return { ok: false, count, seq: row.seq, reason: `record ${row.seq} does not match its hash: it was edited, or the record before it was replaced` };
      }
      prev = hash;
      expected = row.seq + 1;
      count++;
    }
    const last = expected - 1;
    const head = this.writable ? this.cachedHead : undefined;
    const knownEnd = Math.max(ackedSeq, head?.seq ?? 0, headSeq ?? 0);
    if (knownEnd > last) {
      const why = (headSeq ?? 0) >= knownEnd ? ' (the head kept beside the database says the log reached it)' : ' (cut from the end)';
      return { ok: false, count, seq: last + 1, reason: `records ${last + 1} to ${knownEnd} are missing${why}` };
    }
    const from = retention && retention.first_seq > 1 ? { retainedFrom: retention.first_seq } : {};
    return { ok: true, count, ...from, ...(lost.length > 0 ? { lost } : {}) };
  }

  /**
   * Removes records older than `before` (ms) with seq at most `upto` (delivered, or no controller to deliver to), and the
   * state documents only they used, at most `batch` records per call. Returns how many were removed (0: nothing left).
   */
  retain(before: number, upto: number, batch: number): number {
    const r = this.selectRetention.get();
    if (!r) return 0;
    const last = this.head().seq;
    // Never the last record: the chain's head stays, so the next record still has a predecessor to follow.
    const limit = Math.min(upto, last - 1);
    const cut = this.db
      .prepare<[number, number, number, number], number>('SELECT max(seq) FROM (SELECT seq FROM audit WHERE seq >= ? AND seq <= ? AND time < ? ORDER BY seq LIMIT ?)')
      .pluck()
      .get(r.first_seq, limit, before, batch);
    if (cut === undefined || cut === null || cut < r.first_seq) return 0;
    // Only a prefix goes: stop at the first record in the range that is not old enough (clocks may step back).
    const young = this.db.prepare<[number, number, number], number>('SELECT min(seq) FROM audit WHERE seq >= ? AND seq <= ? AND time >= ?').pluck().get(r.first_seq, cut, before);
    const end = young === undefined || young === null ? cut : young - 1;
    if (end < r.first_seq) return 0;
    const prevHash = this.selectAt.get(end);
    if (!prevHash) return 0;
    const firstDoc = this.db
      .prepare<[number, number], number | null>(
        'SELECT min(d) FROM (SELECT min(observed_id) AS d FROM audit WHERE seq > ? UNION ALL SELECT min(desired_id) FROM audit WHERE seq > ?)',
      )
      .pluck()
      .get(end, end) ?? r.first_doc;
    const removed = this.db.transaction(() => {
      this.db.prepare('UPDATE audit_retention SET first_seq = ?, prev_hash = ?, first_doc = max(first_doc, ?) WHERE id = 1').run(end + 1, prevHash, firstDoc);
      const n = this.db.prepare('DELETE FROM audit WHERE seq < ?').run(end + 1).changes;
      this.db.prepare('DELETE FROM docs WHERE id < (SELECT first_doc FROM audit_retention WHERE id = 1)').run();
      return n;
    })();
    // Remembered documents may be among those removed: the next record stores its own again.
    this.docs.forget();
    return removed;
  }
}
