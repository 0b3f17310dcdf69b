// The shared path watcher: one chokidar instance for the whole agent, fanning events out to the resources that manage each path.
import { watch, type FSWatcher } from 'chokidar';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../lib/log.js';

export interface FileWatchHub {
  /** Calls `onEvent` whenever anything may have changed at `path` (content, metadata, deletion, replacement, parent re-created). */
  watchPath(path: string, onEvent: (reason: string) => void): () => void;
}

const REARM_DELAY_MS = 20;

/**
 * Two lessons shape this hub. A watch on a file follows its inode, and every atomic replacement (ours included) gives the
 * path a new inode; so the hub watches each managed path's parent directory, whose inotify events name the child for
 * content, metadata, creation, deletion and rename, whatever inode the child has. And chokidar's normalised `change`
 * event skips metadata-only changes (chmod and chown leave mtime alone); so the hub listens to its `raw` events too.
 * An event only says which path to look at: the resource re-reads the whole state. Spurious events cost one stat against
 * the journal; a missed one would be a bug.
 */
export class ChokidarHub implements FileWatchHub {
  private watcher: FSWatcher | undefined;
  private readonly listeners = new Map<string, Set<(reason: string) => void>>();
  /** Watched parent directories, with how many managed paths each serves. */
  private readonly dirs = new Map<string, number>();
  /** Every directory on the way to a managed path, with how many managed paths lie below it. */
  private readonly ancestors = new Map<string, number>();
  private readonly rearmQueue = new Set<string>();
  private rearmTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly log: Logger,
    /** Called when the watcher reports an error it cannot attribute (e.g. out of inotify watches): the engine rescans everything. */
    private readonly onLost: (reason: string) => void,
  ) {}

  watchPath(p: string, onEvent: (reason: string) => void): () => void {
    const abs = path.resolve(p);
    let set = this.listeners.get(abs);
    if (!set) {
      set = new Set();
      this.listeners.set(abs, set);
      for (const dir of ancestorsOf(abs)) bump(this.ancestors, dir, 1);
      const parent = path.dirname(abs);
      if (bump(this.dirs, parent, 1) === 1) this.ensureWatcher().add(parent);
    }
    set.add(onEvent);
    return () => this.unwatchPath(abs, onEvent);
  }

  async close(): Promise<void> {
    if (this.rearmTimer) clearTimeout(this.rearmTimer);
    this.listeners.clear();
    await this.watcher?.close();
    this.watcher = undefined;
  }

  private unwatchPath(abs: string, onEvent: (reason: string) => void): void {
    const s = this.listeners.get(abs);
    if (!s?.delete(onEvent) || s.size > 0) return;
    this.listeners.delete(abs);
    for (const dir of ancestorsOf(abs)) bump(this.ancestors, dir, -1);
    const parent = path.dirname(abs);
    if (bump(this.dirs, parent, -1) === 0) this.watcher?.unwatch(parent);
  }

  private ensureWatcher(): FSWatcher {
    if (this.watcher) return this.watcher;
    const w = watch([], {
      persistent: true,
      ignoreInitial: true,
      followSymlinks: false,
      atomic: false,
      alwaysStat: false,
      depth: 0,
      // Only managed paths and the directories leading to them matter: other children of a watched directory get no watch.
      ignored: (p: string) => !this.relevant(path.resolve(p)),
    });
    w.on('all', (event: string, p: string) => this.dispatch(path.resolve(p), event));
    w.on('raw', (event: string, evPath: string, details: unknown) => {
      const watched = (details as { watchedPath?: unknown } | undefined)?.watchedPath;
      if (typeof watched !== 'string') return;
      const abs = path.resolve(watched);
      // A directory watch names the child; a file watch names the file itself.
      this.dispatch(abs, `raw:${event}`);
      if (evPath && !path.isAbsolute(evPath) && this.dirs.has(abs)) this.dispatch(path.join(abs, evPath), `raw:${event}`);
      // A watched directory that is gone takes its inotify watch with it: watch again once the dust settles.
      if (event === 'rename' && this.dirs.has(abs) && !existsSync(abs)) this.lost(abs, 'raw:rename');
    });
    w.on('error', (err: unknown) => {
      this.log.warn({ err }, 'file watch error, rescanning');
      this.onLost('watch_error');
    });
    this.watcher = w;
    return w;
  }

  private relevant(abs: string): boolean {
    return this.listeners.has(abs) || this.ancestors.has(abs);
  }

  private dispatch(abs: string, reason: string): void {
    const direct = this.listeners.get(abs);
    if (direct) for (const cb of direct) cb(reason);
    if ((reason === 'unlinkDir' || reason === 'unlink') && this.ancestors.has(abs)) this.lost(abs, reason);
  }

  /** A directory on the way to managed paths went away: look at everything below it and re-arm its watches. */
  private lost(dir: string, reason: string): void {
    const prefix = `${dir}/`;
    for (const [managed, cbs] of this.listeners) {
      if (!managed.startsWith(prefix)) continue;
      for (const cb of cbs) cb(reason);
      this.rearmQueue.add(path.dirname(managed));
    }
    if (this.rearmTimer || this.rearmQueue.size === 0) return;
    // Let the reconciles (which may re-create the directory) run first; then chokidar watches whatever exists now,
    // or the nearest existing ancestor until the directory comes back.
    this.rearmTimer = setTimeout(() => {
      this.rearmTimer = undefined;
      const dirs = [...this.rearmQueue].filter((d) => this.dirs.has(d));
      this.rearmQueue.clear();
      if (!this.watcher || dirs.length === 0) return;
      this.watcher.unwatch(dirs);
      this.watcher.add(dirs);
      // The re-arm may have raced with a change: look once more.
      for (const d of dirs) for (const [managed, cbs] of this.listeners) if (path.dirname(managed) === d) for (const cb of cbs) cb('rearm');
    }, REARM_DELAY_MS);
    this.rearmTimer.unref();
  }
}

function bump(m: Map<string, number>, key: string, by: number): number {
  const n = (m.get(key) ?? 0) + by;
  if (n > 0) m.set(key, n);
  else m.delete(key);
  return n;
}

function* ancestorsOf(abs: string): Generator<string> {
  let dir = path.dirname(abs);
  for (;;) {
    yield dir;
    const up = path.dirname(dir);
    if (up === dir) return;
    dir = up;
  }
}
