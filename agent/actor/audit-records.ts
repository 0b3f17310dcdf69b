// Reading the Linux audit log: one line is one record (SYSCALL, CWD, PATH, EXECVE, PROCTITLE, ...); the records of one
// event share a serial and are grouped here into one event with its process, its paths and its arguments. Pure: no I/O.
import path from 'node:path';

export interface AuditRecord {
  type: string;
  /** ms since the epoch, as the kernel stamped the event (millisecond resolution). */
  time: number;
  serial: number;
  fields: Map<string, string>;
  /** The names auditd added in its ENRICHED format (after the \x1d separator): `UID` → `root`. */
  enriched: Map<string, string>;
}

export interface AuditPathItem {
  /** As the process wrote it: absolute, relative to its working directory or to a directory descriptor, or absent (fd calls). */
  name: string | undefined;
  inode: number | undefined;
  /** In Node's st_dev encoding, so it compares with fs.stat. */
  dev: number | undefined;
  /** PARENT (the directory holding the entry), CREATE, DELETE, NORMAL, UNKNOWN. */
  nametype: string;
}

export interface AuditEvent {
  time: number;
  serial: number;
  /** The rule key that selected it, `(null)` read as undefined. */
  key: string | undefined;
  syscall: string | undefined;
  success: boolean;
  pid: number | undefined;
  ppid: number | undefined;
  uid: number | undefined;
  user: string | undefined;
  /** The login uid; undefined when unset (4294967295). */
  auid: number | undefined;
  loginUser: string | undefined;
  exe: string | undefined;
  comm: string | undefined;
  cwd: string | undefined;
  /** Whether the syscall's first path argument was relative to the working directory (AT_FDCWD or a non-*at call). */
  cwdRelative: boolean;
  paths: AuditPathItem[];
  /** The full argument list from an EXECVE record, else the process title (the kernel cuts it at 128 bytes). */
  argv: string[] | undefined;
}

/** Fields whose values the kernel writes hex-encoded when they hold a space, a quote or a control character. */
const UNTRUSTED = new Set(['exe', 'comm', 'cwd', 'name', 'proctitle', 'key', 'path', 'new', 'old', 'data', 'cmd']);
const UNSET_ID = 4294967295;
/** `ffffff9c`: AT_FDCWD as a syscall argument. */
const AT_FDCWD = /^f*ff9c$/;
/** Calls whose paths are relative to a directory descriptor (a0, and a2 for the second path of the two-path ones). */
const AT_CALLS = new Set([
  'openat', 'openat2', 'fchmodat', 'fchmodat2', 'fchownat', 'unlinkat', 'mkdirat', 'mknodat', 'symlinkat', 'utimensat',
  'futimesat', 'execveat', 'renameat', 'renameat2', 'linkat',
]);
const TWO_DIRFDS = new Set(['renameat', 'renameat2', 'linkat']);
/** x86_64 numbers of those calls, for logs in auditd's RAW format, which does not name them. */
const X86_64_CALLS: Record<string, string> = {
  '257': 'openat', '258': 'mkdirat', '259': 'mknodat', '260': 'fchownat', '261': 'futimesat', '263': 'unlinkat',
  '264': 'renameat', '265': 'linkat', '266': 'symlinkat', '268': 'fchmodat', '280': 'utimensat', '316': 'renameat2',
  '322': 'execveat', '437': 'openat2', '452': 'fchmodat2', '2': 'open', '82': 'rename', '87': 'unlink', '90': 'chmod',
  '92': 'chown', '94': 'lchown', '76': 'truncate', '85': 'creat', '59': 'execve', '91': 'fchmod', '93': 'fchown',
};
/** Longest line accepted from the log: a record with many execve arguments is split by the kernel into several. */
export const MAX_RECORD_LINE = 64 * 1024;

const HEADER = /^type=([A-Z_0-9]+) msg=audit\((\d+)\.(\d{3}):(\d+)\): ?/;

/** One log line as a record, or undefined when it is not one. */
export function parseAuditLine(line: string): AuditRecord | undefined {
  if (line.length > MAX_RECORD_LINE) return undefined;
  const m = HEADER.exec(line);
  if (!m) return undefined;
  const sep = line.indexOf('\x1d', m[0].length);
  const body = sep === -1 ? line.slice(m[0].length) : line.slice(m[0].length, sep);
  return {
    type: m[1] as string,
    time: Number(m[2]) * 1000 + Number(m[3]),
    serial: Number(m[4]),
    fields: parseFields(body, m[1] === 'EXECVE' ? 'execve' : 'record'),
    enriched: sep === -1 ? new Map() : parseFields(line.slice(sep + 1), 'enriched'),
  };
}

/**
 * `a=1 b="x y" c=6869` → a map, with quoted values unquoted and hex-encoded untrusted strings decoded: named string fields,
 * and an EXECVE record's arguments (a SYSCALL record's a0..a3 are numbers).
 */
function parseFields(text: string, kind: 'record' | 'execve' | 'enriched'): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  const n = text.length;
  while (i < n) {
    while (i < n && text[i] === ' ') i++;
    const eq = text.indexOf('=', i);
    if (eq === -1) break;
    const key = text.slice(i, eq);
    let j = eq + 1;
    let value: string;
    const q = text[j];
    if (q === '"' || q === "'") {
      const end = text.indexOf(q, j + 1);
      const stop = end === -1 ? n : end;
      value = text.slice(j + 1, stop);
      j = stop + 1;
    } else {
      const end = text.indexOf(' ', j);
      const stop = end === -1 ? n : end;
      value = text.slice(j, stop);
      const untrusted = UNTRUSTED.has(key) || (kind === 'execve' && /^a\d+$/.test(key));
      if (kind !== 'enriched' && untrusted && value !== '(null)' && /^(?:[0-9A-F]{2})+$/.test(value)) {
        value = Buffer.from(value, 'hex').toString('utf8');
      }
      j = stop;
    }
    if (key !== '' && !key.includes(' ')) out.set(key, value);
    i = j;
  }
  return out;
}

function num(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}

/** `fe:00` (major:minor in hex) as Node's st_dev: glibc's makedev encoding. */
export function auditDev(v: string | undefined): number | undefined {
  const m = v === undefined ? null : /^([0-9a-f]+):([0-9a-f]+)$/i.exec(v);
  if (!m) return undefined;
  const major = parseInt(m[1] as string, 16);
  const minor = parseInt(m[2] as string, 16);
  return (minor & 0xff) + (major & 0xfff) * 256 + (minor & ~0xff) * 4096 + Math.floor(major / 4096) * 2 ** 32 * 4096;
}

/** One event from its records (the SYSCALL record first, as the kernel emits them). */
export function assembleEvent(records: readonly AuditRecord[]): AuditEvent | undefined {
  const sys = records.find((r) => r.type === 'SYSCALL');
  if (!sys) return undefined;
  const f = sys.fields;
  const cwd = records.find((r) => r.type === 'CWD')?.fields.get('cwd');
  const paths = records
    .filter((r) => r.type === 'PATH')
    .sort((a, b) => Number(a.fields.get('item') ?? 0) - Number(b.fields.get('item') ?? 0))
    .map((r) => {
      const name = r.fields.get('name');
      return {
        name: name === undefined || name === '(null)' ? undefined : name,
        inode: num(r.fields.get('inode')),
        dev: auditDev(r.fields.get('dev')),
        nametype: r.fields.get('nametype') ?? 'UNKNOWN',
      };
    });
  const execve = records.find((r) => r.type === 'EXECVE');
  const title = records.find((r) => r.type === 'PROCTITLE')?.fields.get('proctitle');
  let argv: string[] | undefined;
  if (execve) {
    const argc = num(execve.fields.get('argc')) ?? 0;
    argv = [];
    for (let i = 0; i < argc && i < 4096; i++) argv.push(execve.fields.get(`a${i}`) ?? '');
  } else if (title !== undefined) {
    argv = title.split('\0');
    if (argv.length > 1 && argv[argv.length - 1] === '') argv.pop();
  }
  const uid = num(f.get('uid'));
  const auid = num(f.get('auid'));
  const key = f.get('key');
  const number = f.get('syscall') ?? '';
  const syscall = sys.enriched.get('SYSCALL') ?? (f.get('arch') === 'c000003e' ? X86_64_CALLS[number] : undefined) ?? number;
  const atCall = AT_CALLS.has(syscall);
  return {
    time: sys.time,
    serial: sys.serial,
    key: key === undefined || key === '(null)' ? undefined : key,
    syscall,
    success: f.get('success') !== 'no',
    pid: num(f.get('pid')),
    ppid: num(f.get('ppid')),
    uid,
    user: sys.enriched.get('UID'),
    auid: auid === UNSET_ID ? undefined : auid,
    loginUser: auid === UNSET_ID ? undefined : sys.enriched.get('AUID'),
    exe: f.get('exe'),
    comm: f.get('comm'),
    cwd,
    // *at calls take a directory descriptor; AT_FDCWD means "relative to the working directory", as for the other calls.
    cwdRelative: !atCall || (AT_FDCWD.test(f.get('a0') ?? '') && (!TWO_DIRFDS.has(syscall) || AT_FDCWD.test(f.get('a2') ?? ''))),
    paths,
    argv,
  };
}

/**
 * The absolute paths an event names, from its PATH items other than PARENT ones: names as written when absolute, relative
 * names joined to the working directory when the call was relative to it, and to the absolute PARENT names given.
 */
export function eventPaths(e: AuditEvent): string[] {
  const out = new Set<string>();
  const parents = e.paths.filter((p) => p.nametype === 'PARENT' && p.name?.startsWith('/')).map((p) => p.name as string);
  for (const p of e.paths) {
    if (p.nametype === 'PARENT' || p.name === undefined) continue;
    if (p.name.startsWith('/')) {
      out.add(path.normalize(p.name));
      continue;
    }
    if (e.cwd !== undefined && e.cwd.startsWith('/') && e.cwdRelative) out.add(path.join(e.cwd, p.name));
    for (const dir of parents) out.add(path.join(dir, p.name));
  }
  return [...out];
}

/**
 * Groups records into events by serial. The kernel writes an event's records together, ending with PROCTITLE (or EOE),
 * but records of events on other CPUs may come in between; an event whose end never comes is completed after `maxAgeMs`
 * of log time, and at most `maxPending` are kept open.
 */
export class EventAssembler {
  private readonly pending = new Map<number, { first: number; records: AuditRecord[] }>();

  constructor(
    private readonly onEvent: (e: AuditEvent) => void,
    private readonly maxPending = 1024,
    private readonly maxAgeMs = 2000,
  ) {}

  push(r: AuditRecord): void {
    if (r.type === 'EOE' || r.type === 'PROCTITLE') {
      const open = this.pending.get(r.serial);
      this.pending.delete(r.serial);
      if (open) this.emit([...open.records, r]);
      else if (r.type === 'PROCTITLE') return; // its SYSCALL was never seen (dropped, or before we started reading)
      return;
    }
    const open = this.pending.get(r.serial);
    if (open) open.records.push(r);
    else {
      if (r.type !== 'SYSCALL') return; // records outside a syscall event (CONFIG_CHANGE, USER_*, ...) are not ours
      this.pending.set(r.serial, { first: r.time, records: [r] });
      if (this.pending.size > this.maxPending) this.flushOldest();
    }
    this.expire(r.time);
  }

  /** Completes what is left open, e.g. when the log is closed. */
  flush(): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) this.emit(p.records);
  }

  /** Completes events still open `maxAgeMs` after they began: their end was lost. */
  expire(now: number): void {
    for (const [serial, p] of this.pending) {
      if (now - p.first <= this.maxAgeMs) break; // insertion order is arrival order
      this.pending.delete(serial);
      this.emit(p.records);
    }
  }

  private flushOldest(): void {
    const first = this.pending.entries().next().value;
    if (!first) return;
    this.pending.delete(first[0]);
    this.emit(first[1].records);
  }

  private emit(records: AuditRecord[]): void {
    const e = assembleEvent(records);
    if (e) this.onEvent(e);
  }
}
