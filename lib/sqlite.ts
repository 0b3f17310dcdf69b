// The one way either binary opens SQLite: the right native addon, WAL and the pragmas, and SQLite failures in the error vocabulary.
import * as fs from 'node:fs';
import * as path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { HsError, type ErrorCode } from './errors.js';
import { sqliteNativeBinding } from './native.js';

export type Database = BetterSqlite3.Database;
export type Statement<P extends unknown[] | object = unknown[], R = unknown> = BetterSqlite3.Statement<P, R>;

export interface OpenDatabaseOptions {
  /** Opens an existing database for reading only; it may be written by another process at the same time (WAL). */
  readonly?: boolean;
  /** How long a statement waits for another connection's lock before failing with a retryable HS_STORE. */
  busyTimeoutMs?: number;
}

const DEFAULT_BUSY_TIMEOUT_MS = 5000;

interface ConstructorOptions {
  readonly: boolean;
  fileMustExist: boolean;
  timeout: number;
  nativeBinding?: string | object;
}
// better-sqlite3 also takes a loaded addon object as `nativeBinding` (the single executable does); its typings admit only a path.
const SqliteDatabase = BetterSqlite3 as unknown as new (file: string, opts: ConstructorOptions) => Database;

/** Opens (creating when writable) the database at `file` with WAL, synchronous=NORMAL, a busy timeout and foreign keys. */
export function openDatabase(file: string, opts: OpenDatabaseOptions = {}): Database {
  const readonly = opts.readonly ?? false;
  const memory = file === ':memory:' || file === '';
  const doing = readonly ? 'opening read-only' : 'opening';
  let db: Database;
  try {
    const binding = sqliteNativeBinding();
    db = new SqliteDatabase(file, {
      readonly,
      fileMustExist: readonly,
      timeout: opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS,
      ...(binding === undefined ? {} : { nativeBinding: binding }),
    });
  } catch (err) {
    throw sqliteError(err, file, doing);
  }
  try {
    // A read-only connection cannot change the journal mode; it reads a WAL database as the writer left it.
    if (!readonly && !memory) {
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal') throw new HsError('HS_STORE', `${file}: the filesystem does not support WAL (journal mode stays '${String(mode)}')`);
    }
    // NORMAL in WAL mode: a power loss may lose the last commits but never corrupts; commits do not fsync.
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
  } catch (err) {
    db.close();
    throw sqliteError(err, file, doing);
  }
  return db;
}

/** Whether `err` came from SQLite itself (as opposed to the caller's code running inside a transaction). */
export function isSqliteError(err: unknown): err is Error & { code: string } {
  return err instanceof BetterSqlite3.SqliteError;
}

/** SQLite's primary result code (`SQLITE_READONLY_DBMOVED` → `SQLITE_READONLY`), or undefined for other errors. */
export function sqliteCode(err: unknown): string | undefined {
  if (!isSqliteError(err)) return undefined;
  const m = /^SQLITE_[A-Z]+/.exec(err.code);
  return m ? m[0] : err.code;
}

/**
 * Maps a failure while working on the database at `file` into the error vocabulary, naming the path:
 * SQLITE_FULL → HS_HOST_DISK_FULL; CANTOPEN/READONLY/PERM → HS_HOST_PERMISSION, HS_HOST_READ_ONLY or HS_HOST_NOT_FOUND
 * after looking at the path for the reason; BUSY → retryable HS_STORE; anything else from SQLite → HS_STORE.
 * HsErrors and errors that are not SQLite's or the host's pass through unchanged.
 */
export function sqliteError(err: unknown, file: string, doing: string): Error {
  if (err instanceof HsError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  const fail = (code: ErrorCode, why: string, retryable: boolean): HsError =>
    new HsError(code, `${file}: ${doing} failed: ${why}`, { cause: err, retryable });

  if (!isSqliteError(err)) {
    const errno = (err as NodeJS.ErrnoException | undefined)?.code;
    if (typeof errno === 'string' && /^E[A-Z]+$/.test(errno)) return errnoError(err, errno, file, doing);
    // better-sqlite3 checks the folder itself before SQLite sees the path.
    if (err instanceof TypeError && /directory does not exist/.test(detail)) return fail('HS_HOST_NOT_FOUND', `the folder ${path.dirname(file)} does not exist`, true);
    return err instanceof Error ? err : fail('HS_STORE', detail, false);
  }
  switch (sqliteCode(err)) {
    case 'SQLITE_FULL':
      return fail('HS_HOST_DISK_FULL', `no space left on the filesystem of ${path.dirname(file)} (${detail})`, true);
    case 'SQLITE_CANTOPEN':
    case 'SQLITE_READONLY':
    case 'SQLITE_PERM':
    case 'SQLITE_AUTH': {
      const found = probeAccess(file, doing.includes('read-only') ? 'read' : 'write');
      if (found) return errnoError(err, found.errno, file, doing, found.path);
      return fail(sqliteCode(err) === 'SQLITE_CANTOPEN' ? 'HS_STORE' : 'HS_HOST_PERMISSION', detail, false);
    }
    case 'SQLITE_IOERR':
      if (noSpaceLeft(file)) return fail('HS_HOST_DISK_FULL', `no space left on the filesystem of ${path.dirname(file)} (${detail})`, true);
      return fail('HS_HOST_IO', detail, true);
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return fail('HS_STORE', `the database is locked by another process (${detail})`, true);
    case 'SQLITE_CORRUPT':
    case 'SQLITE_NOTADB':
      return fail('HS_STORE', `not a valid database or damaged (${detail})`, false);
    default:
      return fail('HS_STORE', detail, false);
  }
}

const ERRNO: Record<string, { code: ErrorCode; why: string }> = {
  EACCES: { code: 'HS_HOST_PERMISSION', why: 'permission denied' },
  EPERM: { code: 'HS_HOST_PERMISSION', why: 'operation not permitted' },
  EROFS: { code: 'HS_HOST_READ_ONLY', why: 'read-only filesystem' },
  ENOSPC: { code: 'HS_HOST_DISK_FULL', why: 'no space left' },
  EDQUOT: { code: 'HS_HOST_DISK_FULL', why: 'disk quota exceeded' },
  ENOENT: { code: 'HS_HOST_NOT_FOUND', why: 'does not exist' },
  ENOTDIR: { code: 'HS_HOST_NOT_FOUND', why: 'a path component is not a folder' },
};

function errnoError(err: unknown, errno: string, file: string, doing: string, at?: string): HsError {
  const known = ERRNO[errno];
  const where = at ?? ((err as NodeJS.ErrnoException).path ?? file);
  const why = known ? `${known.why} (${errno} on ${where})` : `${errno} on ${where}`;
  return new HsError(known?.code ?? 'HS_HOST_IO', `${file}: ${doing} failed: ${why}`, { cause: err, retryable: true });
}

/** SQLite says only "unable to open"; the folder and the file say why. Runs on the failure path only. */
function probeAccess(file: string, need: 'read' | 'write'): { errno: string; path: string } | undefined {
  const dir = path.dirname(file);
  const checks: [string, number][] = [[dir, fs.constants.X_OK]];
  if (fs.existsSync(file)) checks.push([file, need === 'write' ? fs.constants.R_OK | fs.constants.W_OK : fs.constants.R_OK]);
  else if (need === 'read') checks.push([file, fs.constants.F_OK]);
  // The -wal and -shm files are created next to the database, by a reader too when the writer is gone.
  if (need === 'write' || !fs.existsSync(`${file}-shm`)) checks.push([dir, fs.constants.W_OK]);
  for (const [p, mode] of checks) {
    try {
      fs.accessSync(p, mode);
    } catch (e) {
      const errno = (e as NodeJS.ErrnoException).code;
      if (errno) return { errno, path: p };
    }
  }
  return undefined;
}

function noSpaceLeft(file: string): boolean {
  try {
    return fs.statfsSync(path.dirname(file)).bavail === 0;
  } catch {
    return false;
  }
}

/** A database's schema as ordered migrations: `steps[i]` takes `PRAGMA user_version` from i to i + 1. Never edit a shipped step. */
export interface Migrations {
  /** Who writes this database (`agent`, `controller`), for messages. */
  owner: string;
  steps: readonly string[];
}

export function schemaVersion(db: Database): number {
  return Number(db.pragma('user_version', { simple: true }));
}

/** Refuses a database from a newer version; a read-only caller also needs it fully migrated, since it cannot migrate. */
export function checkSchema(db: Database, file: string, m: Migrations, readonly: boolean): number {
  const found = schemaVersion(db);
  const latest = m.steps.length;
  if (found > latest) {
    throw new HsError('HS_STORE_MIGRATION', `${file} has schema version ${found}, written by a newer ${m.owner}; this ${m.owner} supports up to version ${latest}`);
  }
  if (readonly && found < latest) {
    throw new HsError('HS_STORE', `${file} has schema version ${found}; this ${m.owner} reads version ${latest}: start the ${m.owner} once (not read-only) to migrate it`);
  }
  return found;
}

/**
 * Runs the missing migrations, each in its own IMMEDIATE transaction: the write lock is taken before the version is read,
 * so two processes starting together run each step once, and a step that fails leaves the version where it was.
 */
export function migrate(db: Database, file: string, m: Migrations): void {
  checkSchema(db, file, m, false);
  for (;;) {
    const done = db.transaction(() => {
      const at = checkSchema(db, file, m, false);
      const sql = m.steps[at];
      if (sql === undefined) return true;
      db.exec(sql);
      db.pragma(`user_version = ${at + 1}`);
      return false;
    }).immediate();
    if (done) return;
  }
}

export interface CheckpointOptions {
  /** Checkpoint once no write happened for this long. */
  idleMs?: number;
  /** WAL size (pages) past which SQLite checkpoints inline after a commit anyway, bounding the WAL under a long storm. */
  maxWalPages?: number;
}

/**
 * Moves WAL checkpoints off the commit path. SQLite's automatic checkpoint runs inside whichever commit crosses
 * 1000 pages and fsyncs twice, milliseconds to tens of milliseconds on a busy disk, landing on a latency-sensitive
 * write every few hundred. Here it runs after a quiet spell instead; the automatic one remains as a far-off cap.
 */
export class IdleCheckpointer {
  private timer: NodeJS.Timeout | undefined;
  private readonly idleMs: number;

  constructor(
    private readonly db: Database,
    opts: CheckpointOptions = {},
  ) {
    this.idleMs = opts.idleMs ?? 200;
    db.pragma(`wal_autocheckpoint = ${Math.max(1, Math.floor(opts.maxWalPages ?? 4000))}`);
    // After a storm grew the WAL, shrink the file back once a checkpoint lets it restart.
    db.pragma(`journal_size_limit = ${8 * 1024 * 1024}`);
  }

  /** Call after a write; cheap (re-arms one timer). */
  touched(): void {
    if (this.timer) {
      this.timer.refresh();
      return;
    }
    this.timer = setTimeout(() => this.checkpoint(), this.idleMs);
    // Never keeps a one-shot command alive: closing the database checkpoints anyway.
    this.timer.unref();
  }

  checkpoint(): void {
    if (!this.db.open) return;
    try {
      // PASSIVE: copies what no reader still needs and never waits; a later quiet spell finishes the rest.
      this.db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // Busy or out of space: the next write re-arms the timer, and the inline cap still holds.
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
