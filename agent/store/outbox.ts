// Audit records waiting for the controller: the audit log past a delivery cursor, bounded, with drops counted.
import { HsError } from '../../lib/errors.js';
import type { Database, Statement } from '../../lib/sqlite.js';
import { SELECT_AUDIT_ROWS, rowToEntry, type AuditRow } from './audit.js';
import type { OutboxItem, OutboxStats } from './types.js';

/**
 * Records with seq > `acked` are pending; nothing is copied, so a million pending records cost no more than the audit
 * log already holds. Past `limit` pending, the cursor moves over the oldest and `dropped` counts them (persisted).
 */
export class Outbox {
  /** A lower bound of the stored cursor: it only moves forward, and another process may move it further. */
  private ackedAtLeast: number | undefined;
  private readonly selectState: Statement<[], { acked: number; dropped: number; last: number | null; oldest: number | null }>;
  private readonly selectPending: Statement<[number], AuditRow>;
  private readonly drop: Statement<{ floor: number }>;
  private readonly ackUpTo: Statement<{ upto: number }>;

  constructor(
    db: Database,
    private readonly limit: number,
  ) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new HsError('HS_CONFIG', `outbox limit must be a positive integer, got ${limit}`);
    this.selectState = db.prepare(
      `SELECT acked, dropped, (SELECT max(seq) FROM audit) AS last, (SELECT min(seq) FROM audit WHERE seq > outbox.acked) AS oldest
       FROM outbox WHERE id = 1`,
    );
    this.selectPending = db.prepare<[number], AuditRow>(`${SELECT_AUDIT_ROWS} WHERE a.seq > (SELECT acked FROM outbox WHERE id = 1) ORDER BY a.seq LIMIT ?`);
    this.drop = db.prepare('UPDATE outbox SET dropped = dropped + (@floor - acked), acked = @floor WHERE id = 1 AND acked < @floor');
    // Never past the last record: an early ack must not swallow records appended later.
    this.ackUpTo = db.prepare('UPDATE outbox SET acked = min(@upto, (SELECT coalesce(max(seq), 0) FROM audit)) WHERE id = 1 AND acked < @upto');
  }

  /** Called inside the transaction that appended record `seq`. */
  appended(seq: number): void {
    const acked = this.ackedAtLeast ?? this.state().acked;
    this.ackedAtLeast = acked;
    if (seq - acked <= this.limit) return;
    const floor = seq - this.limit;
    this.drop.run({ floor });
    this.ackedAtLeast = floor;
  }

  pending(limit: number): OutboxItem[] {
    return this.selectPending.all(Math.max(0, Math.floor(limit))).map((row) => ({ seq: row.seq, entry: rowToEntry(row) }));
  }

  /** Marks everything up to `uptoSeq` delivered. */
  ack(uptoSeq: number): void {
    if (!Number.isFinite(uptoSeq)) throw new HsError('HS_STORE', `outbox ack needs a seq, got ${uptoSeq}`);
    this.ackUpTo.run({ upto: Math.floor(uptoSeq) });
    this.ackedAtLeast = undefined;
  }

  stats(): OutboxStats {
    const s = this.state();
    return { pending: Math.max(0, (s.last ?? 0) - s.acked), dropped: s.dropped, oldestSeq: s.oldest };
  }

  acked(): number {
    return this.state().acked;
  }

  forget(): void {
    this.ackedAtLeast = undefined;
  }

  private state(): { acked: number; dropped: number; last: number | null; oldest: number | null } {
    const s = this.selectState.get();
    if (!s) throw new HsError('HS_STORE', 'the outbox cursor row is missing');
    return s;
  }
}
