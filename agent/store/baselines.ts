// Baseline versions (immutable, one per distinct text of a name) and which version of each name is active.
import { HsError } from '../../lib/errors.js';
import type { Clock } from '../../lib/clock.js';
import type { Database, Statement } from '../../lib/sqlite.js';
import type { BaselineOrigin, NewBaseline, StoredBaseline } from './types.js';

interface BaselineRow {
  name: string;
  version: number;
  sha256: string;
  text: string;
  sources: string;
  origin: BaselineOrigin;
  signature: string | null;
  signed_by: string | null;
  expires_at: number | null;
  stored_at: number;
  activated_at: number | null;
}

interface StateRow {
  active: number | null;
  previous: number | null;
}

const SELECT = `SELECT b.name, b.version, b.sha256, b.text, b.sources, b.origin, b.signature, b.signed_by, b.expires_at, b.stored_at,
  s.activated_at FROM baselines b LEFT JOIN baseline_state s ON s.name = b.name AND s.active = b.version`;

function toStored(r: BaselineRow): StoredBaseline {
  return {
    name: r.name,
    version: r.version,
    sha256: r.sha256,
    text: r.text,
    sources: JSON.parse(r.sources) as Record<string, string>,
    origin: r.origin,
    signature: r.signature,
    signedBy: r.signed_by,
    expiresAt: r.expires_at,
    storedAt: r.stored_at,
    activatedAt: r.activated_at,
  };
}

export class Baselines {
  private readonly byVersion: Statement<[string, number], BaselineRow>;
  private readonly bySha: Statement<[string, string], BaselineRow>;
  private readonly maxVersion: Statement<[string], number | null>;
  private readonly insert: Statement<[string, number, string, string, string, string, string | null, string | null, number | null, number]>;
  private readonly versions: Statement<[string], BaselineRow>;
  private readonly active: Statement<[], BaselineRow>;
  private readonly state: Statement<[string], StateRow>;
  private readonly setActive: Statement<{ name: string; version: number; now: number }>;
  private readonly clearActive: Statement<[string]>;

  constructor(
    db: Database,
    private readonly clock: Clock,
  ) {
    this.byVersion = db.prepare(`${SELECT} WHERE b.name = ? AND b.version = ?`);
    this.bySha = db.prepare(`${SELECT} WHERE b.name = ? AND b.sha256 = ? ORDER BY b.version DESC LIMIT 1`);
    this.maxVersion = db.prepare<[string], number | null>('SELECT max(version) FROM baselines WHERE name = ?').pluck();
    this.insert = db.prepare(
      `INSERT INTO baselines (name, version, sha256, text, sources, origin, signature, signed_by, expires_at, stored_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.versions = db.prepare(`${SELECT} WHERE b.name = ? ORDER BY b.version`);
    this.active = db.prepare(`${SELECT} JOIN baseline_state a ON a.name = b.name AND a.active = b.version ORDER BY b.name`);
    this.state = db.prepare('SELECT active, previous FROM baseline_state WHERE name = ?');
    // Activating the version already active changes nothing, so `previous` keeps naming the one before it.
    this.setActive = db.prepare(
      `INSERT INTO baseline_state (name, active, previous, activated_at) VALUES (@name, @version, NULL, @now)
       ON CONFLICT (name) DO UPDATE SET previous = coalesce(active, previous), active = @version, activated_at = @now
       WHERE active IS NOT @version`,
    );
    this.clearActive = db.prepare(
      'UPDATE baseline_state SET previous = active, active = NULL, activated_at = NULL WHERE name = ? AND active IS NOT NULL',
    );
  }

  /** Call inside a transaction (the lookup and the insert must see the same state). */
  put(b: NewBaseline): { version: number; isNew: boolean } {
    if (b.version !== undefined) {
      if (!Number.isSafeInteger(b.version) || b.version < 1) throw new HsError('HS_STORE', `baseline ${b.name}: version must be a positive integer, got ${b.version}`);
      // The controller numbers versions: its number is the identity, even for a text stored before under another number.
      const existing = this.byVersion.get(b.name, b.version);
      if (existing) {
        if (existing.sha256 === b.sha256) return { version: existing.version, isNew: false };
        throw new HsError('HS_CONFLICT', `baseline ${b.name} version ${b.version} is already stored with different content (sha256 ${existing.sha256.slice(0, 12)}, not ${b.sha256.slice(0, 12)})`);
      }
      this.store(b, b.version);
      return { version: b.version, isNew: true };
    }
    const same = this.bySha.get(b.name, b.sha256);
    if (same) return { version: same.version, isNew: false };
    const version = (this.maxVersion.get(b.name) ?? 0) + 1;
    this.store(b, version);
    return { version, isNew: true };
  }

  private store(b: NewBaseline, version: number): void {
    this.insert.run(
      b.name,
      version,
      b.sha256,
      b.text,
      JSON.stringify(b.sources),
      b.origin,
      b.signature ?? null,
      b.signedBy ?? null,
      b.expiresAt ?? null,
      this.clock.now(),
    );
  }

  get(name: string, version: number): StoredBaseline | undefined {
    const row = this.byVersion.get(name, version);
    return row ? toStored(row) : undefined;
  }

  list(name: string): StoredBaseline[] {
    return this.versions.all(name).map(toStored);
  }

  getActive(): StoredBaseline[] {
    return this.active.all().map(toStored);
  }

  /** Call inside a transaction. */
  activate(name: string, version: number): void {
    if (!this.byVersion.get(name, version)) throw new HsError('HS_NOT_FOUND', `baseline ${name} version ${version} is not stored; store it before activating it`);
    this.setActive.run({ name, version, now: this.clock.now() });
  }

  deactivate(name: string): void {
    this.clearActive.run(name);
  }

  /** The version that was active before the current one (or before deactivation), for rolling back. */
  getPrevious(name: string): StoredBaseline | undefined {
    const s = this.state.get(name);
    return s?.previous == null ? undefined : this.get(name, s.previous);
  }
}
