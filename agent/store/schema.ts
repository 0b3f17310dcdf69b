// The agent database's schema as ordered migrations; `PRAGMA user_version` records how many have run.
import type { Migrations } from '../../lib/sqlite.js';

/**
 * Append a migration to change the schema; never edit one that shipped.
 * 1: baselines, audit log (interned strings, shared state documents), outbox cursor, journal, backups, meta, exceptions.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;

  CREATE TABLE baselines (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version > 0),
    sha256 TEXT NOT NULL,
    text TEXT NOT NULL,
    sources TEXT NOT NULL,
    origin TEXT NOT NULL CHECK (origin IN ('local', 'controller')),
    signature TEXT,
    signed_by TEXT,
    expires_at INTEGER,
    stored_at INTEGER NOT NULL,
    UNIQUE (name, version)
  );
  CREATE INDEX baselines_sha256 ON baselines (name, sha256);
  CREATE TRIGGER baselines_immutable BEFORE UPDATE ON baselines
    BEGIN SELECT RAISE(ABORT, 'baseline versions are immutable'); END;

  -- One row per baseline name ever activated; active is NULL once deactivated, previous is kept for rollback.
  CREATE TABLE baseline_state (
    name TEXT PRIMARY KEY,
    active INTEGER,
    previous INTEGER,
    activated_at INTEGER,
    FOREIGN KEY (name, active) REFERENCES baselines (name, version),
    FOREIGN KEY (name, previous) REFERENCES baselines (name, version)
  ) WITHOUT ROWID;

  -- Audit rows refer to repeated texts (resource ids, events, triggers, baseline names) and to state documents
  -- (observed/desired summaries, mostly repeats) by id, which keeps a million records within the offline budget.
  CREATE TABLE strings (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
  CREATE TABLE docs (id INTEGER PRIMARY KEY, json TEXT NOT NULL);

  CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    resource_id INTEGER REFERENCES strings (id),
    event_id INTEGER NOT NULL REFERENCES strings (id),
    trigger_id INTEGER REFERENCES strings (id),
    baseline_id INTEGER REFERENCES strings (id),
    version INTEGER,
    observed_id INTEGER REFERENCES docs (id),
    desired_id INTEGER REFERENCES docs (id),
    diff TEXT,
    detail TEXT,
    hash BLOB NOT NULL
  );
  CREATE INDEX audit_time ON audit (time);
  CREATE INDEX audit_resource ON audit (resource_id) WHERE resource_id IS NOT NULL;

  -- Append-only: changing history takes dropping these first, and the hash chain still shows it.
  CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  CREATE TRIGGER strings_no_update BEFORE UPDATE ON strings BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  CREATE TRIGGER strings_no_delete BEFORE DELETE ON strings BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  CREATE TRIGGER docs_no_update BEFORE UPDATE ON docs BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  CREATE TRIGGER docs_no_delete BEFORE DELETE ON docs BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

  -- The outbox is the audit log past a cursor: audit records with seq > acked wait for the controller.
  CREATE TABLE outbox (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    acked INTEGER NOT NULL,
    dropped INTEGER NOT NULL
  );
  INSERT INTO outbox (id, acked, dropped) VALUES (1, 0, 0);

  CREATE TABLE journal (
    path TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns TEXT NOT NULL,
    ctime_ns TEXT NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    sha256 TEXT
  ) WITHOUT ROWID;

  CREATE TABLE backups (
    id INTEGER PRIMARY KEY,
    resource TEXT NOT NULL,
    time INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    content BLOB
  );
  CREATE INDEX backups_resource ON backups (resource, id);

  CREATE TABLE exceptions (
    resource TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    reason TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
];

/** The schema version this agent writes and reads. */
export const SCHEMA_VERSION = MIGRATIONS.length;

export const AGENT_SCHEMA: Migrations = { owner: 'agent', steps: MIGRATIONS };
