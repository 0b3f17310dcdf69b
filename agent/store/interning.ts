// Ids for the texts and state documents audit records repeat, so each is stored once; ids are cached in memory.
import type { Database, Statement } from '../../lib/sqlite.js';

/** Short texts (resource ids, event names, triggers, baseline names): few distinct values, all cached. */
export class StringIds {
  private readonly ids = new Map<string, number>();
  private readonly insert: Statement<[string]>;
  private readonly select: Statement<[string], number>;

  constructor(db: Database) {
    this.insert = db.prepare('INSERT OR IGNORE INTO strings (text) VALUES (?)');
    this.select = db.prepare<[string], number>('SELECT id FROM strings WHERE text = ?').pluck();
  }

  /** Call inside the transaction that uses the id. */
  id(text: string): number {
    const cached = this.ids.get(text);
    if (cached !== undefined) return cached;
    // OR IGNORE + select: another process may have added the same text since we looked.
    this.insert.run(text);
    const id = this.select.get(text);
    if (id === undefined) throw new Error(`interned text vanished: ${text}`);
    this.ids.set(text, id);
    return id;
  }

  idOrNull(text: string | null): number | null {
    return text === null ? null : this.id(text);
  }

  /** After a rollback the cached ids of rows just inserted may not exist. */
  forget(): void {
    this.ids.clear();
  }
}

/** Recently stored documents remembered for reuse: enough for every resource's desired state on a large host. */
const DOC_CACHE_ENTRIES = 8192;
/** Longer documents are rarely repeated; remembering them would only cost memory. */
const DOC_CACHE_MAX_CHARS = 2048;

/**
 * State documents (canonical JSON). A document still in the in-memory cache is reused; otherwise it is stored again,
 * so after a restart or an eviction a document may have two ids. That costs a little space and saves a lookup index,
 * a query and a hash on the hot path.
 */
export class DocIds {
  private readonly ids = new Map<string, number>();
  private readonly insert: Statement<[string]>;

  constructor(db: Database) {
    this.insert = db.prepare('INSERT INTO docs (json) VALUES (?)');
  }

  /** Call inside the transaction that uses the id. */
  id(json: string): number {
    const cached = this.ids.get(json);
    if (cached !== undefined) {
      // Re-insert to keep the Map's order least-recently-used first.
      this.ids.delete(json);
      this.ids.set(json, cached);
      return cached;
    }
    const id = Number(this.insert.run(json).lastInsertRowid);
    if (json.length <= DOC_CACHE_MAX_CHARS) {
      this.ids.set(json, id);
      if (this.ids.size > DOC_CACHE_ENTRIES) {
        const oldest = this.ids.keys().next();
        if (!oldest.done) this.ids.delete(oldest.value);
      }
    }
    return id;
  }

  idOrNull(json: string | null): number | null {
    return json === null ? null : this.id(json);
  }

  forget(): void {
    this.ids.clear();
  }
}
