// Observation of paths on filesystems that can hang (NFS, CIFS, FUSE, ...). A blocking system call on such a path stops
// the whole event loop when the server or the FUSE daemon stops answering, and then no deadline can fire. So these paths
// are read through libuv's thread pool instead, at most two at a time per filesystem, each within a deadline: a
// filesystem that does not answer in time is marked hung (a circuit breaker), and until the calls it holds return, every
// observation on it fails at once with HS_HOST_TIMEOUT instead of tying up more threads. Local filesystems keep the
// synchronous calls, which cost a third to a fifth of this (bench/README.md, "hung filesystems").
import { constants as C, close, fstat, lstat, open, read, readdir, readlink, type BigIntStats } from 'node:fs';
import { HsError } from '../../lib/errors.js';
import { mountTable, type MountEntry } from './mounts.js';
import { symlinkComponentError } from './pathwalk.js';

/** Filesystem types whose calls can block for as long as a server or a daemon takes (or forever). */
const HANGING_TYPES = /^(nfs4?|cifs|smb3?|smbfs|ncpfs|9p|afs|ceph|glusterfs|lustre|gpfs|beegfs|virtiofs|davfs|sshfs|fuse(\..*)?|fuseblk)$/;
/** How long one observation on such a filesystem may take before the filesystem counts as hung. */
export const FS_ANSWER_TIMEOUT_MS = 5000;
/** Observations in flight per filesystem: a hung one holds at most this many of the pool's threads. */
const PER_FILESYSTEM = 2;
const MOUNTS_RECHECK_MS = 2000;

export interface Mount {
  point: string;
  type: string;
}

/** Which managed paths are on a filesystem that can hang, by the mount table host/mounts.ts reads (and its watcher refreshes). */
class HangingMounts {
  /** The mount `p` is on when that filesystem can hang, else undefined (the fast synchronous path applies). */
  hanging(p: string): Mount | undefined {
    let m: MountEntry | undefined;
    try {
      m = mountTable(MOUNTS_RECHECK_MS).covering(p);
    } catch {
      return undefined; // no /proc: every path counts as local, as before the table could be read
    }
    return m && HANGING_TYPES.test(m.fstype) ? { point: m.mountpoint, type: m.fstype } : undefined;
  }
}

interface Lane {
  running: number;
  waiting: (() => void)[];
  /** Jobs given up on at their deadline and not returned yet: while any is out, the filesystem is hung. */
  givenUp: number;
  hungSince: number;
}

/** The breaker and the lanes, one per filesystem (mount point). */
class Guard {
  readonly mounts = new HangingMounts();
  private readonly lanes = new Map<string, Lane>();

  /** Runs `job` for `resource` on filesystem `m` within the deadline, or fails at once if `m` is hung. */
  async run<T>(m: Mount, resource: string, doing: string, job: () => Promise<T>): Promise<T> {
    const lane = this.lane(m.point);
    this.refuseIfHung(m, resource, doing);
    if (lane.running >= PER_FILESYSTEM) await new Promise<void>((r) => lane.waiting.push(r));
    this.refuseIfHung(m, resource, doing);
    lane.running++;
    const p = job();
    let timer: NodeJS.Timeout | undefined;
    let late = false;
    try {
      return await Promise.race([
        p,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            late = true;
            lane.givenUp++;
            if (lane.hungSince === 0) lane.hungSince = Date.now();
            // Whoever waits behind it is let go: each checks the breaker and fails at once.
            for (const w of lane.waiting.splice(0)) w();
            reject(this.hungError(lane, m, resource, doing));
          }, FS_ANSWER_TIMEOUT_MS);
          timer.unref();
        }),
      ]);
    } finally {
      clearTimeout(timer);
      const done = (): void => {
        lane.running--;
        if (late) {
          lane.givenUp--;
          if (lane.givenUp === 0) lane.hungSince = 0;
        }
        lane.waiting.shift()?.();
      };
      // A job given up on keeps its thread until the filesystem answers; only then is its place in the lane free.
      if (late) p.then(done, done);
      else done();
    }
  }

  private lane(point: string): Lane {
    let l = this.lanes.get(point);
    if (!l) {
      l = { running: 0, waiting: [], givenUp: 0, hungSince: 0 };
      this.lanes.set(point, l);
    }
    return l;
  }

  /** Throws HS_HOST_TIMEOUT while filesystem `m` is hung. */
  refuseIfHung(m: Mount, resource: string, doing: string): void {
    const lane = this.lanes.get(m.point);
    if (lane && lane.givenUp > 0) throw this.hungError(lane, m, resource, doing);
  }

  private hungError(lane: Lane, m: Mount, resource: string, doing: string): HsError {
    const s = Math.max(FS_ANSWER_TIMEOUT_MS, Date.now() - (lane.hungSince || Date.now())) / 1000;
    return new HsError('HS_HOST_TIMEOUT', `${doing}: the ${m.type} filesystem at ${m.point} has not answered for ${s.toFixed(0)} s; nothing on it is read or changed until it answers`, {
      resource,
      retryable: true,
    });
  }
}

export const fsGuard = new Guard();

// --- the calls, through the thread pool

const DIR_FLAGS = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
const NOFOLLOW_READ = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;

function call<T>(fn: (cb: (err: NodeJS.ErrnoException | null, v: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));
}

const at = (fd: number, name: string): string => `/proc/self/fd/${fd}/${name}`;
const missing = (err: unknown): boolean => ['ENOENT', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '');

export function closeFd(fd: number): Promise<void> {
  return call<void>((cb) => close(fd, (err) => cb(err, undefined))).catch(() => undefined);
}

export function lstatAsync(p: string): Promise<BigIntStats | undefined> {
  return call<BigIntStats>((cb) => lstat(p, { bigint: true }, cb)).catch((err: unknown) => {
    if (missing(err)) return undefined;
    throw err;
  });
}

/**
 * Opens the directory that holds `p`, component by component from /, following no symlink; undefined when missing. Its
 * device comes along, for the repair's check that the filesystem it was seen on is still mounted (host/mounts.ts).
 */
export async function openParentAsync(parents: string[], resource: string): Promise<{ fd: number; path: string; dev: bigint } | undefined> {
  let fd = await call<number>((cb) => open('/', DIR_FLAGS, cb));
  let path = '';
  try {
    for (const name of parents) {
      const child = `${path}/${name}`;
      let next: number;
      try {
        next = await call<number>((cb) => open(at(fd, name), DIR_FLAGS, cb));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return undefined;
        if (code === 'ENOTDIR' || code === 'ELOOP') {
          const st = await lstatAsync(at(fd, name));
          if (st?.isSymbolicLink()) throw symlinkComponentError(child, await readlinkAsync(at(fd, name)), resource);
          return undefined;
        }
        throw err;
      }
      await closeFd(fd);
      fd = next;
      path = child;
    }
    const { dev } = await call<BigIntStats>((cb) => fstat(fd, { bigint: true }, cb));
    return { fd, path: path || '/', dev };
  } catch (err) {
    await closeFd(fd);
    throw err;
  }
}

export function readlinkAsync(p: string): Promise<string | undefined> {
  return call<string>((cb) => readlink(p, cb)).catch(() => undefined);
}

export function readdirAsync(dirFd: number): Promise<string[]> {
  return call<string[]>((cb) => readdir(`/proc/self/fd/${dirFd}`, cb));
}

/** Reads `name` in the directory `dirFd` without following a symlink: content and the stats of what was read. */
export async function readAtAsync(dirFd: number, name: string, noatime: number): Promise<{ content: Buffer; stat: BigIntStats } | undefined> {
  let fd: number;
  try {
    fd = await call<number>((cb) => open(at(dirFd, name), NOFOLLOW_READ | noatime, cb));
  } catch (err) {
    if (missing(err)) return undefined;
    throw err;
  }
  try {
    const stat = await call<BigIntStats>((cb) => fstat(fd, { bigint: true }, cb));
    if (!stat.isFile()) return { content: Buffer.alloc(0), stat };
    const chunks: Buffer[] = [];
    for (;;) {
      const buf = Buffer.allocUnsafe(64 * 1024);
      const n = await call<number>((cb) => read(fd, buf, 0, buf.length, null, cb));
      if (n === 0) break;
      chunks.push(n === buf.length ? buf : buf.subarray(0, n));
    }
    return { content: Buffer.concat(chunks), stat };
  } finally {
    await closeFd(fd);
  }
}
