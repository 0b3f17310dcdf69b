// The append-only, hash-chained audit log: append on the hot repair path, query, count, and verify the whole chain.
import { HsError } from '../../lib/errors.js';
import { isSqliteError, type Database, type Statement } from '../../lib/sqlite.js';
import { GENESIS_HASH, canonicalJson, chainHash, hashedText, wellFormed, type HashedFields } from './chain.js';
import { DocIds, StringIds } from './interning.js';
import type { AuditEntry, AuditEvent, AuditQuery, AuditVerification, NewAuditEntry, Trigger } from './types.js';

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
  prev_hash: Buffer | null;
  hash: Buffer;
}

const COLUMNS = `a.seq, a.time, r.text AS resource, e.text AS event, t.text AS trigger, b.text AS baseline, a.version,
  o.json AS observed, d.json AS desired, a.diff, a.detail`;
const JOINS = `LEFT JOIN strings r ON r.id = a.resource_id
  LEFT JOIN strings e ON e.id = a.event_id
  LEFT JOIN strings t ON t.id = a.trigger_id
  LEFT JOIN strings b ON b.id = a.baseline_id
  LEFT JOIN docs o ON o.id = a.observed_id
  LEFT JOIN docs d ON d.id = a.desired_id`;

/** Selects AuditRow columns from `audit a`; callers add WHERE/ORDER/LIMIT on `a.` columns. */
export const SELECT_AUDIT_ROWS = `SELECT ${COLUMNS}, p.hash AS prev_hash, a.hash FROM audit a ${JOINS} LEFT JOIN audit p ON p.seq = a.seq - 1`;

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
    // Empty only when the record before it was removed, which verify reports.
    prevHash: row.seq === 1 ? GENESIS_HASH : (row.prev_hash?.toString('hex') ?? ''),
    hash: row.hash.toString('hex'),
  };
}

type Head = { seq: number; hash: string };

type InsertParams = [number, number, number | null, number, number | null, number | null, number | null, number | null, number | null, string | null, string | null, Buffer];

export class AuditLog {
  private cachedHead: Head | undefined;
  private readonly strings: StringIds;
  private readonly docs: DocIds;
  private readonly insert: Statement<InsertParams>;
  private readonly selectHead: Statement<[], { seq: number; hash: Buffer }>;
  private readonly verifyRows: Statement<[], AuditRow>;
  private readonly countRows: Statement<[], { event: string | null; n: number }>;
  private readonly queries = new Map<string, Statement<Record<string, number | string>, AuditRow>>();
  private readonly appendTx: (e: NewAuditEntry, observed: string | null, desired: string | null) => AuditEntry;

  /** `onAppend` runs inside the append's transaction (the outbox bound). */
  constructor(
    private readonly db: Database,
    private readonly writable: boolean,
    private readonly onAppend: (seq: number) => void,
  ) {
    this.strings = new StringIds(db);
    this.docs = new DocIds(db);
    this.insert = db.prepare<InsertParams>(
      `INSERT INTO audit (seq, time, resource_id, event_id, trigger_id, baseline_id, version, observed_id, desired_id, diff, detail, hash)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.selectHead = db.prepare<[], { seq: number; hash: Buffer }>('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
    this.verifyRows = db.prepare<[], AuditRow>(SELECT_FOR_VERIFY);
    this.countRows = db.prepare<[], { event: string | null; n: number }>(
      'SELECT s.text AS event, c.n FROM (SELECT event_id, count(*) AS n FROM audit GROUP BY event_id) c LEFT JOIN strings s ON s.id = c.event_id',
    );
    this.appendTx = db.transaction((e: NewAuditEntry, observed: string | null, desired: string | null) => this.insertEntry(e, observed, desired));
  }

  /** Appends one record, chained to the last one. Prefer calling through AgentStore, which restores the caches on failure. */
  append(e: NewAuditEntry): AuditEntry {
    if (!this.writable) throw new HsError('HS_STORE', 'the audit log was opened read-only');
    if (!Number.isFinite(e.time)) throw new HsError('HS_STORE', `audit record time must be a finite number, got ${String(e.time)}`);
    // Canonicalised before the transaction: pure work, and a bad summary then fails without touching the database.
    const observed = e.observed == null ? null : canonicalJson(e.observed);
    const desired = e.desired == null ? null : canonicalJson(e.desired);
    return this.appendTx(e, observed, desired);
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
    ];
    let head = this.head();
    let hash: string;
    for (let attempt = 0; ; attempt++) {
      fields.seq = params[0] = head.seq + 1;
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
      where.push('a.resource_id = (SELECT id FROM strings WHERE text = @resource)');
      params.resource = q.resource;
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
   * Recomputes the chain from the first record: a record whose hash does not match its content and predecessor was
   * edited (or its predecessor was), a gap in seq is a deleted record, records swapped change both hashes.
   * `ackedSeq` (the outbox cursor) reveals records cut from the end after the controller had them.
   */
  verify(ackedSeq: number): AuditVerification {
    let prev = GENESIS_HASH;
    let expected = 1;
    let count = 0;
    for (const row of this.verifyRows.iterate()) {
      // Rows come in seq order, so a jump is a deleted record (returning ends the iterator, freeing the connection).
      if (row.seq !== expected) return { ok: false, count, seq: expected, reason: `record ${expected} is missing (deleted)` };
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
      });
      const hash = chainHash(prev, text);
      if (hash !== row.hash.toString('hex')) {
        return { ok: false, count, seq: row.seq, reason: `record ${row.seq} does not match its hash: it was edited, or the record before it was replaced` };
      }
      prev = hash;
      expected++;
      count++;
    }
    const last = expected - 1;
    const head = this.writable ? this.cachedHead : undefined;
    const knownEnd = Math.max(ackedSeq, head?.seq ?? 0);
    if (knownEnd > last) return { ok: false, count, seq: last + 1, reason: `records ${last + 1} to ${knownEnd} are missing (cut from the end)` };
    return { ok: true, count };
  }
}
