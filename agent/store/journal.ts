// The path journal's rows: what the agent last wrote or verified at each path (the engine keeps the live copy in memory).
import type { Database, Statement } from '../../lib/sqlite.js';
import type { JournalEntry } from './types.js';

interface JournalRow {
  path: string;
  dev: number;
  ino: number;
  size: number;
  mtime_ns: string;
  ctime_ns: string;
  mode: number;
  uid: number;
  gid: number;
  sha256: string | null;
}

const COLUMNS = 'path, dev, ino, size, mtime_ns, ctime_ns, mode, uid, gid, sha256';

function toEntry(r: JournalRow): JournalEntry {
  return { path: r.path, dev: r.dev, ino: r.ino, size: r.size, mtimeNs: r.mtime_ns, ctimeNs: r.ctime_ns, mode: r.mode, uid: r.uid, gid: r.gid, sha256: r.sha256 };
}

export class JournalRows {
  private readonly all: Statement<[], JournalRow>;
  private readonly upsert: Statement<JournalRow>;
  private readonly remove: Statement<[string]>;

  constructor(db: Database) {
    this.all = db.prepare(`SELECT ${COLUMNS} FROM journal`);
    this.upsert = db.prepare(
      `INSERT OR REPLACE INTO journal (${COLUMNS}) VALUES (@path, @dev, @ino, @size, @mtime_ns, @ctime_ns, @mode, @uid, @gid, @sha256)`,
    );
    this.remove = db.prepare('DELETE FROM journal WHERE path = ?');
  }


  put(e: JournalEntry): void {
    this.upsert.run({ path: e.path, dev: e.dev, ino: e.ino, size: e.size, mtime_ns: e.mtimeNs, ctime_ns: e.ctimeNs, mode: e.mode, uid: e.uid, gid: e.gid, sha256: e.sha256 });
  }

  delete(path: string): void {
    this.remove.run(path);
  }

  load(): Map<string, JournalEntry> {
    const map = new Map<string, JournalEntry>();
    for (const row of this.all.iterate()) map.set(row.path, toEntry(row));
    return map;
  }
}
