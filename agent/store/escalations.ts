// Escalations as the audit log tells them: a drift left for a human is open from its `escalated` record until a record
// answers it (a repair, an approval, a rejection, or the drift found gone). Read from the log itself, so the daemon, a
// one-shot `apply` and `homeostat-agent escalations` see the same ones, across restarts, with or without a controller.
import type { Database, Statement } from '../../lib/sqlite.js';
import { rowToEntry, SELECT_AUDIT_ROWS, type AuditRow } from './audit.js';
import type { LocalEscalation } from './types.js';

/** Records that answer an open escalation of their resource. */
const CLOSING = ['repaired', 'approved', 'rejected', 'escalation_resolved'];

export class EscalationRows {
  private readonly open: Statement<[], { resource_id: number; first: number; n: number; last: number }>;
  private readonly at: Statement<{ seq: number }, AuditRow>;
  private readonly lastSeen: Statement<{ resource: number; from: number }, number>;

  constructor(db: Database) {
    const closing = CLOSING.map((e) => `'${e}'`).join(', ');
    // Per resource: the escalated records after its last answer. The scan is of ids only; the records are read after.
    this.open = db.prepare(
      `WITH ev AS (SELECT id, text FROM strings WHERE text IN ('escalated', ${closing})),
            esc AS (SELECT a.resource_id, a.seq FROM audit a JOIN ev ON ev.id = a.event_id AND ev.text = 'escalated' WHERE a.resource_id IS NOT NULL),
            answered AS (SELECT a.resource_id, max(a.seq) AS seq FROM audit a JOIN ev ON ev.id = a.event_id AND ev.text <> 'escalated'
                         WHERE a.resource_id IS NOT NULL GROUP BY a.resource_id)
       SELECT esc.resource_id, min(esc.seq) AS first, count(*) AS n, max(esc.seq) AS last FROM esc
         LEFT JOIN answered ON answered.resource_id = esc.resource_id
       WHERE esc.seq > coalesce(answered.seq, 0) GROUP BY esc.resource_id ORDER BY first`,
    );
    this.at = db.prepare(`${SELECT_AUDIT_ROWS} WHERE a.seq = @seq`);
    // The latest drift record (observed state) of the resource since the escalation opened.
    this.lastSeen = db
      .prepare<{ resource: number; from: number }, number>(
        `SELECT max(a.seq) FROM audit a WHERE a.resource_id = @resource AND a.seq >= @from
           AND a.event_id IN (SELECT id FROM strings WHERE text IN ('drift_detected', 'escalated')) AND a.observed_id IS NOT NULL`,
      )
      .pluck();
  }

  /** The open escalations, oldest first. */
  list(): LocalEscalation[] {
    const out: LocalEscalation[] = [];
    for (const row of this.open.all()) {
      const firstRow = this.at.get({ seq: row.first });
      const lastRow = this.at.get({ seq: row.last });
      if (!firstRow || !lastRow) continue;
      const first = rowToEntry(firstRow);
      const last = rowToEntry(lastRow);
      const seenSeq = this.lastSeen.get({ resource: row.resource_id, from: row.first });
      const seenRow = seenSeq ? this.at.get({ seq: seenSeq }) : undefined;
      const seen = seenRow ? rowToEntry(seenRow) : undefined;
      out.push({
        id: first.seq,
        resource: first.resource ?? '',
        baseline: last.baseline,
        version: last.version,
        openedAt: first.time,
        lastSeenAt: Math.max(last.time, seen?.time ?? 0),
        repeats: row.n - 1,
        detail: last.detail,
        observed: seen?.observed ?? null,
        desired: seen?.desired ?? null,
        diff: seen?.diff ?? null,
        cause: (last.detail ?? '').startsWith('repair failed') ? 'failures' : 'decision',
      });
    }
    return out;
  }
}
