// The shared path watcher: one inotify watch per parent directory of managed paths, fanning events out to their resources.
import { watch, statSync, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../lib/log.js';

export interface FileWatchHub {
  /** Calls `onEvent` whenever anything may have changed at `path` (content, metadata, deletion, replacement, parent re-created). */
  watchPath(path: string, onEvent: (reason: string) => void): () => void;
}

interface DirWatch {
  watcher: FSWatcher;
  ino: number;
}

/**
 * Why a directory watch per parent, and not a watch per file or a general-purpose watcher library:
 * - a watch on a file follows its inode, and every atomic replacement (ours included) gives the path a new inode; the
 *   parent directory's inotify events name the child for content (IN_MODIFY), metadata (IN_ATTRIB: chmod, chown),
 *   creation, deletion and rename, whatever inode the child has now;
 * - libraries that normalise events re-read the whole directory on each event and drop metadata-only changes, which
 *   costs milliseconds per event in a large directory and misses chmod; here an event costs one map lookup.
 * A parent that does not exist yet is waited for from its nearest existing ancestor; a watched directory that is deleted
 * or replaced is noticed by its own rename event and watched again. An event only says which path to look at: the
 * resource re-reads the whole state. A spurious event costs a stat; a missed one would be a bug, and the engine's
 * periodic resync is the net under what inotify cannot see (a queue overflow, a write through a hard link elsewhere).
 */
export class DirWatchHub implements FileWatchHub {
  private readonly listeners = new Map<string, Set<(reason: string) => void>>();
  /** Managed child names by parent directory. */
  private readonly children = new Map<string, Set<string>>();
  private readonly watches = new Map<string, DirWatch>();
  /** Existing ancestors watched on behalf of missing parent directories: ancestor → the missing directories. */
  private readonly anchors = new Map<string, { watch: DirWatch; waiting: Set<string> }>();
  private closed = false;

  constructor(
    private readonly log: Logger,
    /** Called when watching fails in a way that may have lost events (e.g. out of inotify watches): the engine rescans. */
    private readonly onLost: (reason: string) => void,
  ) {}

  watchPath(p: string, onEvent: (reason: string) => void): () => void {
    const abs = path.resolve(p);
    let set = this.listeners.get(abs);
    if (!set) {
      set = new Set();
      this.listeners.set(abs, set);
      const dir = path.dirname(abs);
      let names = this.children.get(dir);
      if (!names) {
        names = new Set();
        this.children.set(dir, names);
        this.arm(dir);
      }
      names.add(path.basename(abs));
    }
    set.add(onEvent);
    return () => this.unwatchPath(abs, onEvent);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.watches.values()) w.watcher.close();
    for (const a of this.anchors.values()) a.watch.watcher.close();
    this.watches.clear();
    this.anchors.clear();
    this.listeners.clear();
    this.children.clear();
  }

  private unwatchPath(abs: string, onEvent: (reason: string) => void): void {
    const s = this.listeners.get(abs);
    if (!s?.delete(onEvent) || s.size > 0) return;
    this.listeners.delete(abs);
    const dir = path.dirname(abs);
    const names = this.children.get(dir);
    names?.delete(path.basename(abs));
    if (names && names.size === 0) {
      this.children.delete(dir);
      this.watches.get(dir)?.watcher.close();
      this.watches.delete(dir);
      for (const [anchor, a] of this.anchors) {
        a.waiting.delete(dir);
        if (a.waiting.size === 0) this.dropAnchor(anchor);
      }
    }
  }

  /** Watches `dir` if it exists; otherwise waits for it from its nearest existing ancestor. */
  private arm(dir: string): void {
    if (this.closed || this.watches.has(dir)) return;
    const w = this.open(dir, (event, name) => this.onDirEvent(dir, event, name));
    if (w) {
      this.watches.set(dir, w);
      return;
    }
    for (let up = path.dirname(dir); ; up = path.dirname(up)) {
      const existing = this.anchors.get(up);
      if (existing) {
        existing.waiting.add(dir);
        return;
      }
      // Any change under an anchor may bring a waiting directory (or the next folder on its way) into being: try again.
      const aw = this.open(up, () => this.replan(up));
      if (aw) {
        this.anchors.set(up, { watch: aw, waiting: new Set([dir]) });
        // It may have appeared between the failed watch and this one.
        if (existsDir(dir)) this.replan(up);
        return;
      }
      if (up === path.dirname(up)) return;
    }
  }

  /** Something changed under an anchor: try again to watch each directory it waits for; what exists now is looked at. */
  private replan(anchor: string): void {
    const a = this.anchors.get(anchor);
    if (!a) return;
    this.dropAnchor(anchor);
    for (const dir of a.waiting) {
      this.arm(dir);
      if (this.watches.has(dir)) this.notifyChildren(dir, 'created');
    }
  }

  private dropAnchor(anchor: string): void {
    this.anchors.get(anchor)?.watch.watcher.close();
    this.anchors.delete(anchor);
  }

  private onDirEvent(dir: string, event: string, name: string | null): void {
    if (name !== null && this.children.get(dir)?.has(name)) {
      for (const cb of this.listeners.get(path.join(dir, name)) ?? []) cb(event);
    } else if (name === null) {
      this.notifyChildren(dir, event);
    }
    // The directory itself deleted or replaced: its watch is dead (or watching the old inode). Watch again. A self event
    // carries the directory's own name; a re-created directory may even get the old inode number back, so that name
    // alone is reason enough to re-arm.
    if (event === 'rename') {
      const w = this.watches.get(dir);
      const ino = inoOf(dir);
      const self = name === path.basename(dir) && !this.children.get(dir)?.has(name);
      if (w && (ino !== w.ino || self)) {
        w.watcher.close();
        this.watches.delete(dir);
        this.arm(dir);
        this.notifyChildren(dir, 'parent_replaced');
      }
    }
  }

  private notifyChildren(dir: string, reason: string): void {
    for (const name of this.children.get(dir) ?? []) for (const cb of this.listeners.get(path.join(dir, name)) ?? []) cb(reason);
  }

  private open(dir: string, onEvent: (event: string, name: string | null) => void): DirWatch | undefined {
    const ino = inoOf(dir);
    if (ino === undefined) return undefined;
    try {
      const watcher = watch(dir, { persistent: false }, (event, name) => onEvent(event, name === null ? null : String(name)));
      watcher.on('error', (err: unknown) => {
        // Raised when the directory goes away under the watch, or the kernel refuses more watches.
        this.log.warn({ dir, err: String(err) }, 'directory watch lost');
        watcher.close();
        if (this.watches.get(dir)?.watcher === watcher) {
          this.watches.delete(dir);
          this.arm(dir);
          this.notifyChildren(dir, 'watch_error');
        } else if (this.anchors.get(dir)?.watch.watcher === watcher) {
          this.replan(dir);
        }
        this.onLost('watch_error');
      });
      return { watcher, ino };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      // ENOSPC here means the inotify watch limit (fs.inotify.max_user_watches): the resync has to cover these paths.
      this.log.error({ dir, err: String(err) }, 'cannot watch directory; relying on the periodic resync');
      this.onLost('watch_limit');
      return undefined;
    }
  }
}

function inoOf(p: string): number | undefined {
  try {
    const st = statSync(p);
    return st.isDirectory() ? st.ino : undefined;
  } catch {
    return undefined;
  }
}

function existsDir(p: string): boolean {
  return inoOf(p) !== undefined;
}
