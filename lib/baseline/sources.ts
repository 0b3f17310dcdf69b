// `source:` files: which paths a baseline may name (relative, inside its own folder) and reading them without leaving it,
// so a baseline from elsewhere cannot make the machine that loads or pushes it read, say, /etc/shadow or admin.token.
import { closeSync, constants as C, existsSync, fstatSync, lstatSync, openSync, readSync } from 'node:fs';
import { resolve } from 'node:path';
import { HsError } from '../errors.js';

/** A source larger than this is refused: it travels inside the baseline to the controller and every agent. */
export const MAX_SOURCE_BYTES = 16 * 1024 * 1024;
const MAX_SOURCE_PATH = 4096;

/** Why `rel` may not be a `source:` path, or undefined when it may: relative, normalised, and never leaving the folder. */
export function sourcePathProblem(rel: string): string | undefined {
  if (rel === '') return 'source must not be empty';
  if (rel.length > MAX_SOURCE_PATH) return `source is longer than ${MAX_SOURCE_PATH} characters`;
  if (rel.includes('\0')) return 'source must not contain NUL';
  if (rel.startsWith('/')) {
    return `source "${rel}" is absolute; a source is relative to the baseline's folder and stays inside it, so copy the file next to the baseline`;
  }
  const segments = rel.split('/');
  if (segments.includes('..')) return `source "${rel}" leaves the baseline's folder (".."); a source stays inside the folder of its baseline`;
  if (segments.includes('.') || segments.includes('')) {
    const normal = segments.filter((s) => s !== '' && s !== '.').join('/');
    return `source "${rel}" is not normalised (no ".", "//" or trailing "/"); write ${normal === '' ? 'a file name' : normal}`;
  }
  return undefined;
}

const DIR_NOFOLLOW = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
const FILE_NOFOLLOW = C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK;

let procFd: boolean | undefined;
/** /proc/self/fd/N/NAME resolves NAME relative to descriptor N: Node's stand-in for openat(2). Linux always has it. */
function haveProcFd(): boolean {
  procFd ??= existsSync('/proc/self/fd');
  return procFd;
}

/**
 * Reads `rel` below the folder `dir` without following a symlink in any of its components (the folder itself is the
 * operator's to choose and may be reached through links). Throws HS_BASELINE_SOURCE naming the resolved path.
 */
export function readSourceBeneath(dir: string, rel: string): Buffer {
  const abs = resolve(dir, rel);
  const problem = sourcePathProblem(rel);
  if (problem) throw new HsError('HS_BASELINE_SOURCE', problem);
  const fail = (why: string, cause?: unknown): HsError =>
    new HsError('HS_BASELINE_SOURCE', `source "${rel}" cannot be read from ${abs}: ${why}`, cause === undefined ? {} : { cause });
  const segments = rel.split('/');
  let fd: number;
  try {
    fd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
  } catch (err) {
    throw fail(reason(err), err);
  }
  try {
    for (let i = 0; i < segments.length; i++) {
      const name = segments[i] as string;
      const last = i === segments.length - 1;
      const sofar = resolve(dir, segments.slice(0, i + 1).join('/'));
      const next = openBelow(fd, sofar, name, last ? FILE_NOFOLLOW : DIR_NOFOLLOW, (err) => {
        if (isSymlink(fd, sofar, name)) return fail(`${sofar} is a symlink; sources are read without following symlinks, so that a baseline cannot reach outside its folder`);
        return fail(reason(err), err);
      });
      closeSync(fd);
      fd = next;
    }
    const st = fstatSync(fd);
    if (!st.isFile()) throw fail(st.isDirectory() ? 'it is a directory' : 'it is not a regular file');
    if (st.size > MAX_SOURCE_BYTES) throw fail(`it is ${st.size} bytes; a source may hold at most ${MAX_SOURCE_BYTES}`);
    return readBounded(fd, MAX_SOURCE_BYTES, () => fail(`it grew past ${MAX_SOURCE_BYTES} bytes while being read`));
  } finally {
    closeSync(fd);
  }
}

function openBelow(dirFd: number, abs: string, name: string, flags: number, onError: (err: unknown) => HsError): number {
  try {
    // Without /proc (not Linux), each component was checked by lstat just before: enough on an operator's workstation,
    // where the danger is a hostile baseline's files, not a process racing the push.
    if (!haveProcFd()) {
      if (lstatSync(abs).isSymbolicLink()) throw Object.assign(new Error('symlink'), { code: 'ELOOP' });
      return openSync(abs, flags);
    }
    return openSync(`/proc/self/fd/${dirFd}/${name}`, flags);
  } catch (err) {
    throw onError(err);
  }
}

function isSymlink(dirFd: number, abs: string, name: string): boolean {
  try {
    return lstatSync(haveProcFd() ? `/proc/self/fd/${dirFd}/${name}` : abs).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Reads a descriptor to its end, refusing more than `max` bytes. */
function readBounded(fd: number, max: number, tooLarge: () => HsError): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const chunk = Buffer.allocUnsafe(Math.min(64 * 1024, max + 1 - total));
    const n = readSync(fd, chunk, 0, chunk.length, null);
    if (n === 0) break;
    total += n;
    if (total > max) throw tooLarge();
    chunks.push(n === chunk.length ? chunk : chunk.subarray(0, n));
  }
  return Buffer.concat(chunks, total);
}

/**
 * A source reader over files sent with a baseline (a push, a signed document, the agent's cache): only the map's own
 * entries count, so a path such as `__proto__` or `toString` is a file name like any other, never an inherited property.
 */
export function sourcesFromMap(files: Readonly<Record<string, Uint8Array | string>>, missing: (rel: string) => string): (rel: string) => Buffer {
  return (rel) => {
    const v = Object.hasOwn(files, rel) ? files[rel] : undefined;
    if (typeof v === 'string') return Buffer.from(v, 'base64');
    if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    throw new HsError('HS_BASELINE_SOURCE', missing(rel));
  };
}

function reason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  if (code === 'ENOTDIR') return 'a component on the way is not a directory';
  return err instanceof Error ? err.message : String(err);
}
