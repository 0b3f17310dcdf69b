// Careful filesystem operations for repairs: atomic replacement, no symlink following, metadata by descriptor.
import { closeSync, constants as C, fstatSync, lstatSync, openSync, promises as fsp, readFileSync, type BigIntStats } from 'node:fs';
import { randomBytes, createHash } from 'node:crypto';
import path from 'node:path';

const NOFOLLOW_READ = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;

/** lstat, synchronously: undefined for a missing path. Observation uses blocking calls: microseconds each, far below a promise round-trip. */
export function lstatSyncOrUndefined(p: string): BigIntStats | undefined {
  try {
    return lstatSync(p, { bigint: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

// Root may read without updating access times; nobody else may ask for it (EPERM).
const NOATIME = process.getuid?.() === 0 ? C.O_NOATIME : 0;

/**
 * Reads a regular file without following a symlink, synchronously; also returns the stats of the descriptor actually read
 * (the path may have been replaced since an earlier lstat). Undefined when the path is gone.
 */
export function readNoFollowSync(p: string): { content: Buffer; stat: BigIntStats } | undefined {
  let fd: number;
  try {
    fd = openSync(p, NOFOLLOW_READ | NOATIME);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
  try {
    const stat = fstatSync(fd, { bigint: true });
    return { content: stat.isFile() ? readFileSync(fd) : Buffer.alloc(0), stat };
  } finally {
    closeSync(fd);
  }
}

export function sha256(buf: Buffer | string): string {
  return createHash('sha256').update(buf).digest('hex');
}

export interface WriteSpec {
  content: Buffer;
  mode: number;
  uid: number;
  gid: number;
  /** Runs against the temporary file before it replaces the live one; throws to refuse. */
  validate?: (tmpPath: string) => Promise<void>;
}

/**
 * Replaces `target` atomically: a temporary file in the same directory, written, chowned, chmodded and fsynced,
 * then renamed over the target (rename never follows a symlink planted at the target: the link itself is replaced),
 * then the directory is fsynced so the rename survives a crash. A crash at any point leaves the old or the new file.
 */
export async function atomicWrite(target: string, spec: WriteSpec): Promise<BigIntStats> {
  const dir = path.dirname(target);
  await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
  const tmp = path.join(dir, `.${path.basename(target)}.homeostat-${randomBytes(6).toString('hex')}`);
  const fh = await fsp.open(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
  let renamed = false;
  try {
    await fh.writeFile(spec.content);
    await fh.chown(spec.uid, spec.gid);
    // chmod after chown: chown clears setuid/setgid bits.
    await fh.chmod(spec.mode);
    await fh.sync();
    if (spec.validate) await spec.validate(tmp);
    await fsp.rename(tmp, target);
    renamed = true;
    const stat = await fh.stat({ bigint: true });
    // The rename is atomic now; making it durable does not need to hold up the repair: a crash before the directory
    // reaches the disk leaves the old file, which is still whole.
    syncDirSoon(dir);
    return stat;
  } finally {
    await fh.close();
    if (!renamed) await fsp.unlink(tmp).catch(() => undefined);
  }
}

const pendingDirSyncs = new Set<string>();

/** fsyncs a directory in the background, once for any number of renames into it while one sync is pending. */
function syncDirSoon(dir: string): void {
  if (pendingDirSyncs.has(dir)) return;
  pendingDirSyncs.add(dir);
  setImmediate(() => {
    pendingDirSyncs.delete(dir);
    fsyncDir(dir).catch(() => undefined);
  });
}

export async function fsyncDir(dir: string): Promise<void> {
  const dh = await fsp.open(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/** Sets mode and ownership through a descriptor opened without following symlinks. */
export async function setMetadata(p: string, meta: { mode?: number; uid?: number; gid?: number }): Promise<BigIntStats> {
  const flags = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;
  const fh = await fsp.open(p, flags);
  try {
    if (meta.uid !== undefined || meta.gid !== undefined) await fh.chown(meta.uid ?? -1, meta.gid ?? -1);
    if (meta.mode !== undefined) await fh.chmod(meta.mode);
    return await fh.stat({ bigint: true });
  } finally {
    await fh.close();
  }
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
