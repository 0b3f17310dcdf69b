// The agent database's schema as ordered migrations; `PRAGMA user_version` records how many have run.
import type { Migrations } from '../../lib/sqlite.js';

/**
 * Append a migration to change the schema; never edit one that shipped.
 * 1: baselines, audit log (interned strings, shared state documents), outbox cursor, journal, backups, meta, exceptions.
 * 2: baseline versions kept per source (`local`, or `controller:KEYID` for each controller signing key), so a controller's
 *    numbers never collide with the host's own or another controller's; backups name the audit record of their repair;
 *    audit retention: records (and state documents) below a floor that only moves forward may be deleted.
 * 3: audit records of decisions carry who made the drift (actor), the decision with the rule that made it, the changed
 *    field kinds and the resource's risk.
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
  `
  CREATE TABLE baselines_by_source (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
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
    UNIQUE (source, name, version)
  );
  -- Controller versions stored before sources existed name no key: they stay together under 'controller:'.
  INSERT INTO baselines_by_source (id, source, name, version, sha256, text, sources, origin, signature, signed_by, expires_at, stored_at)
    SELECT id, CASE origin WHEN 'local' THEN 'local' ELSE 'controller:' || coalesce(signed_by, '') END,
      name, version, sha256, text, sources, origin, signature, signed_by, expires_at, stored_at FROM baselines;

  CREATE TABLE baseline_state_by_source (
    source TEXT NOT NULL,
    name TEXT NOT NULL,
    active INTEGER,
    previous INTEGER,
    activated_at INTEGER,
    PRIMARY KEY (source, name),
    FOREIGN KEY (source, name, active) REFERENCES baselines_by_source (source, name, version),
    FOREIGN KEY (source, name, previous) REFERENCES baselines_by_source (source, name, version)
  ) WITHOUT ROWID;
  INSERT INTO baseline_state_by_source (source, name, active, previous, activated_at)
    SELECT b.source, s.name, s.active,
      (SELECT p.version FROM baselines_by_source p WHERE p.source = b.source AND p.name = s.name AND p.version = s.previous),
      s.activated_at
    FROM baseline_state s JOIN baselines_by_source b ON b.name = s.name AND b.version = coalesce(s.active, s.previous);

  DROP TABLE baseline_state;
  DROP TABLE baselines;
  ALTER TABLE baselines_by_source RENAME TO baselines;
  ALTER TABLE baseline_state_by_source RENAME TO baseline_state;
  CREATE INDEX baselines_sha256 ON baselines (source, name, sha256);
  CREATE TRIGGER baselines_immutable BEFORE UPDATE ON baselines
    BEGIN SELECT RAISE(ABORT, 'baseline versions are immutable'); END;

  ALTER TABLE backups ADD COLUMN seq INTEGER;
  CREATE INDEX backups_seq ON backups (seq) WHERE seq IS NOT NULL;

  -- Retention: records below first_seq (and documents below first_doc) are gone on purpose; prev_hash is the hash of the
  -- record before first_seq (NULL: the genesis hash), where verification starts. Both floors only move forward.
  CREATE TABLE audit_retention (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    first_seq INTEGER NOT NULL,
    prev_hash BLOB,
    first_doc INTEGER NOT NULL
  );
  INSERT INTO audit_retention (id, first_seq, prev_hash, first_doc) VALUES (1, 1, NULL, 0);
  CREATE TRIGGER audit_retention_forward BEFORE UPDATE ON audit_retention
    WHEN new.first_seq < old.first_seq OR new.first_doc < old.first_doc
    BEGIN SELECT RAISE(ABORT, 'audit retention only moves forward'); END;
  CREATE TRIGGER audit_retention_kept BEFORE DELETE ON audit_retention BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  DROP TRIGGER audit_no_delete;
  CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit WHEN old.seq >= (SELECT first_seq FROM audit_retention WHERE id = 1)
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  DROP TRIGGER docs_no_delete;
  CREATE TRIGGER docs_no_delete BEFORE DELETE ON docs WHEN old.id >= (SELECT first_doc FROM audit_retention WHERE id = 1)
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  `,
  `
  ALTER TABLE audit ADD COLUMN actor TEXT;
  ALTER TABLE audit ADD COLUMN decision TEXT;
  ALTER TABLE audit ADD COLUMN changes TEXT;
  ALTER TABLE audit ADD COLUMN risk TEXT;
  `,
];

/** The schema version this agent writes and reads. */
export const SCHEMA_VERSION = MIGRATIONS.length;

export const AGENT_SCHEMA: Migrations = { owner: 'agent', steps: MIGRATIONS };
