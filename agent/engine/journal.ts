// The path journal: what the agent last wrote or verified at each path, kept in memory and flushed to the store in batches.
// A flush that fails (disk full, damaged cache) keeps its entries for the next one: the journal only saves re-reading
// files at the next start, so losing it costs time, never correctness, and never ends the agent.
import type { BigIntStats } from 'node:fs';
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { PathJournal } from '../resources/resource.js';
import type { JournalEntry } from '../store/types.js';

export interface JournalBackend {
  loadJournal(): Map<string, JournalEntry>;
  putJournal(e: JournalEntry): void;
  deleteJournal(path: string): void;
  transaction<T>(fn: () => T): T;
}

const FLUSH_DELAY_MS = 1000;
/** After a failed flush, the next try waits this long (a full disk does not empty itself in a second). */
const RETRY_DELAY_MS = 10_000;

/**
 * What is remembered per path, compactly (10,000 of these on a large host): the stat fields that prove a file unchanged,
 * times as the numbers they are, and a hash string shared with every other entry of the same content.
 */
interface Remembered {
  dev: number;
  ino: number;
  size: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  mode: number;
  uid: number;
  gid: number;
  sha256: string | null;
}

export class Journal implements PathJournal {
  private readonly entries = new Map<string, Remembered>();
  private readonly dirty = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private failing = false;

  constructor(
    private readonly backend: JournalBackend | undefined,
    private readonly log?: Logger,
  ) {
    try {
      const hashes = new Map<string, string>();
      for (const [path, e] of backend?.loadJournal() ?? []) {
        let sha = e.sha256;
        if (sha !== null) {
          const same = hashes.get(sha);
          if (same === undefined) hashes.set(sha, sha);
          else sha = same;
        }
        this.entries.set(path, { dev: e.dev, ino: e.ino, size: e.size, mtimeNs: BigInt(e.mtimeNs), ctimeNs: BigInt(e.ctimeNs), mode: e.mode, uid: e.uid, gid: e.gid, sha256: sha });
      }
    } catch (err) {
      // Without it every file is read and hashed once more; nothing else depends on it.
      this.entries.clear();
      log?.warn({ err: errorMessage(err) }, 'path journal not loaded; files are read again');
    }
  }

  knownHash(path: string, st: BigIntStats): string | undefined {
    const e = this.entries.get(path);
    if (!e || e.sha256 === null) return undefined;
    const same = e.ino === Number(st.ino) && e.dev === Number(st.dev) && e.size === Number(st.size) && e.mtimeNs === st.mtimeNs && e.ctimeNs === st.ctimeNs;
    return same ? e.sha256 : undefined;
  }

  record(path: string, st: BigIntStats, sha256: string | null): void {
    this.entries.set(path, {
      dev: Number(st.dev),
      ino: Number(st.ino),
      size: Number(st.size),
      mtimeNs: st.mtimeNs,
      ctimeNs: st.ctimeNs,
      mode: Number(st.mode),
      uid: Number(st.uid),
      gid: Number(st.gid),
      sha256,
    });
    this.markDirty(path);
  }

  forget(path: string): void {
    if (this.entries.delete(path)) this.markDirty(path);
  }

  /** Writes pending changes now (also called at shutdown). */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const backend = this.backend;
    if (!backend || this.dirty.size === 0) return;
    const paths = [...this.dirty];
    this.dirty.clear();
    try {
      backend.transaction(() => {
        for (const p of paths) {
          const e = this.entries.get(p);
          if (e) backend.putJournal({ path: p, ...e, mtimeNs: e.mtimeNs.toString(), ctimeNs: e.ctimeNs.toString() });
          else backend.deleteJournal(p);
        }
      });
      if (this.failing) this.log?.info({ paths: paths.length }, 'path journal saved again');
      this.failing = false;
    } catch (err) {
      for (const p of paths) this.dirty.add(p);
      if (!this.failing) this.log?.error({ paths: paths.length, err: errorMessage(err) }, 'path journal not saved; trying again later');
      this.failing = true;
      this.arm(RETRY_DELAY_MS);
    }
  }

  private markDirty(path: string): void {
    if (!this.backend) return;
    this.dirty.add(path);
    // Batched: losing the last second of journal at a crash only costs a re-hash at the next start.
    this.arm(FLUSH_DELAY_MS);
  }

  private arm(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, ms);
    this.timer.unref();
  }
}
