// The agent's local cache: one SQLite file (WAL) in the state dir holding baselines, the audit log and its outbox,
// the path journal, backups, exceptions and meta. The daemon writes; `status` and `audit` read at the same time.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HsError } from '../../lib/errors.js';
import { systemClock, type Clock } from '../../lib/clock.js';
import { checkSchema, IdleCheckpointer, migrate, openDatabase, sqliteError, type Database, type Statement } from '../../lib/sqlite.js';
import { AuditLog } from './audit.js';
import { Backups } from './backups.js';
import { Baselines } from './baselines.js';
import { Exceptions } from './exceptions.js';
import { JournalRows } from './journal.js';
import { Outbox } from './outbox.js';
import { AGENT_SCHEMA } from './schema.js';
import type {
  AcceptedException,
  AuditEntry,
  AuditQuery,
  AuditVerification,
  Backup,
  BackupInfo,
  JournalEntry,
  NewAuditEntry,
  NewBaseline,
  OutboxItem,
  OutboxStats,
  StoredBaseline,
} from './types.js';

export const AGENT_DB_FILE = 'agent.db';
export const DEFAULT_OUTBOX_LIMIT = 200_000;
export const DEFAULT_BACKUP_LIMIT_BYTES = 256 * 1024;

export interface AgentStoreOptions {
  /** For `status` and `audit` next to a running daemon: nothing is created, migrated or written. */
  readonly?: boolean;
  /** Most audit records kept waiting for the controller; past it the oldest are dropped and counted. */
  outboxLimit?: number;
  /** Largest replaced content whose bytes are kept in a backup (hash and size are kept always). */
  backupLimitBytes?: number;
  clock?: Clock;
  busyTimeoutMs?: number;
}

export class AgentStore {
  readonly file: string;
  readonly readonly: boolean;
  private closed = false;
  private readonly checkpointer: IdleCheckpointer | undefined;
  private readonly audit: AuditLog;
  private readonly outbox: Outbox;
  private readonly baselines: Baselines;
  private readonly journal: JournalRows;
  private readonly backups: Backups;
  private readonly exceptions: Exceptions;
  private readonly metaGet: Statement<[string], string>;
  private readonly metaSet: Statement<[string, string]>;
  private readonly metaDelete: Statement<[string]>;

  /** Opens `<stateDir>/agent.db`, creating the dir (0700) and the file (0600) and migrating the schema unless read-only. */
  static open(stateDir: string, opts: AgentStoreOptions = {}): AgentStore {
    const dir = path.resolve(stateDir);
    const file = path.join(dir, AGENT_DB_FILE);
    const readonly = opts.readonly ?? false;
    if (!readonly) prepareFiles(dir, file);
    const db = openDatabase(file, { readonly, ...(opts.busyTimeoutMs !== undefined ? { busyTimeoutMs: opts.busyTimeoutMs } : {}) });
    try {
      if (readonly) checkSchema(db, file, AGENT_SCHEMA, true);
      else migrate(db, file, AGENT_SCHEMA);
      return new AgentStore(db, file, readonly, opts);
    } catch (err) {
      db.close();
      throw sqliteError(err, file, readonly ? 'reading the schema' : 'migrating the schema');
    }
  }

  private constructor(
    private readonly db: Database,
    file: string,
    readonly: boolean,
    opts: AgentStoreOptions,
  ) {
    this.file = file;
    this.readonly = readonly;
    const clock = opts.clock ?? systemClock;
    this.checkpointer = readonly ? undefined : new IdleCheckpointer(db);
    this.outbox = new Outbox(db, opts.outboxLimit ?? DEFAULT_OUTBOX_LIMIT);
    this.audit = new AuditLog(db, !readonly, (seq) => this.outbox.appended(seq));
    this.baselines = new Baselines(db, clock);
    this.journal = new JournalRows(db);
    this.backups = new Backups(db, opts.backupLimitBytes ?? DEFAULT_BACKUP_LIMIT_BYTES);
    this.exceptions = new Exceptions(db, clock);
    this.metaGet = db.prepare<[string], string>('SELECT value FROM meta WHERE key = ?').pluck();
    this.metaSet = db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)');
    this.metaDelete = db.prepare('DELETE FROM meta WHERE key = ?');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.checkpointer?.stop();
    this.db.close();
  }

  /** Runs `fn` in one transaction (nested calls become savepoints); on a throw nothing of it stays. */
  transaction<T>(fn: () => T): T {
    return this.write('running a transaction', () => this.db.transaction(fn)());
  }

  // --- baselines

  /** Stores a version unless the same text is stored under that name already; see NewBaseline for the numbering. */
  putBaseline(b: NewBaseline): { version: number; isNew: boolean } {
    return this.write('storing a baseline', () => this.db.transaction(() => this.baselines.put(b))());
  }

  /** Makes a stored version the active one of its name, remembering the one it replaces. Call after validating it. */
  activate(name: string, version: number): void {
    this.write('activating a baseline', () => this.db.transaction(() => this.baselines.activate(name, version))());
  }

  deactivate(name: string): void {
    this.write('deactivating a baseline', () => this.baselines.deactivate(name));
  }

  getActive(): StoredBaseline[] {
    return this.read('reading active baselines', () => this.baselines.getActive());
  }

  getVersion(name: string, version: number): StoredBaseline | undefined {
    return this.read('reading a baseline', () => this.baselines.get(name, version));
  }

  getPrevious(name: string): StoredBaseline | undefined {
    return this.read('reading a baseline', () => this.baselines.getPrevious(name));
  }

  listVersions(name: string): StoredBaseline[] {
    return this.read('reading baselines', () => this.baselines.list(name));
  }

  // --- audit log and outbox

  /** Appends a record to the hash chain and, in the same transaction, to the outbox. */
  appendAudit(e: NewAuditEntry): AuditEntry {
    return this.write('appending to the audit log', () => this.audit.append(e));
  }

  /** Matching records in ascending seq. */
  queryAudit(q: AuditQuery = {}): AuditEntry[] {
    return this.read('reading the audit log', () => this.audit.query(q));
  }

  /** Number of records per event name. */
  auditCounts(): Record<string, number> {
    return this.read('counting the audit log', () => this.audit.counts());
  }

  auditHead(): { seq: number; hash: string } {
    return this.read('reading the audit log', () => ({ ...this.audit.head() }));
  }

  /** Recomputes the whole chain; reports the first record that was edited, deleted or moved. */
  verifyAudit(): AuditVerification {
    return this.read('verifying the audit log', () => this.audit.verify(this.outbox.acked()));
  }

  /** The oldest `limit` records not yet delivered, in order. */
  outboxPending(limit: number): OutboxItem[] {
    return this.read('reading the outbox', () => this.outbox.pending(limit));
  }

  /** The controller has every record up to `uptoSeq`. */
  outboxAck(uptoSeq: number): void {
    this.write('acknowledging outbox records', () => this.outbox.ack(uptoSeq));
  }

  outboxStats(): OutboxStats {
    return this.read('reading the outbox', () => this.outbox.stats());
  }

  // --- journal

  getJournal(p: string): JournalEntry | undefined {
    return this.read('reading the journal', () => this.journal.get(p));
  }

  putJournal(e: JournalEntry): void {
    this.write('writing the journal', () => this.journal.put(e));
  }

  deleteJournal(p: string): void {
    this.write('writing the journal', () => this.journal.delete(p));
  }

  loadJournal(): Map<string, JournalEntry> {
    return this.read('reading the journal', () => this.journal.load());
  }

  // --- backups

  putBackup(resource: string, time: number, content: Buffer, sha256: string): BackupInfo {
    return this.write('storing a backup', () => this.db.transaction(() => this.backups.put(resource, time, content, sha256))());
  }

  /** Newest first, without the bytes. */
  listBackups(resource: string): BackupInfo[] {
    return this.read('reading backups', () => this.backups.forResource(resource));
  }

  getBackup(id: number): Backup | undefined {
    return this.read('reading a backup', () => this.backups.get(id));
  }

  // --- meta

  getMeta(key: string): string | undefined {
    return this.read('reading meta', () => this.metaGet.get(key));
  }

  setMeta(key: string, value: string): void {
    this.write('writing meta', () => this.metaSet.run(key, value));
  }

  deleteMeta(key: string): void {
    this.write('writing meta', () => this.metaDelete.run(key));
  }

  // --- exceptions

  putException(e: AcceptedException): void {
    this.write('storing an exception', () => this.exceptions.put(e));
  }

  getException(resource: string): AcceptedException | undefined {
    return this.read('reading exceptions', () => this.exceptions.get(resource));
  }

  deleteException(resource: string): void {
    this.write('deleting an exception', () => this.exceptions.delete(resource));
  }

  listExceptions(): AcceptedException[] {
    return this.read('reading exceptions', () => this.exceptions.list());
  }

  // --- plumbing

  private read<T>(doing: string, fn: () => T): T {
    this.assertOpen(doing);
    try {
      return fn();
    } catch (err) {
      throw sqliteError(err, this.file, doing);
    }
  }

  private write<T>(doing: string, fn: () => T): T {
    this.assertOpen(doing);
    if (this.readonly) throw new HsError('HS_STORE', `${this.file}: ${doing} failed: the store was opened read-only`);
    try {
      const result = fn();
      this.checkpointer?.touched();
      return result;
    } catch (err) {
      // A rolled-back transaction may have taken rows the caches still point at (chain head, interned ids, cursor).
      this.audit.forget();
      this.outbox.forget();
      throw sqliteError(err, this.file, doing);
    }
  }

  private assertOpen(doing: string): void {
    if (this.closed) throw new HsError('HS_STORE', `${this.file}: ${doing} failed: the store is closed`);
  }
}

/** The state dir (0700) and an empty database file (0600) before SQLite creates it with its own default mode. */
function prepareFiles(dir: string, file: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.closeSync(fs.openSync(file, fs.constants.O_CREAT | fs.constants.O_RDWR | fs.constants.O_NOFOLLOW, 0o600));
    const mode = fs.statSync(file).mode;
    // -wal and -shm take the database file's mode: tighten an existing file once so they follow.
    if ((mode & 0o077) !== 0) fs.chmodSync(file, mode & 0o700);
  } catch (err) {
    throw sqliteError(err, file, 'preparing the state dir');
  }
}
