// Contents a repair replaced, newest kept per resource and tied to the repair's audit record: `audit --replaced SEQ`
// shows what a repair overwrote. Kept on this host only.
import type { Database, Statement } from '../../lib/sqlite.js';
import type { Backup, BackupInfo } from './types.js';

/** How many backups each resource keeps; older ones are pruned. */
export const BACKUPS_PER_RESOURCE = 10;

interface BackupRow {
  id: number;
  resource: string;
  time: number;
  sha256: string;
  size: number;
  kept: number;
}

const INFO = 'id, resource, time, sha256, size, content IS NOT NULL AS kept';

const toInfo = (r: BackupRow): BackupInfo => ({ id: r.id, resource: r.resource, time: r.time, sha256: r.sha256, size: r.size, kept: r.kept === 1 });

export class Backups {
  private readonly insert: Statement<[string, number, string, number, Buffer | null, number | null]>;
  private readonly bySeq: Statement<[number], BackupRow & { content: Buffer | null }>;
  private readonly prune: Statement<[string, string, number]>;
  private readonly list: Statement<[string], BackupRow>;
  private readonly one: Statement<[number], BackupRow & { content: Buffer | null }>;

  constructor(
    db: Database,
    private readonly limitBytes: number,
  ) {
    this.insert = db.prepare('INSERT INTO backups (resource, time, sha256, size, content, seq) VALUES (?, ?, ?, ?, ?, ?)');
    this.bySeq = db.prepare(`SELECT ${INFO}, content FROM backups WHERE seq = ? ORDER BY id DESC LIMIT 1`);
    this.prune = db.prepare('DELETE FROM backups WHERE resource = ? AND id NOT IN (SELECT id FROM backups WHERE resource = ? ORDER BY id DESC LIMIT ?)');
    this.list = db.prepare(`SELECT ${INFO} FROM backups WHERE resource = ? ORDER BY id DESC`);
    this.one = db.prepare(`SELECT ${INFO}, content FROM backups WHERE id = ?`);
  }

  /** Call inside a transaction. The bytes are kept only within the size limit; the hash and size always. */
  put(resource: string, time: number, content: Buffer, sha256: string, seq?: number): BackupInfo {
    const kept = content.length <= this.limitBytes;
    const id = Number(this.insert.run(resource, time, sha256, content.length, kept ? content : null, seq || null).lastInsertRowid);
    this.prune.run(resource, resource, BACKUPS_PER_RESOURCE);
    return { id, resource, time, sha256, size: content.length, kept };
  }

  /** Newest first, without the bytes. */
  forResource(resource: string): BackupInfo[] {
    return this.list.all(resource).map(toInfo);
  }

  /** The content replaced by the repair recorded at audit record `seq`. */
  forSeq(seq: number): Backup | undefined {
    const row = this.bySeq.get(seq);
    return row ? { ...toInfo(row), content: row.content } : undefined;
  }

  get(id: number): Backup | undefined {
    const row = this.one.get(id);
    return row ? { ...toInfo(row), content: row.content } : undefined;
  }
}
