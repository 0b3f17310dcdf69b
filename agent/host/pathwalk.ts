// Managed paths resolved from / one component at a time, never through a symlink. Each directory is opened with
// O_DIRECTORY|O_NOFOLLOW relative to the one before, through /proc/self/fd/N/NAME (Node's stand-in for openat: the kernel
// jumps to the directory held as N and resolves only NAME), and every later read or change names its target relative to
// the descriptor held, so a parent swapped for a symlink between two steps cannot redirect anything the agent does.
import { closeSync, constants as C, existsSync, fstatSync, lstatSync, mkdirSync, openSync, readlinkSync, type BigIntStats } from 'node:fs';
import { HsError, hostError } from '../../lib/errors.js';

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;

/**
 * A directory held open, reached from / without following any symlink. Shared: the cache below holds one reference, and
 * everyone who got it from openParent holds one until close(); the descriptor closes with the last, so a repair still
 * using it can never see its number reused for another directory.
 */
export class HeldDir {
  private refs = 1;

  constructor(
    readonly fd: number,
    /** The path it was reached by, for messages and watches. */
    readonly path: string,
    readonly dev: bigint,
    readonly ino: bigint,
  ) {}

  /** A path naming `name` in this directory: the kernel resolves only `name`, relative to the descriptor. */
  at(name: string): string {
    return `/proc/self/fd/${this.fd}/${name}`;
  }

  /** The directory itself, e.g. to list it. */
  self(): string {
    return `/proc/self/fd/${this.fd}`;
  }

  stat(): BigIntStats {
    return fstatSync(this.fd, { bigint: true });
  }

  /**
   * Whether someone other than root may create, rename or remove entries here: then an entry may be a hard link to any
   * file of the same filesystem, or be swapped between two steps, and changes to an existing entry need more care.
   */
  writableByOthers(): boolean {
    const st = this.stat();
    const mode = Number(st.mode);
    return (st.uid !== 0n && (mode & 0o200) !== 0) || (st.gid !== 0n && (mode & 0o020) !== 0) || (mode & 0o002) !== 0;
  }

  retain(): HeldDir {
    this.refs++;
    return this;
  }

  close(): void {
    if (this.refs <= 0) return;
    this.refs--;
    if (this.refs === 0) closeSync(this.fd);
  }
}

function held(fd: number, path: string): HeldDir {
  try {
    const st = fstatSync(fd, { bigint: true });
    return new HeldDir(fd, path, st.dev, st.ino);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/**
 * Whether a directory walked to earlier is still the one at its path, without walking again: the kernel's own name for
 * the descriptor (it changes when a folder on the way is renamed or the directory is removed, so a folder swapped for a
 * symlink shows) is still that path, and an lstat of the path still finds that inode (nothing was mounted over it).
 */
function stillAt(d: HeldDir): boolean {
  try {
    if (readlinkSync(d.self()) !== d.path) return false;
    const st = lstatSync(d.path, { bigint: true });
    return st.dev === d.dev && st.ino === d.ino && st.isDirectory();
  } catch {
    return false;
  }
}

/** Parent directories kept open a short while: a walk is 5–10 syscalls per component, a check of a kept one two. */
const MAX_KEPT = 256;
/**
 * Kept directories unused this long are closed (checked as often), so a filesystem is held busy for `umount` at most about
 * a second after the agent last looked into it; bursts (start-up, resync, a storm of drift) are what the keeping is for.
 */
const KEEP_MS = 500;

class KeptDirs {
  private readonly dirs = new Map<string, { dir: HeldDir; usedAt: number }>();
  private timer: NodeJS.Timeout | undefined;

  get(path: string): HeldDir | undefined {
    const kept = this.dirs.get(path);
    if (!kept) return undefined;
    this.dirs.delete(path);
    if (!stillAt(kept.dir)) {
      kept.dir.close();
      return undefined;
    }
    this.dirs.set(path, { dir: kept.dir, usedAt: Date.now() }); // most recently used last
    return kept.dir.retain();
  }

  put(dir: HeldDir): void {
    const old = this.dirs.get(dir.path);
    if (old) {
      this.dirs.delete(dir.path);
      old.dir.close();
    }
    if (this.dirs.size >= MAX_KEPT) this.evict(this.dirs.keys().next().value as string);
    this.dirs.set(dir.path, { dir: dir.retain(), usedAt: Date.now() });
    if (!this.timer) {
      this.timer = setInterval(() => this.sweep(), KEEP_MS);
      this.timer.unref();
    }
  }

  private evict(path: string): void {
    this.dirs.get(path)?.dir.close();
    this.dirs.delete(path);
  }

  private sweep(): void {
    const before = Date.now() - KEEP_MS;
    for (const [path, kept] of this.dirs) if (kept.usedAt < before) this.evict(path);
    if (this.dirs.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}

const kept = new KeptDirs();
let rootDir: HeldDir | undefined;

/** A managed path split into its parent's components and its own name: `/etc/ssh/sshd_config` → [etc, ssh], sshd_config. */
export function splitManaged(p: string): { parents: string[]; name: string } {
  const parts = p.split('/').filter((s) => s !== '');
  const name = parts.pop();
  if (name === undefined || name === '.' || name === '..' || parts.includes('.') || parts.includes('..')) {
    throw new HsError('HS_HOST_IO', `${p} is not an absolute, normalised path`);
  }
  return { parents: parts, name };
}

export interface OpenParentOptions {
  /** Make missing directories on the way, with this mode, owned by the agent (root). */
  create?: { mode: number };
}

/**
 * Opens the directory that holds `p`. Undefined when a directory on the way does not exist (or is a file), unless `create`
 * makes it. Throws HS_HOST_UNSAFE_PATH naming the first component that is a symlink: it is not followed, whoever owns it.
 * The caller closes what it gets.
 */
export function openParent(p: string, resource: string, opts: OpenParentOptions = {}): HeldDir | undefined {
  const { parents } = splitManaged(p);
  const parentPath = `/${parents.join('/')}`;
  const hit = kept.get(parentPath);
  if (hit) return hit;
  if (!rootDir) {
    if (!existsSync('/proc/self/fd')) {
      throw new HsError('HS_HOST_IO', '/proc is not mounted: managed paths cannot be resolved without following symlinks', { resource, retryable: true });
    }
    rootDir = held(openSync('/', DIR_FLAGS), '/');
  }
  let dir = rootDir.retain();
  try {
    for (const name of parents) {
      const next = openChild(dir, name, resource, opts);
      dir.close();
      if (!next) return undefined;
      dir = next;
    }
  } catch (err) {
    dir.close();
    throw err;
  }
  if (dir !== rootDir) kept.put(dir);
  return dir;
}

function openChild(dir: HeldDir, name: string, resource: string, opts: OpenParentOptions): HeldDir | undefined {
  const childPath = dir.path === '/' ? `/${name}` : `${dir.path}/${name}`;
  // A few attempts: a directory made or replaced by someone else between two calls is opened by the same rules.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return held(openSync(dir.at(name), DIR_FLAGS), childPath);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        if (!opts.create) return undefined;
        try {
          mkdirSync(dir.at(name), { mode: opts.create.mode });
        } catch (mkErr) {
          // Made by someone else in between: open whatever is there now, by the same rules.
          if ((mkErr as NodeJS.ErrnoException).code !== 'EEXIST') throw hostError(mkErr, resource, `creating ${childPath}`);
        }
        continue;
      }
      // O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR, as it does on a file: lstat tells which.
      if (code === 'ENOTDIR' || code === 'ELOOP') {
        const st = lstatOrUndefined(dir.at(name));
        if (st?.isSymbolicLink()) throw symlinkComponent(dir, name, childPath, resource);
        if (st?.isDirectory()) continue; // replaced by a directory in between: try again
        if (opts.create) throw new HsError('HS_HOST_IO', `${childPath} is not a directory; a managed path goes through it`, { resource, retryable: true });
        return undefined;
      }
      throw hostError(err, resource, `opening ${childPath}`);
    }
  }
  throw new HsError('HS_HOST_IO', `${childPath} kept changing while it was opened`, { resource, retryable: true });
}

function symlinkComponent(dir: HeldDir, name: string, childPath: string, resource: string): HsError {
  let target: string | undefined;
  try {
    target = readlinkSync(dir.at(name));
  } catch {
    // gone again: the message names the component all the same
  }
  return symlinkComponentError(childPath, target, resource);
}

/** The refusal of a path with a symlink at `childPath` (pointing to `target`, when it could be read). */
export function symlinkComponentError(childPath: string, target: string | undefined, resource: string): HsError {
  const to = target ? ` (to ${target})` : '';
  return new HsError(
    'HS_HOST_UNSAFE_PATH',
    `${childPath} is a symlink${to}; managed paths are resolved without following symlinks in any component, so nothing below it is read or changed: remove the link, or write the path without it`,
    { resource, retryable: false },
  );
}

function lstatOrUndefined(p: string): BigIntStats | undefined {
  try {
    return lstatSync(p, { bigint: true });
  } catch {
    return undefined;
  }
}

/** Runs `fn` with the parent of `p` held open (undefined when it does not exist), and closes it afterwards. */
export function withParent<T>(p: string, resource: string, fn: (dir: HeldDir | undefined) => T): T {
  const dir = openParent(p, resource);
  try {
    return fn(dir);
  } finally {
    dir?.close();
  }
}
