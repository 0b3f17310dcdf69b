// Accepted drifts: an operator rejected the escalation, so the engine leaves this exact drift alone until it expires.
import type { Clock } from '../../lib/clock.js';
import type { Database, Statement } from '../../lib/sqlite.js';
import type { AcceptedException } from './types.js';

interface ExceptionRow {
  resource: string;
  fingerprint: string;
  reason: string;
  expires_at: number;
}

const toException = (r: ExceptionRow): AcceptedException => ({ resource: r.resource, fingerprint: r.fingerprint, reason: r.reason, expiresAt: r.expires_at });

export class Exceptions {
  private readonly upsert: Statement<[string, string, string, number, number]>;
  private readonly all: Statement<[], ExceptionRow>;
  private readonly remove: Statement<[string]>;

  constructor(
    db: Database,
    private readonly clock: Clock,
  ) {
    this.upsert = db.prepare('INSERT OR REPLACE INTO exceptions (resource, fingerprint, reason, expires_at, created_at) VALUES (?, ?, ?, ?, ?)');
    this.all = db.prepare('SELECT resource, fingerprint, reason, expires_at FROM exceptions ORDER BY resource');
    this.remove = db.prepare('DELETE FROM exceptions WHERE resource = ?');
  }

  /** One exception per resource: a new one replaces the old. Expired ones stay until deleted (the engine records their expiry). */
  put(e: AcceptedException): void {
    this.upsert.run(e.resource, e.fingerprint, e.reason, e.expiresAt, this.clock.now());
  }


  list(): AcceptedException[] {
    return this.all.all().map(toException);
  }

  delete(resource: string): void {
    this.remove.run(resource);
  }
}
