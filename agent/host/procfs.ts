// Kernel parameters under /proc/sys: read through a kept-open descriptor (one pread per poll), written with one write().
import { closeSync, openSync, readSync, writeSync, constants as fsc } from 'node:fs';
import path from 'node:path';
import { HsError, hostError } from '../../lib/errors.js';

/** sysctl values are short; the longest common ones (e.g. net.ipv4.tcp_rmem, kernel.core_pattern) stay far below this. */
const READ_BUFFER_BYTES = 64 * 1024;

/** Letters, digits and the few marks real key parts use (interface names may carry `:`, `@`, `+`, and dots in the slash form). */
const PART = /^[A-Za-z0-9_\-:@+.]+$/;

/**
 * The key's path below the sysctl root, following sysctl(8): when the first separator is `/` the key is in path form and dots
 * are literal (`net/ipv4/conf/eth0.100/forwarding`); otherwise parts are joined by dots and a `/` inside a part stands for a
 * literal dot (`net.ipv4.conf.eth0/100.forwarding`). Anything that could climb out of the root (`..`, empty parts, odd
 * characters) is refused with undefined.
 */
export function sysctlRelativePath(key: string): string | undefined {
  const slash = key.indexOf('/');
  const dot = key.indexOf('.');
  const pathForm = slash !== -1 && (dot === -1 || slash < dot);
  const parts = pathForm ? key.split('/') : key.split('.').map((p) => p.replace(/\//g, '.'));
  for (const p of parts) {
    if (p === '' || p === '.' || p === '..' || !PART.test(p)) return undefined;
  }
  return parts.join('/');
}

/** Comparison form of a value: surrounding whitespace dropped, inner runs of spaces and tabs made one space. */
export function normalizeSysctlValue(value: string): string {
  return value.trim().split(/\s+/).filter(Boolean).join(' ');
}

/**
 * One sysctl key. Reads keep a descriptor open and pread from offset 0, which the kernel answers with the current value each
 * time: a poll costs one system call. Writes open the file anew so each starts at offset 0 in one write().
 */
export class SysctlFile {
  readonly key: string;
  readonly path: string;
  private fd: number | undefined;
  private readonly buf = Buffer.alloc(READ_BUFFER_BYTES);

  constructor(root: string, key: string) {
    const rel = sysctlRelativePath(key);
    if (rel === undefined) throw new HsError('HS_BASELINE_INVALID', `not a valid sysctl key: '${key}'`, { resource: `sysctl:${key}` });
    this.key = key;
    this.path = path.join(root, rel);
  }

  /** The raw value as the kernel prints it (trailing newline removed), or undefined when the key does not exist. */
  read(): string | undefined {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        if (this.fd === undefined) this.fd = openSync(this.path, fsc.O_RDONLY);
        const n = readSync(this.fd, this.buf, 0, this.buf.length, 0);
        return this.buf.toString('utf8', 0, n).replace(/\n$/, '');
      } catch (err) {
        this.closeFd();
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
        // A descriptor can go stale (its device removed and re-created); reopen once before giving up.
        if (attempt === 0 && (code === 'ENODEV' || code === 'EBADF' || code === 'ESTALE')) continue;
        throw readError(err, this.key);
      }
    }
    return undefined;
  }

  /** Writes `value` with one write() at offset 0. The caller verifies by reading back. */
  write(value: string): void {
    let fd: number | undefined;
    try {
      fd = openSync(this.path, fsc.O_WRONLY | fsc.O_TRUNC); // O_TRUNC as sysctl(8) does; a no-op on procfs, needed on plain files
      writeSync(fd, value.length === 0 ? '\n' : value, 0, 'utf8');
    } catch (err) {
      throw writeError(err, this.key, value);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  close(): void {
    this.closeFd();
  }

  private closeFd(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // nothing to release
    }
    this.fd = undefined;
  }
}

function readError(err: unknown, key: string): HsError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') {
    return new HsError('HS_HOST_PERMISSION', `cannot read sysctl ${key}: the key is not readable`, { cause: err, resource: `sysctl:${key}` });
  }
  return hostError(err, `sysctl:${key}`, `read sysctl ${key}`);
}

function writeError(err: unknown, key: string, value: string): HsError {
  const resource = `sysctl:${key}`;
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new HsError('HS_HOST_NOT_FOUND', `sysctl ${key} does not exist on this kernel`, { cause: err, resource, retryable: true });
    case 'EACCES':
      // /proc/sys honours the file mode even for root: 0444 keys are read-only.
      return new HsError('HS_HOST_PERMISSION', `sysctl ${key} is read-only; cannot set it to '${value}'`, { cause: err, resource });
    case 'EPERM':
      return new HsError('HS_HOST_PERMISSION', `not permitted to set sysctl ${key} to '${value}'`, { cause: err, resource });
    case 'EINVAL':
    case 'ERANGE':
    case 'EOVERFLOW':
      return new HsError('HS_HOST_IO', `the kernel refused '${value}' for sysctl ${key}`, { cause: err, resource });
    default:
      return hostError(err, resource, `write sysctl ${key}='${value}'`);
  }
}
