// Careful filesystem operations for repairs, each relative to a directory held open by pathwalk.ts: atomic replacement,
// no symlink followed, metadata changed through a descriptor, hard links refused where someone else could have made them.
import { closeSync, constants as C, fstatSync, fsync, lstatSync, mkdirSync, openSync, promises as fsp, readFileSync, readlinkSync, rmdirSync, unlinkSync, type BigIntStats } from 'node:fs';
import { hash } from 'node:crypto';
import { HsError } from '../../lib/errors.js';
import type { HeldDir } from './pathwalk.js';
import { tempNameFor } from './tempfiles.js';

const NOFOLLOW_READ = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;
// Root may read without updating access times; nobody else may ask for it (EPERM).
export const NOATIME = process.getuid?.() === 0 ? C.O_NOATIME : 0;

function missing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** lstat of `name` in `dir`: undefined when it does not exist. Observation uses blocking calls: microseconds each. */
export function lstatAt(dir: HeldDir, name: string): BigIntStats | undefined {
  try {
    return lstatSync(dir.at(name), { bigint: true });
  } catch (err) {
    if (missing(err)) return undefined;
    throw err;
  }
}

/**
 * Reads `name` in `dir` without following a symlink; also returns the stats of the descriptor actually read (taken
 * before the read, so a write during it shows as a later change). Undefined when it is gone.
 */
export function readAt(dir: HeldDir, name: string): { content: Buffer; stat: BigIntStats } | undefined {
  let fd: number;
  try {
    fd = openSync(dir.at(name), NOFOLLOW_READ | NOATIME);
  } catch (err) {
    if (missing(err)) return undefined;
    throw err;
  }
  try {
    const stat = fstatSync(fd, { bigint: true });
    return { content: stat.isFile() ? readFileSync(fd) : Buffer.alloc(0), stat };
  } finally {
    closeSync(fd);
  }
}

export function readlinkAt(dir: HeldDir, name: string): string | undefined {
  try {
    return readlinkSync(dir.at(name));
  } catch {
    return undefined;
  }
}

/** One-shot: no hash object left for the collector, which on a start-up pass over 10,000 files adds up. */
export function sha256(buf: Buffer | string): string {
  return hash('sha256', buf, 'hex');
}

export interface WriteSpec {
  content: Buffer;
  mode: number;
  uid: number;
  gid: number;
  /** Runs against the temporary file (by a path through the held directory) before it replaces the live one; throws to refuse. */
  validate?: (tmpPath: string) => Promise<void>;
}

/**
 * Replaces `name` in `dir` atomically: a temporary file next to it, created exclusively, written, chowned, chmodded and
 * fsynced through its own descriptor, then renamed over the target (rename never follows a symlink planted there: the
 * link itself is replaced); then the directory is fsynced so the rename survives a crash. A crash leaves the old or the
 * new file, and at worst a temporary file that the next start sweeps (see tempfiles.ts). Nothing is returned: what is
 * now at the path is for the next observation to read, never assumed.
 */
export async function atomicWriteAt(dir: HeldDir, name: string, spec: WriteSpec): Promise<void> {
  const tmp = tempNameFor(name);
  const fh = await fsp.open(dir.at(tmp), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
  let renamed = false;
  try {
    await fh.writeFile(spec.content);
    await fh.chown(spec.uid, spec.gid);
    // chmod after chown: chown clears setuid/setgid bits.
    await fh.chmod(spec.mode);
    await fh.sync();
    // The validator gets the path through the agent's own descriptor of the directory: whoever can rename the folders
    // on the way cannot make it read or touch another file.
    if (spec.validate) await spec.validate(`/proc/${process.pid}/fd/${dir.fd}/${tmp}`);
    await fsp.rename(dir.at(tmp), dir.at(name));
    renamed = true;
    // The rename is atomic now; making it durable does not need to hold up the repair: a crash before the directory
    // reaches the disk leaves the old file, which is still whole.
    syncDirSoon(dir);
  } finally {
    await fh.close();
    if (!renamed) await fsp.unlink(dir.at(tmp)).catch(() => undefined);
  }
}

const pendingDirSyncs = new Set<string>();

/** fsyncs a directory in the background, once for any number of renames into it while one sync is pending. */
function syncDirSoon(dir: HeldDir): void {
  if (pendingDirSyncs.has(dir.path)) return;
  // A descriptor of its own: the caller closes the one it holds when its repair is done.
  let fd: number;
  try {
    fd = openSync(dir.self(), C.O_RDONLY | C.O_DIRECTORY);
  } catch {
    return;
  }
  pendingDirSyncs.add(dir.path);
  setImmediate(() => {
    pendingDirSyncs.delete(dir.path);
    fsync(fd, () => closeSync(fd));
  });
}

export interface MetadataChange {
  mode?: number;
  uid?: number;
  gid?: number;
}

/**
 * Sets mode and ownership of `name` in `dir` through a descriptor opened without following a symlink. `check` sees the
 * stats of that very descriptor first and may refuse (throw) before anything changes.
 */
export async function setMetadataAt(dir: HeldDir, name: string, meta: MetadataChange, check?: (st: BigIntStats) => void): Promise<void> {
  const fh = await fsp.open(dir.at(name), NOFOLLOW_READ);
  try {
    check?.(await fh.stat({ bigint: true }));
    if (meta.uid !== undefined || meta.gid !== undefined) await fh.chown(meta.uid ?? -1, meta.gid ?? -1);
    if (meta.mode !== undefined) await fh.chmod(meta.mode);
  } finally {
    await fh.close();
  }
}

/**
 * Refuses to change the metadata of a regular file that has other hard links when the directory is writable by someone
 * other than root: they could have linked any file of the filesystem (/etc/shadow) there to have root chmod it.
 */
export function refuseForeignHardLink(dir: HeldDir, name: string, resource: string): (st: BigIntStats) => void {
  return (st) => {
    if (st.isFile() && st.nlink > 1n && dir.writableByOthers()) {
      throw new HsError(
        'HS_HOST_UNSAFE_PATH',
        `${dir.path}/${name} has ${st.nlink} hard links and ${dir.path} is writable by others than root: another link could be any file of this filesystem, so its mode and owner are not changed; remove the extra links`,
        { resource, retryable: false },
      );
    }
  };
}

export function unlinkAt(dir: HeldDir, name: string): void {
  unlinkSync(dir.at(name));
}

export function rmdirAt(dir: HeldDir, name: string): void {
  rmdirSync(dir.at(name));
}

export function mkdirAt(dir: HeldDir, name: string, mode: number): void {
  mkdirSync(dir.at(name), { mode });
}

export function fileType(st: BigIntStats): 'file' | 'directory' | 'symlink' | 'other' {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

export function permBits(st: BigIntStats): number {
  return Number(st.mode & 0o7777n);
}

export function octal(mode: number): string {
  return mode.toString(8).padStart(4, '0');
}
