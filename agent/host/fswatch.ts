// The shared path watcher: one inotify watch per parent directory of managed paths, fanning events out to their resources.
import { watch, statSync, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { MountWatcher } from './mounts.js';

export interface FileWatchHub {
  /** Calls `onEvent` whenever anything may have changed at `path` (content, metadata, deletion, replacement, parent re-created). */
  watchPath(path: string, onEvent: (reason: string) => void): () => void;
}

/**
 * The reason given to listeners when the mount table changed and their directory is now another one (a filesystem mounted
 * over it or unmounted from under it): something that failed for want of that filesystem may succeed now.
 */
export const MOUNT_CHANGED = 'mount_changed';

interface DirWatch {
  watcher: FSWatcher;
  dev: bigint;
  ino: bigint;
}

/** What trying to watch a directory came to. */
type Opened = { ok: DirWatch } | { missing: true } | { refused: NodeJS.ErrnoException };

/** Seams for tests: called where a race with the filesystem can happen, so a test can make it happen there. */
export interface WatchHooks {
  /** `dir` was found missing, before its ancestors are looked at. */
  missing?(dir: string): void;
}

/** Rounds of looking for a missing directory's nearest ancestor before settling on the watch in hand. */
const MAX_ANCHOR_ROUNDS = 8;

/**
 * Why a directory watch per parent, and not a watch per file or a general-purpose watcher library:
 * - a watch on a file follows its inode, and every atomic replacement (ours included) gives the path a new inode; the
 *   parent directory's inotify events name the child for content (IN_MODIFY), metadata (IN_ATTRIB: chmod, chown),
 *   creation, deletion and rename, whatever inode the child has now;
 * - libraries that normalise events re-read the whole directory on each event and drop metadata-only changes, which
 *   costs milliseconds per event in a large directory and misses chmod; here an event costs one map lookup.
 * A parent that does not exist yet is waited for from its nearest existing ancestor; a watched directory that is deleted
 * or replaced is noticed by its own rename event and watched again; one that a mount covers or uncovers is noticed from
 * the mount table (host/mounts.ts) and watched again. An event only says which path to look at: the resource re-reads
 * the whole state. A spurious event costs a stat; a missed one would be a bug, and the engine's periodic resync is the
 * net under what inotify cannot see (a queue overflow, a write through a hard link elsewhere, a directory the agent may
 * not read).
 */
export class DirWatchHub implements FileWatchHub {
  private readonly listeners = new Map<string, Set<(reason: string) => void>>();
  /** Managed child names by parent directory. */
  private readonly children = new Map<string, Set<string>>();
  private readonly watches = new Map<string, DirWatch>();
  /** Existing ancestors watched on behalf of missing parent directories: ancestor → the missing directories. */
  private readonly anchors = new Map<string, { watch: DirWatch; waiting: Set<string> }>();
  /** Directories that cannot be watched (permission denied, out of watches), with the reason logged once each. */
  private readonly unwatchable = new Map<string, string>();
  private mounts: MountWatcher | undefined;
  private lostPending = false;
  private closed = false;

  constructor(
    private readonly log: Logger,
    /** Called when watching fails in a way that may have lost events (e.g. out of inotify watches): the engine rescans. */
    private readonly onLost: (reason: string) => void,
    private readonly hooks: WatchHooks = {},
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
    if (!this.mounts && !this.closed) {
      this.mounts = new MountWatcher(() => this.remount(), this.log);
      this.mounts.start();
    }
    return () => this.unwatchPath(abs, onEvent);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.mounts?.stop();
    for (const w of this.watches.values()) w.watcher.close();
    for (const a of this.anchors.values()) a.watch.watcher.close();
    this.watches.clear();
    this.anchors.clear();
    this.listeners.clear();
    this.children.clear();
    this.unwatchable.clear();
  }

  /** Directories watched, and those waited for from an ancestor: for tests. */
  state(): { watched: string[]; anchors: Record<string, string[]>; unwatchable: Record<string, string> } {
    return {
      watched: [...this.watches.keys()],
      anchors: Object.fromEntries([...this.anchors].map(([a, { waiting }]) => [a, [...waiting]])),
      unwatchable: Object.fromEntries(this.unwatchable),
    };
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
      this.unwatchable.delete(dir);
      this.watches.get(dir)?.watcher.close();
      this.watches.delete(dir);
      for (const [anchor, a] of this.anchors) {
        a.waiting.delete(dir);
        if (a.waiting.size === 0) this.dropAnchor(anchor);
      }
    }
  }

  /**
   * Watches `dir` if it exists; otherwise waits for it from its nearest existing ancestor. Never calls itself: a folder on
   * the way that appears meanwhile is looked for again in a bounded loop.
   */
  private arm(dir: string): void {
    if (this.closed || this.watches.has(dir)) return;
    for (let round = 0; round < MAX_ANCHOR_ROUNDS; round++) {
      const opened = this.open(dir, (event, name) => this.onDirEvent(dir, event, name));
      if ('ok' in opened) {
        this.watches.set(dir, opened.ok);
        this.unwatchable.delete(dir);
        return;
      }
      if ('refused' in opened) return this.giveUp(dir, dir, opened.refused);
      this.hooks.missing?.(dir);
      const anchored = this.anchorFor(dir);
      if (!anchored) return;
      // The anchor's watch began after `next` (the folder below it on the way to `dir`) was found missing: if `next` was
      // made in between, neither saw it. Look again now that the anchor is armed; a creation after this look is an event.
      // An anchor armed earlier has seen (or will report) whatever was made since.
      if (!anchored.fresh || statDir(anchored.next) === undefined) return;
      if (round === MAX_ANCHOR_ROUNDS - 1) {
        // Folders on the way keep appearing and vanishing: keep this anchor, try again on a later turn of the event
        // loop (not from here), and let the resync look at the paths meanwhile.
        const anchor = anchored.anchor;
        setImmediate(() => this.replan(anchor));
        this.requestResync();
        return;
      }
      this.leaveAnchor(anchored.anchor, dir);
    }
  }

  /** Waits for missing `dir` from its nearest existing ancestor; undefined when no ancestor can be watched. */
  private anchorFor(dir: string): { anchor: string; next: string; fresh: boolean } | undefined {
    let next = dir;
    for (let up = path.dirname(dir); ; next = up, up = path.dirname(up)) {
      const existing = this.anchors.get(up);
      if (existing) {
        existing.waiting.add(dir);
        return { anchor: up, next, fresh: false };
      }
      // Any change under an anchor may bring a waiting directory (or the next folder on its way) into being: try again.
      const opened = this.open(up, () => this.replan(up));
      if ('ok' in opened) {
        this.anchors.set(up, { watch: opened.ok, waiting: new Set([dir]) });
        return { anchor: up, next, fresh: true };
      }
      if ('refused' in opened) {
        this.giveUp(dir, up, opened.refused);
        return undefined;
      }
      this.hooks.missing?.(up);
      if (up === path.dirname(up)) return undefined;
    }
  }

  private leaveAnchor(anchor: string, dir: string): void {
    const a = this.anchors.get(anchor);
    a?.waiting.delete(dir);
    if (a && a.waiting.size === 0) this.dropAnchor(anchor);
  }

  /**
   * `dir` cannot be watched because `at` (itself or an ancestor) refused: said once per directory, with the real cause.
   * The resource is still reconciled at start-up, by the periodic resync and after a mount change; nothing retries here,
   * which is what kept a permission error from looping.
   */
  private giveUp(dir: string, at: string, err: NodeJS.ErrnoException): void {
    const reason = err.code ?? 'error';
    if (this.unwatchable.get(dir) === reason) return;
    this.unwatchable.set(dir, reason);
    if (reason === 'ENOSPC') {
      // The inotify watch limit (fs.inotify.max_user_watches): events are lost for these paths until it is raised.
      this.log.error({ dir, err: err.message }, 'cannot watch directory: out of inotify watches (fs.inotify.max_user_watches); relying on the periodic resync');
      this.requestResync();
    } else {
      this.log.warn({ dir, at, code: reason, err: err.message }, 'cannot watch directory; relying on the periodic resync');
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

  /**
   * The mount table changed: a watched directory that is now another one (covered by a mount, or uncovered by an unmount)
   * is watched again and its paths looked at; anchors and unwatchable directories are tried again.
   */
  private remount(): void {
    if (this.closed) return;
    for (const [dir, w] of [...this.watches]) {
      const st = statDir(dir);
      if (st && st.dev === w.dev && st.ino === w.ino) continue;
      w.watcher.close();
      this.watches.delete(dir);
      this.arm(dir);
      this.notifyChildren(dir, MOUNT_CHANGED);
    }
    // A directory waited for may be on the filesystem that came or went (its anchor need not be): look at each.
    for (const [anchor, a] of [...this.anchors]) {
      const waiting = [...a.waiting];
      this.replan(anchor);
      for (const dir of waiting) this.notifyChildren(dir, MOUNT_CHANGED);
    }
    for (const dir of [...this.unwatchable.keys()]) {
      this.arm(dir); // said again only if the cause is another one now
      if (this.watches.has(dir)) this.notifyChildren(dir, MOUNT_CHANGED);
    }
  }

  private onDirEvent(dir: string, event: string, name: string | null): void {
    if (name !== null && this.children.get(dir)?.has(name)) {
      for (const cb of this.listeners.get(path.join(dir, name)) ?? []) cb(event);
    } else if (name === null) {
      this.notifyChildren(dir, event);
    }
    // The directory itself deleted, replaced or unmounted: its watch is dead (or watching the old inode). Watch again. A
    // self event carries the directory's own name; a re-created directory may even get the old inode number back, so
    // that name alone is reason enough to re-arm.
    if (event === 'rename') {
      const w = this.watches.get(dir);
      const st = statDir(dir);
      const self = name === path.basename(dir) && !this.children.get(dir)?.has(name);
      const moved = st === undefined || st.ino !== w?.ino || st.dev !== w.dev;
      if (w && (moved || self)) {
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

  /** One full resync for any number of lost watches in one turn of the event loop. */
  private requestResync(): void {
    if (this.lostPending) return;
    this.lostPending = true;
    setImmediate(() => {
      this.lostPending = false;
      if (!this.closed) this.onLost('watch_lost');
    });
  }

  private open(dir: string, onEvent: (event: string, name: string | null) => void): Opened {
    let st: { dev: bigint; ino: bigint } | undefined;
    try {
      st = statDir(dir, true);
    } catch (err) {
      return { refused: err as NodeJS.ErrnoException };
    }
    if (st === undefined) return { missing: true };
    let watcher: FSWatcher;
    try {
      watcher = watch(dir, { persistent: false }, (event, name) => onEvent(event, name === null ? null : String(name)));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return { missing: true };
      return { refused: err as NodeJS.ErrnoException };
    }
    watcher.on('error', (err: unknown) => {
      // Raised when the directory goes away under the watch, or the kernel refuses more watches.
      this.log.warn({ dir, err: errorMessage(err) }, 'directory watch lost');
      watcher.close();
      if (this.watches.get(dir)?.watcher === watcher) {
        this.watches.delete(dir);
        this.arm(dir);
        this.notifyChildren(dir, 'watch_error');
      } else if (this.anchors.get(dir)?.watch.watcher === watcher) {
        this.replan(dir);
      }
      this.requestResync();
    });
    return { ok: { watcher, dev: st.dev, ino: st.ino } };
  }
}

/**
 * Device and inode of a directory; undefined when there is none at `p` (missing, or not a directory). Other failures
 * (EACCES on a folder on the way) are not "missing": they throw when `strict`, and read as undefined otherwise.
 */
function statDir(p: string, strict = false): { dev: bigint; ino: bigint } | undefined {
  try {
    const st = statSync(p, { bigint: true });
    return st.isDirectory() ? { dev: st.dev, ino: st.ino } : undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!strict || code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}
