// What /proc says about a process while it lives: its executable, arguments, parent, start time and systemd unit.
// Every read is bounded and may fail (the process exits at any moment); a failure is an absent answer, never an error.
import { closeSync, openSync, readFileSync, readlinkSync, readSync } from 'node:fs';

export interface ProcInfo {
  exe?: string;
  cmdline?: string;
  ppid?: number;
  /** When the process started, ms since the epoch (from its start in clock ticks after boot). */
  startedAt?: number;
  /** The systemd unit or session scope holding it. */
  unit?: string;
}

/** Enough of a command line to recognise it; the rest is cut. */
const MAX_CMDLINE = 4096;
/** Linux reports process start in clock ticks; USER_HZ is 100 on every architecture Linux runs on. */
const TICKS_PER_SECOND = 100;
/** Unit types that hold processes; slices only group them. */
const UNIT_SUFFIX = /\.(service|scope|socket|mount|swap)$/;

export class ProcReader {
  private bootTime: number | undefined;
  private readonly buf = Buffer.alloc(64 * 1024);

  constructor(private readonly root = '/proc') {}

  info(pid: number): ProcInfo {
    const out: ProcInfo = {};
    const exe = this.exe(pid);
    if (exe !== undefined) out.exe = exe;
    const cmdline = this.cmdline(pid);
    if (cmdline !== undefined) out.cmdline = cmdline;
    const stat = this.stat(pid);
    if (stat) {
      out.ppid = stat.ppid;
      const boot = this.boot();
      if (boot !== undefined) out.startedAt = boot + (stat.startTicks * 1000) / TICKS_PER_SECOND;
    }
    const unit = this.unit(pid);
    if (unit !== undefined) out.unit = unit;
    return out;
  }

  exe(pid: number): string | undefined {
    try {
      return readlinkSync(`${this.root}/${pid}/exe`).replace(/ \(deleted\)$/, '');
    } catch {
      return undefined;
    }
  }

  cmdline(pid: number): string | undefined {
    const raw = this.read(`${pid}/cmdline`);
    if (raw === undefined || raw === '') return undefined;
    const text = raw.replace(/\0+$/, '').split('\0').join(' ');
    return text.length > MAX_CMDLINE ? text.slice(0, MAX_CMDLINE) : text;
  }

  /** Parent and start time from /proc/PID/stat; the command name in it may hold spaces and parentheses, so fields are counted after the last ')'. */
  stat(pid: number): { ppid: number; startTicks: number; comm: string; state: string } | undefined {
    const raw = this.read(`${pid}/stat`);
    if (raw === undefined) return undefined;
    const close = raw.lastIndexOf(')');
    const fields = raw.slice(close + 2).split(' ');
    // after the name: state(0) ppid(1) ... starttime is field 22 of the whole line, index 19 here
    const ppid = Number(fields[1]);
    const startTicks = Number(fields[19]);
    if (!Number.isInteger(ppid) || !Number.isFinite(startTicks)) return undefined;
    return { ppid, startTicks, comm: raw.slice(raw.indexOf('(') + 1, close), state: fields[0] ?? '' };
  }

  /** The unit from the process's cgroup: the innermost path segment naming a service or scope (`run-u12.service`, `session-3.scope`). */
  unit(pid: number): string | undefined {
    const raw = this.read(`${pid}/cgroup`);
    return raw === undefined ? undefined : unitFromCgroup(raw);
  }

  /**
   * Executables of the ancestors of `ppid` upward, `ppid` itself first, at most `max`, ending at PID 1. With `startedBy`,
   * the walk stops at a process that began after that time: the pid was reused, and it is not the parent asked about.
   */
  parents(ppid: number | undefined, max = 16, startedBy?: number): string[] {
    const out: string[] = [];
    const seen = new Set<number>();
    let pid = ppid;
    while (pid !== undefined && pid > 0 && !seen.has(pid) && out.length < max) {
      seen.add(pid);
      const stat = this.stat(pid);
      const boot = this.boot();
      if (startedBy !== undefined && stat && boot !== undefined && boot + (stat.startTicks * 1000) / TICKS_PER_SECOND > startedBy) break;
      const exe = this.exe(pid);
      if (exe === undefined && stat === undefined) break; // gone
      // An exited parent not yet reaped (a zombie) has no executable left, only its command name.
      out.push(exe ?? (stat ? `${stat.comm} (pid ${pid}${stat.state === 'Z' ? ', exited' : ''})` : `pid ${pid}`));
      if (pid === 1) break;
      pid = stat?.ppid;
    }
    return out;
  }

  private boot(): number | undefined {
    if (this.bootTime !== undefined) return this.bootTime;
    let text = '';
    try {
      text = readFileSync(`${this.root}/stat`, 'utf8'); // the kernel's own file; its interrupt line can be long on large hosts
    } catch {
      return undefined;
    }
    const m = /^btime (\d+)$/m.exec(text);
    if (m) this.bootTime = Number(m[1]) * 1000;
    return this.bootTime;
  }

  /** At most 64 KiB of a procfs file: a process's arguments can be megabytes, and only their start is wanted. */
  private read(rel: string): string | undefined {
    let fd: number | undefined;
    try {
      fd = openSync(`${this.root}/${rel}`, 'r');
      const n = readSync(fd, this.buf, 0, this.buf.length, null);
      return this.buf.toString('utf8', 0, n);
    } catch {
      return undefined;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
}

/**
 * The unit in /proc/PID/cgroup text: the unified (`0::`) line, else the `name=systemd` one, read from the innermost segment
 * outward, so a process in a service's own sub-cgroup still names the service.
 */
export function unitFromCgroup(text: string): string | undefined {
  const lines = text.split('\n');
  const line = lines.find((l) => l.startsWith('0::')) ?? lines.find((l) => l.includes(':name=systemd:'));
  const candidates = [line, lines.find((l) => l.includes(':name=systemd:'))];
  for (const l of candidates) {
    if (l === undefined) continue;
    const segments = l.slice(l.indexOf(':', l.indexOf(':') + 1) + 1).split('/');
    for (let i = segments.length - 1; i >= 0; i--) {
      const s = segments[i] as string;
      if (UNIT_SUFFIX.test(s)) return s;
    }
  }
  return undefined;
}
