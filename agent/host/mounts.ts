// The mount table as this process sees it (/proc/self/mountinfo): which mountpoint holds a path, a watcher that says when
// the table changed, and the guard that keeps repairs off a filesystem that was not the managed path's own.
import { lstatSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { HsError, errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';

export interface MountEntry {
  /** Unique per mount while it exists: any mount or unmount changes the set of ids. */
  id: number;
  /** st_dev of the files on it (major:minor as glibc's makedev packs them). */
  dev: bigint;
  mountpoint: string;
  fstype: string;
  source: string;
}

/** glibc's makedev(): how st_dev packs major and minor. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

/**
 * mountinfo escapes space, tab, newline and backslash in paths as \ooo, and leaves other bytes as they are: the table is
 * read as latin1 (one character per byte), so the path is its bytes again, then read as UTF-8 like every path Node gives.
 */
function unescape(field: string): string {
  return Buffer.from(field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))), 'latin1').toString('utf8');
}

/** One line: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS`. */
function parseLine(line: string): MountEntry | undefined {
  const f = line.split(' ');
  const sep = f.indexOf('-', 6);
  const devField = /^(\d+):(\d+)$/.exec(f[2] ?? '');
  const id = Number(f[0]);
  const mountpoint = f[4];
  if (sep < 0 || !devField || !Number.isInteger(id) || mountpoint === undefined) return undefined;
  return { id, dev: makedev(Number(devField[1]), Number(devField[2])), mountpoint: unescape(mountpoint), fstype: f[sep + 1] ?? '', source: unescape(f[sep + 2] ?? '') };
}

export class MountTable {
  /** By mountpoint; of mounts stacked on one mountpoint, the last listed (the visible one). */
  private readonly byPoint = new Map<string, MountEntry>();

  constructor(readonly text: string) {
    for (const line of text.split('\n')) {
      const e = line === '' ? undefined : parseLine(line);
      if (e) this.byPoint.set(e.mountpoint, e);
    }
  }

  static read(): MountTable {
    return new MountTable(readFileSync('/proc/self/mountinfo', 'latin1'));
  }

  has(mountpoint: string): boolean {
    return this.byPoint.has(mountpoint);
  }

  get size(): number {
    return this.byPoint.size;
  }

  /** The mount whose filesystem holds `p`: the deepest mountpoint that is `p` or one of its ancestors. */
  covering(p: string): MountEntry | undefined {
    for (let q = path.resolve(p); ; q = path.dirname(q)) {
      const e = this.byPoint.get(q);
      if (e) return e;
      if (q === '/') return undefined;
    }
  }
}

let cached: { table: MountTable; at: number } | undefined;

/** The mount table, read again when the copy in hand is older than `maxAgeMs` (0: read now). */
export function mountTable(maxAgeMs: number): MountTable {
  const now = Date.now();
  if (!cached || now - cached.at > maxAgeMs || maxAgeMs === 0) cached = { table: MountTable.read(), at: now };
  return cached.table;
}

/** Bounds of the interval between two reads of the mount table by the watcher. */
export const MOUNT_POLL_MIN_MS = 1000;
export const MOUNT_POLL_MAX_MS = 60_000;
/** The interval is this many times what one read cost: the watching takes at most 1/5000 (0.02 %) of a core. */
const POLL_COST_FACTOR = 5000;

/** The watcher's interval after a read of the table that took `readMs`. */
export function mountPollIntervalMs(readMs: number): number {
  return Math.min(MOUNT_POLL_MAX_MS, Math.max(MOUNT_POLL_MIN_MS, Math.round(readMs * POLL_COST_FACTOR)));
}

/**
 * Says when the mount table changed. The kernel signals a change of /proc/self/mountinfo to poll() (POLLPRI), which Node
 * cannot wait for on a file, and inotify does not work on procfs. `findmnt --poll` can wait, but it reports only changes
 * of a (source, target) pair, so a tmpfs mounted over a tmpfs at the same place would go unseen. So the table is read
 * again and compared whole (each line starts with a mount id no other mount has, so any change shows), every second for
 * the usual few dozen mounts (a read costs ~40 µs), less often on hosts with thousands of mounts, where a read costs
 * milliseconds: the interval is scaled to the measured cost of a read (bench/README.md, "mount-watch").
 */
export class MountWatcher {
  private timer: NodeJS.Timeout | undefined;
  private last: string | undefined;
  private stopped = false;
  private failures = 0;
  /** What the last reads cost (ms): the cheapest of them stands for the table's size, the rest is noise (GC, load). */
  private costs: number[] = [];
  /** The interval now in use, for tests and the benchmark. */
  intervalMs = MOUNT_POLL_MIN_MS;

  constructor(
    private readonly onChange: () => void,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.stopped = false;
    // The first read pays for cold code and caches: it sets the reference, not the interval.
    this.last = this.read()?.text;
    this.costs = [];
    this.intervalMs = MOUNT_POLL_MIN_MS;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  private tick(): void {
    const table = this.read();
    if (table && table.text !== this.last) {
      const first = this.last === undefined;
      this.last = table.text;
      if (!first) {
        try {
          this.onChange();
        } catch (err) {
          this.log.error({ err: errorMessage(err) }, 'reacting to a mount table change failed');
        }
      }
    }
    this.schedule();
  }

  private read(): MountTable | undefined {
    const t0 = performance.now();
    try {
      const table = mountTable(0);
      this.failures = 0;
      this.costs = [...this.costs.slice(-4), performance.now() - t0];
      // At most twice as long each time, so one slow read cannot put the next one off for a minute.
      this.intervalMs = Math.min(this.intervalMs * 2, mountPollIntervalMs(Math.min(...this.costs)));
      return table;
    } catch (err) {
      // /proc unmounted or hidden: mounts are not followed until it is back; the resync still covers every path.
      if (this.failures++ === 0) this.log.warn({ err: errorMessage(err) }, 'cannot read the mount table; mount changes are noticed by the periodic resync only');
      this.intervalMs = MOUNT_POLL_MAX_MS;
      return undefined;
    }
  }
}

/** The device of `p`, or of its nearest ancestor that exists; undefined when it cannot be looked at. */
function nearestDev(p: string): bigint | undefined {
  for (let q = p; ; q = path.dirname(q)) {
    try {
      return lstatSync(q, { bigint: true }).dev;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || q === '/') return undefined;
    }
  }
}

/**
 * Where a managed path's parent directory lives: its filesystem (device) and the mountpoint that filesystem is mounted on,
 * learned when the path is seen compliant. A repair checks it first. When the parent is on another device now because
 * that mountpoint is no longer mounted, the path leads into the directory underneath, and a write there would land on the
 * wrong filesystem (and be hidden once it is mounted again): the repair is refused with HS_HOST_MOUNT_GONE until the
 * mountpoint is mounted again. A filesystem mounted again (or another one mounted on the way) is where the path leads
 * now: the repair goes ahead and the new filesystem is learned.
 */
export class MountHome {
  private known: { dev: bigint; mountpoint: string } | undefined;

  constructor(private readonly parent: string) {}

  /**
   * The home of the folder `parent`, shared by every managed path in it: what is learned is the folder's, and a host's
   * 10,000 managed files usually live in a few folders (one each would cost about 1.3 MB of heap).
   */
  static of(parent: string): MountHome {
    const home = homes.get(parent)?.deref();
    if (home) return home;
    const made = new MountHome(parent);
    homes.set(parent, new WeakRef(made));
    homesGone.register(made, parent);
    return made;
  }

  /** The parent directory seen with this device in a compliant observation. */
  learn(dev: bigint): void {
    if (this.known?.dev === dev) return;
    let m = mountTable(1000).covering(this.parent);
    // A table read before a recent mount names a mountpoint too high; a fresh one settles it. Some filesystems (btrfs
    // subvolumes) report another device than the table's for good: read at most every 50 ms for them, then go by path.
    if (m && m.dev !== dev) m = mountTable(50).covering(this.parent);
    this.known = { dev, mountpoint: m?.mountpoint ?? '/' };
  }

  /** The mountpoint learned, for messages and tests. */
  get mountpoint(): string | undefined {
    return this.known?.mountpoint;
  }

  /** Throws HS_HOST_MOUNT_GONE when the filesystem the parent was on is no longer mounted where it was. */
  check(resource: string): void {
    const k = this.known;
    if (!k || k.mountpoint === '/') return;
    const dev = nearestDev(this.parent);
    if (dev === undefined || dev === k.dev) return;
    const table = mountTable(0);
    if (!table.has(k.mountpoint)) {
      throw new HsError(
        'HS_HOST_MOUNT_GONE',
        `${k.mountpoint} is no longer mounted and ${this.parent} was on it: nothing is written to the filesystem underneath; the repair resumes once it is mounted again`,
        { resource, retryable: true },
      );
    }
    this.known = { dev, mountpoint: table.covering(this.parent)?.mountpoint ?? '/' };
  }
}

const homes = new Map<string, WeakRef<MountHome>>();
const homesGone = new FinalizationRegistry<string>((parent) => {
  if (homes.get(parent)?.deref() === undefined) homes.delete(parent);
});
