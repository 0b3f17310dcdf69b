// The Linux audit subsystem as a host adapter: whether auditd runs and writes a log the agent can read, and the watch rules
// the agent adds (each tagged with its key) and removes again, through auditctl. Nothing here throws for an absent or
// stopped auditd: callers get a state that says so.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Logger } from '../../lib/log.js';

export interface AuditdState {
  /** The kernel sends records to a daemon (auditctl -s shows its pid). */
  running: boolean;
  pid?: number;
  /** Where auditd writes (auditd.conf `log_file`), when it writes at all (`write_logs`). */
  logFile?: string;
  /** RAW, or ENRICHED (names resolved by auditd after a \x1d). */
  logFormat?: string;
  /** Why attribution cannot work, in words for people. */
  reason?: string;
}

export interface AuditdOptions {
  auditctl?: string;
  conf?: string;
  timeoutMs?: number;
}

const DEFAULT_AUDITCTL = '/usr/sbin/auditctl';
const DEFAULT_CONF = '/etc/audit/auditd.conf';

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: err && code === -1 ? `${String(stderr)}${err.message}` : String(stderr) });
    });
  });
}

/** Reads auditd's state: is a daemon registered with the kernel, and where does it log. */
export async function auditdState(opts: AuditdOptions = {}): Promise<AuditdState> {
  const r = await run(opts.auditctl ?? DEFAULT_AUDITCTL, ['-s'], opts.timeoutMs ?? 5000);
  if (r.code !== 0) return { running: false, reason: `auditctl -s failed: ${(r.stderr || r.stdout).trim() || `exit ${r.code}`}` };
  const pid = Number(/^pid (\d+)$/m.exec(r.stdout)?.[1] ?? 0);
  const enabled = /^enabled ([12])$/m.test(r.stdout);
  if (!enabled) return { running: false, reason: 'the kernel audit subsystem is disabled (auditctl -s: enabled 0)' };
  if (pid === 0) return { running: false, reason: 'auditd is not running (auditctl -s: pid 0)' };
  const conf = readConf(opts.conf ?? DEFAULT_CONF);
  const writeLogs = (conf.get('write_logs') ?? 'yes').toLowerCase() !== 'no';
  const state: AuditdState = { running: true, pid, logFormat: (conf.get('log_format') ?? 'ENRICHED').toUpperCase() };
  if (!writeLogs) return { ...state, reason: 'auditd does not write a log (write_logs = no)' };
  return { ...state, logFile: conf.get('log_file') ?? '/var/log/audit/audit.log' };
}

function readConf(file: string): Map<string, string> {
  const out = new Map<string, string>();
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const m = /^\s*([a-z_]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (m) out.set(m[1] as string, m[2] as string);
  }
  return out;
}

/** What a watch rule looks at: writes and attribute changes of a path (`wa`), or executions of a program (`x`). */
export interface WatchTarget {
  path: string;
  perms: 'wa' | 'x';
}

export interface WatchReport {
  /** Paths watched now. */
  watched: string[];
  /** Paths that could not be watched (a missing parent directory), with auditctl's words. */
  failed: { path: string; reason: string }[];
}

export interface AuditWatchOptions extends AuditdOptions {
  /** Tags every rule the agent adds, so exactly those can be found and removed: `homeostat`. */
  key: string;
  log: Logger;
}

/**
 * The agent's audit watch rules. `removeStale` first (rules a crashed run left behind carry the same key), then `set` with
 * the whole list of targets as often as it changes, `clear` on exit. Rules are loaded in batches through a rules file;
 * a path auditctl cannot read in a rules file (one with white space) gets its own auditctl call.
 */
export class AuditWatchRules {
  private readonly current = new Map<string, WatchTarget>();
  private readonly auditctl: string;
  private readonly timeoutMs: number;
  private dir: string | undefined;

  constructor(private readonly opts: AuditWatchOptions) {
    if (!/^[A-Za-z0-9_.-]{1,31}$/.test(opts.key)) throw new Error(`audit key "${opts.key}": letters, digits, '_', '.', '-', at most 31`);
    this.auditctl = opts.auditctl ?? DEFAULT_AUDITCTL;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  get key(): string {
    return this.opts.key;
  }

  watched(): ReadonlySet<string> {
    return new Set(this.current.keys());
  }

  /** Removes every rule carrying the key, whoever added it: a crashed earlier run's rules. */
  async removeStale(): Promise<void> {
    const r = await run(this.auditctl, ['-D', '-k', this.opts.key], this.timeoutMs);
    if (r.code !== 0) this.opts.log.warn({ key: this.opts.key, err: r.stderr.trim() }, 'stale audit rules not removed');
    this.current.clear();
  }

  /**
   * Makes the rules watch exactly `targets`: adds what is new, removes what is gone, retries what failed before, and
   * re-adds rules the kernel dropped (it drops a watch when the watched path's directory is removed).
   */
  async set(targets: readonly WatchTarget[]): Promise<WatchReport> {
    await this.refresh();
    const wanted = new Map(targets.map((t) => [t.path, t] as const));
    const remove = [...this.current.values()].filter((t) => wanted.get(t.path)?.perms !== t.perms);
    const add = [...wanted.values()].filter((t) => this.current.get(t.path)?.perms !== t.perms);
    if (remove.length > 0) {
      await this.load(remove.map((t) => this.rule('-W', t)));
      for (const t of remove) this.current.delete(t.path);
    }
    const failed: WatchReport['failed'] = [];
    if (add.length > 0) {
      const errors = await this.load(add.map((t) => this.rule('-w', t)));
      add.forEach((t, i) => {
        const err = errors.get(i);
        if (err === undefined) this.current.set(t.path, t);
        else failed.push({ path: t.path, reason: err });
      });
    }
    return { watched: [...this.current.keys()], failed };
  }

  /** Removes exactly the rules this instance added. */
  async clear(): Promise<void> {
    if (this.current.size > 0) await this.load([...this.current.values()].map((t) => this.rule('-W', t)));
    this.current.clear();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }

  /** Forgets rules the kernel no longer has. */
  private async refresh(): Promise<void> {
    if (this.current.size === 0) return;
    const r = await run(this.auditctl, ['-l', '-k', this.opts.key], this.timeoutMs);
    if (r.code !== 0) return;
    const present = new Set<string>();
    const suffix = ` -k ${this.opts.key}`;
    for (const line of r.stdout.split('\n')) {
      if (!line.startsWith('-w ') || !line.endsWith(suffix)) continue;
      const m = / -p ([rwxa]+)$/.exec(line.slice(0, -suffix.length));
      if (m) present.add(`${line.slice(3, line.length - suffix.length - m[0].length)}\0${m[1]}`);
    }
    for (const [p, t] of this.current) if (!present.has(`${p}\0${t.perms}`)) this.current.delete(p);
  }

  private rule(op: '-w' | '-W', t: WatchTarget): string[] {
    return [op, t.path, '-p', t.perms, '-k', this.opts.key];
  }

  /** Runs the rules, returning auditctl's complaint per failed rule by its index. */
  private async load(rules: string[][]): Promise<Map<number, string>> {
    const errors = new Map<number, string>();
    const batch: number[] = [];
    for (let i = 0; i < rules.length; i++) {
      const argv = rules[i] as string[];
      if (/\s/.test(argv[1] as string)) {
        const r = await run(this.auditctl, argv, this.timeoutMs);
        if (r.code !== 0) errors.set(i, r.stderr.trim() || `exit ${r.code}`);
      } else {
        batch.push(i);
      }
    }
    if (batch.length === 0) return errors;
    this.dir ??= mkdtempSync(path.join(tmpdir(), 'homeostat-audit-'));
    const file = path.join(this.dir, 'rules');
    // `-c` on the first line: go on past a failing rule; auditctl names each failing line.
    writeFileSync(file, `-c\n${batch.map((i) => (rules[i] as string[]).join(' ')).join('\n')}\n`, { mode: 0o600 });
    const r = await run(this.auditctl, ['-R', file], this.timeoutMs);
    if (r.code === 0) return errors;
    const lines = r.stderr.split('\n');
    let reported = false;
    lines.forEach((l, k) => {
      const m = /There was an error in line (\d+)/.exec(l);
      if (!m) return;
      const index = batch[Number(m[1]) - 2]; // line 1 is -c
      if (index === undefined) return;
      errors.set(index, (lines[k - 1] ?? 'auditctl refused it').trim());
      reported = true;
    });
    if (!reported) for (const i of batch) errors.set(i, (r.stderr || r.stdout).trim() || `auditctl exit ${r.code}`);
    return errors;
  }
}
