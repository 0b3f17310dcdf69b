// Baseline versions (immutable, one per distinct text of a name) and which version of each name is active, per source:
// `local` for the host's own files, `controller:KEYID` for each controller signing key. Numbers never cross sources.
import { HsError } from '../../lib/errors.js';
import type { Clock } from '../../lib/clock.js';
import type { Database, Statement } from '../../lib/sqlite.js';
import type { BaselineOrigin, NewBaseline, StoredBaseline } from './types.js';

interface BaselineRow {
  source: string;
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

/** Versions kept per name and source (besides the active one and the one before it). */
export const KEEP_VERSIONS = 10;

/** Where versions of `origin` are numbered: the host's own, or those of the controller holding signing key `signedBy`. */
export function sourceOf(origin: BaselineOrigin, signedBy: string | undefined | null): string {
  return origin === 'local' ? 'local' : `controller:${signedBy ?? ''}`;
}

const SELECT = `SELECT b.source, b.name, b.version, b.sha256, b.text, b.sources, b.origin, b.signature, b.signed_by, b.expires_at, b.stored_at,
  s.activated_at FROM baselines b LEFT JOIN baseline_state s ON s.source = b.source AND s.name = b.name AND s.active = b.version`;

function toStored(r: BaselineRow): StoredBaseline {
  return {
    source: r.source,
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
  private readonly byVersion: Statement<[string, string, number], BaselineRow>;
  private readonly bySha: Statement<[string, string, string], BaselineRow>;
  private readonly maxVersion: Statement<[string, string], number | null>;
  private readonly insert: Statement<[string, string, number, string, string, string, string, string | null, string | null, number | null, number]>;
  private readonly active: Statement<[], BaselineRow>;
  private readonly setActive: Statement<{ source: string; name: string; version: number; now: number }>;
  private readonly clearActive: Statement<[string, string]>;
  private readonly clearControllers: Statement<[]>;
  private readonly prune: Statement<{ source: string; name: string; keep: number }>;

  constructor(
    db: Database,
    private readonly clock: Clock,
  ) {
    this.byVersion = db.prepare(`${SELECT} WHERE b.source = ? AND b.name = ? AND b.version = ?`);
    this.bySha = db.prepare(`${SELECT} WHERE b.source = ? AND b.name = ? AND b.sha256 = ? ORDER BY b.version DESC LIMIT 1`);
    this.maxVersion = db.prepare<[string, string], number | null>('SELECT max(version) FROM baselines WHERE source = ? AND name = ?').pluck();
    this.insert = db.prepare(
      `INSERT INTO baselines (source, name, version, sha256, text, sources, origin, signature, signed_by, expires_at, stored_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.active = db.prepare(`${SELECT} JOIN baseline_state a ON a.source = b.source AND a.name = b.name AND a.active = b.version ORDER BY b.source, b.name`);
    // Activating the version already active changes nothing, so `previous` keeps naming the one before it.
    this.setActive = db.prepare(
      `INSERT INTO baseline_state (source, name, active, previous, activated_at) VALUES (@source, @name, @version, NULL, @now)
       ON CONFLICT (source, name) DO UPDATE SET previous = coalesce(active, previous), active = @version, activated_at = @now
       WHERE active IS NOT @version`,
    );
    this.clearActive = db.prepare(
      'UPDATE baseline_state SET previous = active, active = NULL, activated_at = NULL WHERE source = ? AND name = ? AND active IS NOT NULL',
    );
    // Old versions nothing points at go, the newest few stay: a host reloading a large baseline every few minutes
    // would otherwise keep every version it ever had.
    this.prune = db.prepare(
      `DELETE FROM baselines WHERE source = @source AND name = @name
         AND version < (SELECT min(version) FROM (SELECT version FROM baselines WHERE source = @source AND name = @name ORDER BY version DESC LIMIT @keep))
         AND version NOT IN (SELECT coalesce(active, 0) FROM baseline_state WHERE source = @source AND name = @name
                             UNION SELECT coalesce(previous, 0) FROM baseline_state WHERE source = @source AND name = @name)`,
    );
    this.clearControllers = db.prepare(
      "UPDATE baseline_state SET previous = active, active = NULL, activated_at = NULL WHERE substr(source, 1, 11) = 'controller:' AND active IS NOT NULL",
    );
  }

  /** Call inside a transaction (the lookup and the insert must see the same state). */
  put(b: NewBaseline): { version: number; isNew: boolean } {
    const source = sourceOf(b.origin, b.signedBy);
    if (b.version !== undefined) {
      if (!Number.isSafeInteger(b.version) || b.version < 1) throw new HsError('HS_STORE', `baseline ${b.name}: version must be a positive integer, got ${b.version}`);
      // The controller numbers versions: its number is the identity, even for a text stored before under another number.
      const existing = this.byVersion.get(source, b.name, b.version);
      if (existing) {
        if (existing.sha256 === b.sha256) return { version: existing.version, isNew: false };
        throw new HsError(
          'HS_CONFLICT',
          `baseline ${b.name} version ${b.version} from ${source} is already stored with different content (sha256 ${existing.sha256.slice(0, 12)}, not ${b.sha256.slice(0, 12)}): the same signing key numbered two texts alike`,
        );
      }
      this.store(source, b, b.version);
      return { version: b.version, isNew: true };
    }
    const same = this.bySha.get(source, b.name, b.sha256);
    if (same) return { version: same.version, isNew: false };
    const version = (this.maxVersion.get(source, b.name) ?? 0) + 1;
    this.store(source, b, version);
    return { version, isNew: true };
  }

  /** The version stored for this exact text, if any (a read: works on a full disk). */
  find(source: string, name: string, sha256: string): number | undefined {
    return this.bySha.get(source, name, sha256)?.version;
  }

  private store(source: string, b: NewBaseline, version: number): void {
    this.prune.run({ source, name: b.name, keep: KEEP_VERSIONS - 1 });
    this.insert.run(
      source,
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

  getActive(): StoredBaseline[] {
    return this.active.all().map(toStored);
  }

  /** Call inside a transaction. */
  activate(source: string, name: string, version: number): void {
    if (!this.byVersion.get(source, name, version)) throw new HsError('HS_NOT_FOUND', `baseline ${name} version ${version} from ${source} is not stored; store it before activating it`);
    this.setActive.run({ source, name, version, now: this.clock.now() });
  }

  deactivate(source: string, name: string): void {
    this.clearActive.run(source, name);
  }

  /** Deactivates what every controller assigned (a new controller's set replaces them all). */
  deactivateControllers(): void {
    this.clearControllers.run();
  }
}
