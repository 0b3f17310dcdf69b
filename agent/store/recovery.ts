// When the cache cannot be used as it is. A damaged file (truncated, overwritten, a bad page) is moved aside next to
// itself, never deleted, and a new one is started with what can still be read from the old one; the baselines come back
// from the files on disk or the controller anyway. A state dir that cannot be written at all (full, read-only, not ours)
// leaves the daemon running with its cache in memory. Either way the host stays enforced, and what was lost is recorded.
import * as fs from 'node:fs';
import { errorMessage, HsError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { schemaVersion, type Database } from '../../lib/sqlite.js';
import type { AgentSettings } from '../settings.js';
import { AgentStore, isDamage, type AgentStoreOptions } from './store.js';
import type { AcceptedException, BaselineOrigin } from './types.js';

/** What could still be read from a damaged database. */
export interface Salvage {
  baselines: { origin: BaselineOrigin; signedBy: string | null; name: string; version: number; sha256: string; text: string; sources: Record<string, string> }[];
  meta: [string, string][];
  exceptions: AcceptedException[];
  /** The outbox cursor: records up to here had reached the controller. */
  acked: number;
  /** The highest seq the old log held, when it could be read. */
  lastSeq: number;
}

/** Reads what it can, table by table: a damaged page costs that table, not the others. */
export function salvage(db: Database): Salvage {
  const out: Salvage = { baselines: [], meta: [], exceptions: [], acked: 0, lastSeq: 0 };
  const tryRead = (fn: () => void): void => {
    try {
      fn();
    } catch {
      // that table is lost; the rest may not be
    }
  };
  let v = 0;
  tryRead(() => (v = schemaVersion(db)));
  tryRead(() => {
    const join = v >= 2 ? 's.source = b.source AND s.name = b.name' : 's.name = b.name';
    const rows = db
      .prepare(`SELECT b.origin, b.signed_by, b.name, b.version, b.sha256, b.text, b.sources FROM baselines b JOIN baseline_state s ON ${join} AND s.active = b.version`)
      .all() as { origin: BaselineOrigin; signed_by: string | null; name: string; version: number; sha256: string; text: string; sources: string }[];
    for (const r of rows) {
      tryRead(() => out.baselines.push({ origin: r.origin, signedBy: r.signed_by, name: r.name, version: r.version, sha256: r.sha256, text: r.text, sources: JSON.parse(r.sources) as Record<string, string> }));
    }
  });
  tryRead(() => {
    for (const r of db.prepare('SELECT key, value FROM meta').all() as { key: string; value: string }[]) if (!r.key.startsWith('daemon.')) out.meta.push([r.key, r.value]);
  });
  tryRead(() => {
    for (const r of db.prepare('SELECT resource, fingerprint, reason, expires_at FROM exceptions').all() as { resource: string; fingerprint: string; reason: string; expires_at: number }[]) {
      out.exceptions.push({ resource: r.resource, fingerprint: r.fingerprint, reason: r.reason, expiresAt: r.expires_at });
    }
  });
  tryRead(() => (out.acked = Number(db.prepare('SELECT acked FROM outbox WHERE id = 1').pluck().get() ?? 0)));
  tryRead(() => (out.lastSeq = Number(db.prepare('SELECT max(seq) FROM audit').pluck().get() ?? 0)));
  return out;
}

/** Puts salvaged rows into a new store; says what it put back. */
export function restore(store: AgentStore, saved: Salvage): string {
  let baselines = 0;
  for (const b of saved.baselines) {
    try {
      const signedBy = b.signedBy ?? undefined;
      store.putBaseline({ name: b.name, sha256: b.sha256, text: b.text, sources: b.sources, origin: b.origin, ...(b.origin === 'controller' ? { version: b.version } : {}), ...(signedBy ? { signedBy } : {}) });
      const version = b.origin === 'controller' ? b.version : (store.findVersion(b.origin, signedBy, b.name, b.sha256) ?? 0);
      if (version > 0) store.activate(b.origin, signedBy, b.name, version);
      baselines++;
    } catch {
      // that one comes back from the files or the controller
    }
  }
  let meta = 0;
  for (const [k, v] of saved.meta) {
    try {
      store.setMeta(k, v);
      meta++;
    } catch {
      // the link rebuilds its cache from the controller
    }
  }
  let exceptions = 0;
  for (const e of saved.exceptions) {
    try {
      store.putException(e);
      exceptions++;
    } catch {
      // the operator's answer is lost; the drift is judged again
    }
  }
  return `${baselines} active baseline(s), ${meta} cache entr${meta === 1 ? 'y' : 'ies'}, ${exceptions} accepted drift(s)`;
}

/** Moves `file` and its -wal and -shm aside as `file.damaged-TIME`; returns the new name of the database file. */
export function quarantine(file: string, now: number): string {
  const stamp = new Date(now).toISOString().replace(/[:.]/g, '-');
  const target = `${file}.damaged-${stamp}`;
  for (const suffix of ['', '-wal', '-shm']) {
    try {
      fs.renameSync(`${file}${suffix}`, `${target}${suffix}`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new HsError('HS_STORE', `cannot move the damaged ${file}${suffix} aside: ${errorMessage(err)}`, { cause: err });
    }
  }
  return target;
}

/** The store options the settings ask for. */
export function storeOptions(settings: AgentSettings, log?: Logger): AgentStoreOptions {
  return { ...(settings.outboxLimit !== undefined ? { outboxLimit: settings.outboxLimit } : {}), ...(log ? { log } : {}) };
}

/**
 * The daemon's store: checked whole at start; a damaged one is moved aside and rebuilt; one that cannot be written at all
 * is replaced by a cache in memory. `recovered` says what happened, for the `store_recovered` record.
 */
export function openDaemonStore(settings: AgentSettings, log: Logger): { store: AgentStore; recovered: string | undefined } {
  const opts = storeOptions(settings, log);
  try {
    return { store: AgentStore.open(settings.stateDir, { ...opts, checkIntegrity: true }), recovered: undefined };
  } catch (err) {
    if (err instanceof HsError && err.code === 'HS_STORE_MIGRATION') throw err;
    if (isDamage(err)) {
      log.error({ err: errorMessage(err) }, 'the cache is damaged: moving it aside and rebuilding it');
      try {
        const { store, description } = AgentStore.rebuild(settings.stateDir, opts, errorMessage(err));
        return { store, recovered: description };
      } catch (again) {
        err = again;
      }
    }
    log.error({ err: errorMessage(err) }, 'the state dir cannot be used: enforcing with the cache in memory only');
    return {
      store: AgentStore.inMemory(opts),
      recovered: `the cache in ${settings.stateDir} cannot be used (${errorMessage(err)}): records are kept in memory until the agent restarts`,
    };
  }
}
