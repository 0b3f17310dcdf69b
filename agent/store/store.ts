// The agent's local cache: one SQLite file (WAL) in the state dir holding baselines, the audit log and its outbox,
// the path journal, backups, exceptions and meta. The daemon writes; `status` and `audit` read at the same time.
// A damaged file found while writing is moved aside and the cache rebuilt in place (recovery.ts), so the agent goes on.
import type { DriftEvent } from '../../lib/policy/patterns.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HsError, errorMessage } from '../../lib/errors.js';
import { systemClock, type Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import { checkSchema, IdleCheckpointer, migrate, openDatabase, sqliteCode, sqliteError, type Database, type Statement } from '../../lib/sqlite.js';
import { AuditLog } from './audit.js';
import { Backups } from './backups.js';
import { Baselines, sourceOf } from './baselines.js';
import { EscalationRows } from './escalations.js';
import { Exceptions } from './exceptions.js';
import { HEAD_FILE, HeadFile, readHead } from './head.js';
import { JournalRows } from './journal.js';
import { Outbox } from './outbox.js';
import { quarantine, restore, salvage, type Salvage } from './recovery.js';
import { AGENT_SCHEMA } from './schema.js';
import type {
  AcceptedException,
  AuditEntry,
  AuditQuery,
  AuditVerification,
  Backup,
  BackupInfo,
  BaselineOrigin,
  JournalEntry,
  LocalEscalation,
  NewAuditEntry,
  NewBaseline,
  OutboxItem,
  OutboxStats,
  StoredBaseline,
} from './types.js';

export const AGENT_DB_FILE = 'agent.db';
/**
 * Audit records kept for the controller while it is away. A million is the offline budget; a record costs about 170
 * bytes on disk and nothing in memory (bench/README.md, offline-outbox), so this many stay within 256 MB of disk.
 */
export const DEFAULT_OUTBOX_LIMIT = 1_200_000;
export const DEFAULT_BACKUP_LIMIT_BYTES = 256 * 1024;
/** Delivered audit records are kept this long by default; undelivered ones are never removed for age. */
export const DEFAULT_AUDIT_RETENTION_MS = 90 * 86_400_000;

export interface AgentStoreOptions {
  /** For `status` and `audit` next to a running daemon: nothing is created, migrated or written. */
  readonly?: boolean;
  /** Most audit records kept waiting for the controller; past it the oldest are dropped and counted. */
  outboxLimit?: number;
  /** Largest replaced content whose bytes are kept in a backup (hash and size are kept always). */
  backupLimitBytes?: number;
  clock?: Clock;
  busyTimeoutMs?: number;
  /** Check the whole file (PRAGMA quick_check) before using it: the daemon does at start. Damage throws StoreDamagedError. */
  checkIntegrity?: boolean;
  log?: Logger;
}

/** The database file is damaged (SQLite's own words in the message): move it aside and rebuild (recovery.ts). */
export class StoreDamagedError extends HsError {
  constructor(file: string, why: string, cause?: unknown) {
    super('HS_STORE', `${file} is damaged: ${why}`, cause === undefined ? {} : { cause });
    this.name = 'StoreDamagedError';
  }
}

/** Whether a failure means the file itself is damaged (as opposed to locked, full or forbidden). */
export function isDamage(err: unknown): boolean {
  if (err instanceof StoreDamagedError) return true;
  const code = sqliteCode(err) ?? sqliteCode(err instanceof Error ? err.cause : undefined);
  return code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB';
}

interface Parts {
  audit: AuditLog;
  outbox: Outbox;
  baselines: Baselines;
  journal: JournalRows;
  backups: Backups;
  exceptions: Exceptions;
  escalations: EscalationRows;
  metaGet: Statement<[string], string>;
  metaSet: Statement<[string, string]>;
  checkpointer: IdleCheckpointer | undefined;
}

export class AgentStore {
  readonly file: string;
  readonly readonly: boolean;
  /** What a rebuild found and did, for the daemon to record; set by recovery. */
  onRecovered: ((description: string) => void) | undefined;
  private closed = false;
  private recovering = false;
  private parts: Parts;
  private readonly head: HeadFile | undefined;
  private readonly clock: Clock;

  /** Opens `<stateDir>/agent.db`, creating the dir (0700) and the file (0600) and migrating the schema unless read-only. */
  static open(stateDir: string, opts: AgentStoreOptions = {}): AgentStore {
    const dir = path.resolve(stateDir);
    const file = path.join(dir, AGENT_DB_FILE);
    const readonly = opts.readonly ?? false;
    if (!readonly) prepareFiles(dir, file);
    const db = openDatabase(file, { readonly, ...(opts.busyTimeoutMs !== undefined ? { busyTimeoutMs: opts.busyTimeoutMs } : {}) });
    try {
      if (opts.checkIntegrity) checkIntegrity(db, file);
      if (readonly) checkSchema(db, file, AGENT_SCHEMA, true);
      else migrate(db, file, AGENT_SCHEMA);
      const store = new AgentStore(db, file, readonly, opts, readonly ? undefined : new HeadFile(path.join(dir, HEAD_FILE)));
      if (!readonly) store.checkHead();
      return store;
    } catch (err) {
      db.close();
      if (err instanceof StoreDamagedError) throw err;
      if (isDamage(err)) throw new StoreDamagedError(file, errorMessage(err), err);
      throw sqliteError(err, file, readonly ? 'reading the schema' : 'migrating the schema');
    }
  }

  /**
   * Moves a damaged `<stateDir>/agent.db` aside (named in the result), opens a new one, and puts back what could still be
   * read from the old one: active baselines, meta (the controller link's cache), accepted drifts. The new audit log starts
   * after the last seq the head file names, with a `records_lost` record for the records left in the old file.
   */
  static rebuild(stateDir: string, opts: AgentStoreOptions, why: string): { store: AgentStore; description: string } {
    const dir = path.resolve(stateDir);
    const file = path.join(dir, AGENT_DB_FILE);
    let saved: Salvage = { baselines: [], meta: [], exceptions: [], acked: 0, lastSeq: 0 };
    try {
      const old = openDatabase(file, { readonly: true });
      try {
        saved = salvage(old);
      } finally {
        old.close();
      }
    } catch {
      // nothing readable: rebuilt from the baseline files and the controller alone
    }
    const movedTo = quarantine(file, (opts.clock ?? systemClock).now());
    const store = AgentStore.open(stateDir, { ...opts, checkIntegrity: false });
    const description = store.restoreFrom(saved, `${file} was damaged (${why}); moved to ${movedTo}`);
    return { store, description };
  }

  /** A store that lives in memory only: what the daemon runs with when the state dir cannot be written at all. */
  static inMemory(opts: AgentStoreOptions = {}): AgentStore {
    const db = openDatabase(':memory:');
    migrate(db, ':memory:', AGENT_SCHEMA);
    return new AgentStore(db, ':memory:', false, opts, undefined);
  }

  private constructor(
    private db: Database,
    file: string,
    readonly: boolean,
    private readonly opts: AgentStoreOptions,
    head: HeadFile | undefined,
  ) {
    this.file = file;
    this.readonly = readonly;
    this.head = head;
    this.clock = opts.clock ?? systemClock;
    this.parts = this.attach(db);
  }

  private attach(db: Database): Parts {
    const outbox = new Outbox(db, this.opts.outboxLimit ?? DEFAULT_OUTBOX_LIMIT);
    return {
      outbox,
      audit: new AuditLog(db, !this.readonly, (seq) => outbox.appended(seq), this.head),
      baselines: new Baselines(db, this.clock),
      journal: new JournalRows(db),
      backups: new Backups(db, this.opts.backupLimitBytes ?? DEFAULT_BACKUP_LIMIT_BYTES),
      exceptions: new Exceptions(db, this.clock),
      escalations: new EscalationRows(db),
      metaGet: db.prepare<[string], string>('SELECT value FROM meta WHERE key = ?').pluck(),
      metaSet: db.prepare('INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)'),
      checkpointer: this.readonly || this.file === ':memory:' ? undefined : new IdleCheckpointer(db),
    };
  }

  /** Whether the cache lives in memory only (the state dir could not be written). */
  get inMemory(): boolean {
    return this.file === ':memory:';
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.parts.checkpointer?.stop();
    this.head?.close();
    this.db.close();
  }

  /** Runs `fn` in one transaction (nested calls become savepoints); on a throw nothing of it stays. */
  transaction<T>(fn: () => T): T {
    return this.write('running a transaction', () => this.db.transaction(fn)());
  }

  // --- baselines

  /** Stores a version unless the same text is stored under that name and source already; see NewBaseline for the numbering. */
  putBaseline(b: NewBaseline): { version: number; isNew: boolean } {
    return this.write('storing a baseline', () => this.db.transaction(() => this.parts.baselines.put(b))());
  }

  /** The version stored for this exact text of `name`, if any. Only reads, so it answers on a full disk. */
  findVersion(origin: BaselineOrigin, signedBy: string | undefined, name: string, sha256: string): number | undefined {
    return this.read('reading baselines', () => this.parts.baselines.find(sourceOf(origin, signedBy), name, sha256));
  }

  /** Makes a stored version the active one of its name and source, remembering the one it replaces. Call after validating it. */
  activate(origin: BaselineOrigin, signedBy: string | undefined, name: string, version: number): void {
    this.write('activating a baseline', () => this.db.transaction(() => this.parts.baselines.activate(sourceOf(origin, signedBy), name, version))());
  }

  deactivate(origin: BaselineOrigin, signedBy: string | undefined, name: string): void {
    this.write('deactivating a baseline', () => this.parts.baselines.deactivate(sourceOf(origin, signedBy), name));
  }

  /** What any controller assigned stops being active (another controller's set replaces it). */
  deactivateAll(origin: 'controller'): void {
    if (origin === 'controller') this.write('deactivating baselines', () => this.parts.baselines.deactivateControllers());
  }

  /**
   * Drops every stored version of `name` from `origin` (and, for a controller, the signing key `signedBy`): the name is
   * no longer active and nothing of it stays cached. Returns the versions that were stored.
   */
  forgetBaseline(origin: BaselineOrigin, signedBy: string | undefined | null, name: string): number[] {
    return this.write('forgetting a baseline', () => this.db.transaction(() => this.parts.baselines.forget(sourceOf(origin, signedBy), name))());
  }

  /** Every stored version of `name`, per source, newest first (for `forget` to say which source holds it). */
  storedVersions(name: string): { source: string; origin: BaselineOrigin; signedBy: string | null; versions: number[]; active: number | null }[] {
    return this.read('reading baselines', () => this.parts.baselines.versionsOf(name));
  }

  getActive(): StoredBaseline[] {
    return this.read('reading active baselines', () => this.parts.baselines.getActive());
  }

  // --- audit log and outbox

  /** Appends a record to the hash chain and, in the same transaction, to the outbox. */
  appendAudit(e: NewAuditEntry): AuditEntry {
    return this.write('appending to the audit log', () => this.parts.audit.append(e));
  }

  /** Matching records in ascending seq. */
  queryAudit(q: AuditQuery = {}): AuditEntry[] {
    return this.read('reading the audit log', () => this.parts.audit.query(q));
  }

  /** The latest `limit` drifts of a resource that name their changes (oldest first), with their actors, for patterns. */
  driftHistory(resource: string, limit: number): DriftEvent[] {
    return this.queryAudit({ resource, event: 'drift_detected', limit, newest: true }).flatMap((e) =>
      e.changes ? [{ time: e.time, changes: e.changes, ...(e.actor ? { actor: e.actor } : {}) }] : [],
    );
  }

  /** Number of records per event name. */
  auditCounts(): Record<string, number> {
    return this.read('counting the audit log', () => this.parts.audit.counts());
  }

  auditHead(): { seq: number; hash: string } {
    return this.read('reading the audit log', () => ({ ...this.parts.audit.head() }));
  }

  /** Recomputes the whole chain; reports the first record that was edited, deleted or moved, and losses found and recorded. */
  verifyAudit(): AuditVerification {
    const head = this.inMemory ? undefined : readHead(path.join(path.dirname(this.file), HEAD_FILE));
    return this.read('verifying the audit log', () => this.parts.audit.verify(this.parts.outbox.acked(), head?.seq));
  }

  /** Drifts a killed run left without an outcome (see AuditLog.openDrifts). */
  openDrifts(): ReturnType<AuditLog['openDrifts']> {
    return this.read('reading the audit log', () => this.parts.audit.openDrifts());
  }

  /**
   * Removes audit records older than `maxAgeMs`, in batches, yielding between them. With `keepUndelivered` (a controller
   * to deliver to) records past the outbox cursor stay whatever their age. Returns how many were removed.
   */
  async retainAudit(maxAgeMs: number, keepUndelivered: boolean, batch = 20_000): Promise<number> {
    let total = 0;
    for (;;) {
      const upto = keepUndelivered ? this.read('reading the outbox', () => this.parts.outbox.acked()) : Number.MAX_SAFE_INTEGER;
      const n = this.write('removing old audit records', () => this.parts.audit.retain(this.clock.now() - maxAgeMs, upto, batch));
      total += n;
      if (n === 0) return total;
      await new Promise((r) => setImmediate(r));
    }
  }

  /** The oldest `limit` records not yet delivered, in order. */
  outboxPending(limit: number): OutboxItem[] {
    return this.read('reading the outbox', () => this.parts.outbox.pending(limit));
  }

  /**
   * The controller has every record up to `uptoSeq`. When it holds records past this log's end (the log lost them), the
   * log continues after them, with a `records_lost` record: a seq the controller has is never used again.
   */
  outboxAck(uptoSeq: number): void {
    this.write('acknowledging outbox records', () => {
      const last = this.parts.audit.head().seq;
      if (Number.isSafeInteger(uptoSeq) && uptoSeq > last) {
        this.parts.audit.appendLost(last + 1, uptoSeq, this.clock.now(), `records ${last + 1} to ${uptoSeq} reached the controller but are not in this agent's log any more (${this.file} lost them); the log continues after them`);
      }
      this.parts.outbox.ack(uptoSeq);
    });
  }

  outboxStats(): OutboxStats {
    return this.read('reading the outbox', () => this.parts.outbox.stats());
  }

  // --- journal

  putJournal(e: JournalEntry): void {
    this.write('writing the journal', () => this.parts.journal.put(e));
  }

  deleteJournal(p: string): void {
    this.write('writing the journal', () => this.parts.journal.delete(p));
  }

  loadJournal(): Map<string, JournalEntry> {
    return this.read('reading the journal', () => this.parts.journal.load());
  }

  // --- backups

  /** Keeps the content the repair recorded at audit record `seq` replaced (seq 0: the record was not written). */
  putBackup(resource: string, time: number, content: Buffer, sha256: string, seq?: number): BackupInfo {
    return this.write('storing a backup', () => this.db.transaction(() => this.parts.backups.put(resource, time, content, sha256, seq))());
  }

  /** Newest first, without the bytes. */
  listBackups(resource: string): BackupInfo[] {
    return this.read('reading backups', () => this.parts.backups.forResource(resource));
  }

  getBackup(id: number): Backup | undefined {
    return this.read('reading a backup', () => this.parts.backups.get(id));
  }

  /** The content replaced by the repair recorded at `seq`, if it was kept. */
  backupForRecord(seq: number): Backup | undefined {
    return this.read('reading a backup', () => this.parts.backups.forSeq(seq));
  }

  // --- meta

  getMeta(key: string): string | undefined {
    return this.read('reading meta', () => this.parts.metaGet.get(key));
  }

  setMeta(key: string, value: string): void {
    this.write('writing meta', () => this.parts.metaSet.run(key, value));
  }

  // --- exceptions

  putException(e: AcceptedException): void {
    this.write('storing an exception', () => this.parts.exceptions.put(e));
  }

  deleteException(resource: string): void {
    this.write('deleting an exception', () => this.parts.exceptions.delete(resource));
  }

  listExceptions(): AcceptedException[] {
    return this.read('reading exceptions', () => this.parts.exceptions.list());
  }

  // --- escalations

  /** Drifts left for a human on this host and not yet answered, from the audit log (see escalations.ts). */
  openEscalations(): LocalEscalation[] {
    return this.read('reading escalations', () => this.parts.escalations.list());
  }

  // --- damage

  /**
   * Compares the log with the head kept beside the database: records the database lost (its end is below the head) are
   * recorded as lost and never numbered again; a head record whose hash differs means the log was replaced up to there.
   */
  private checkHead(): void {
    if (!this.head) return;
    const file = readHead(path.join(path.dirname(this.file), HEAD_FILE));
    const mine = this.parts.audit.head();
    if (!file || file.seq === 0) {
      if (mine.seq > 0) this.head.write(mine);
      return;
    }
    if (mine.seq < file.seq) {
      this.write('recording lost records', () =>
        this.parts.audit.appendLost(
          mine.seq + 1,
          file.seq,
          this.clock.now(),
          `records ${mine.seq + 1} to ${file.seq} are missing from ${this.file}: the log ended at ${mine.seq} but the head kept beside it says it reached ${file.seq} (its write-ahead log lost after a crash, or the file replaced by an older copy); the log continues after them`,
        ),
      );
      this.write('moving the outbox past lost records', () => this.parts.outbox.ack(file.seq));
      return;
    }
    const stored = this.parts.audit.hashAt(file.seq);
    if (stored !== undefined && stored !== file.hash) {
      this.write('recording a replaced log', () =>
        this.parts.audit.append({
          time: this.clock.now(),
          resource: null,
          event: 'records_lost',
          trigger: 'startup',
          baseline: null,
          version: null,
          observed: null,
          desired: null,
          diff: null,
          detail: `record ${file.seq} of ${this.file} is not the one the head kept beside it names (hash ${stored.slice(0, 12)}, not ${file.hash.slice(0, 12)}): the log was replaced or rewritten up to there`,
        }),
      );
    }
  }

  /** Puts salvaged rows into this (new) store and records the loss; returns what happened, for `store_recovered`. */
  private restoreFrom(saved: Salvage, what: string): string {
    const put = restore(this, saved);
    const head = readHead(path.join(path.dirname(this.file), HEAD_FILE));
    const reached = Math.max(head?.seq ?? 0, saved.lastSeq);
    if (reached > 0 && this.parts.audit.head().seq < reached) {
      const undelivered = Math.max(0, reached - saved.acked);
      this.write('recording lost records', () =>
        this.parts.audit.appendLost(
          this.parts.audit.head().seq + 1,
          reached,
          this.clock.now(),
          `records ${this.parts.audit.head().seq + 1} to ${reached} stay in the damaged file and are not in this log${saved.acked > 0 ? ` (${undelivered} of them had not reached the controller)` : ''}: ${what}`,
        ),
      );
      this.write('moving the outbox past lost records', () => this.parts.outbox.ack(reached));
    }
    return `${what}; put back: ${put}`;
  }

  /**
   * The database turned out damaged while running (a write failed with SQLITE_CORRUPT): move it aside, start a new one
   * with what can still be read, and carry on. Returns whether it did.
   */
  private recoverInPlace(cause: unknown): boolean {
    if (this.recovering || this.readonly || this.inMemory || this.closed) return false;
    this.recovering = true;
    try {
      let saved: Salvage = { baselines: [], meta: [], exceptions: [], acked: 0, lastSeq: 0 };
      try {
        saved = salvage(this.db);
      } catch {
        // nothing more to save
      }
      // The head file has the last seq even when the log's own pages are what is damaged.
      saved.lastSeq = Math.max(saved.lastSeq, readHead(path.join(path.dirname(this.file), HEAD_FILE))?.seq ?? 0);
      this.parts.checkpointer?.stop();
      try {
        this.db.close();
      } catch {
        // already unusable
      }
      const movedTo = quarantine(this.file, this.clock.now());
      prepareFiles(path.dirname(this.file), this.file);
      this.db = openDatabase(this.file);
      migrate(this.db, this.file, AGENT_SCHEMA);
      this.parts = this.attach(this.db);
      const description = this.restoreFrom(saved, `${this.file} turned out damaged while running (${errorMessage(cause)}); moved to ${movedTo}`);
      this.opts.log?.error({ movedTo }, 'damaged cache moved aside and rebuilt');
      this.onRecovered?.(description);
      return true;
    } catch (err) {
      this.opts.log?.error({ err: errorMessage(err) }, 'damaged cache could not be rebuilt');
      return false;
    } finally {
      this.recovering = false;
    }
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
      this.parts.checkpointer?.touched();
      return result;
    } catch (err) {
      // A rolled-back transaction may have taken rows the caches still point at (chain head, interned ids, cursor).
      this.parts.audit.forget();
      this.parts.outbox.forget();
      if (isDamage(err) && this.recoverInPlace(err)) {
        const result = fn.call(this);
        this.parts.checkpointer?.touched();
        return result;
      }
      throw sqliteError(err, this.file, doing);
    }
  }

  private assertOpen(doing: string): void {
    if (this.closed) throw new HsError('HS_STORE', `${this.file}: ${doing} failed: the store is closed`);
  }
}

/** Reads every page (PRAGMA quick_check): a truncated or overwritten file, or a damaged page, is found before it is used. */
function checkIntegrity(db: Database, file: string): void {
  let problems: string[];
  try {
    problems = db.pragma('quick_check', { simple: false }) as unknown as string[];
    problems = (problems as unknown as Record<string, string>[]).map((r) => String(Object.values(r)[0]));
  } catch (err) {
    throw new StoreDamagedError(file, errorMessage(err), err);
  }
  if (problems.length !== 1 || problems[0] !== 'ok') throw new StoreDamagedError(file, `PRAGMA quick_check: ${problems.slice(0, 5).join('; ')}`);
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
