// Real work for the agent executable: a baseline of many files, tampering of every kind, reloads, and the process's memory — shared by the package tests and bench/soak.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const CONTENT = 'managed by homeostat: keep this line as it is\n'.repeat(4);

export interface FileSet {
  dir: string;
  /** The baseline file; `reloadable()` rewrites it between two versions. */
  baseline: string;
  paths: string[];
}

function baselineText(paths: string[], extra: string | undefined): string {
  const lines = paths.map((p) => `    - file: ${p}\n      content: ${JSON.stringify(CONTENT)}\n      mode: "0644"\n`);
  if (extra) lines.push(`    - file: ${extra}\n      content: "reloaded\\n"\n`);
  // A generous flap budget: the workload drifts the same files again and again on purpose.
  return `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: workload\nspec:\n  policy:\n    flap: { maxRepairs: 100000, window: 1m }\n  resources:\n${lines.join('')}`;
}

/**
 * N managed files under DIR/etc in folders of 100, and their baseline. With `create`, the files are written compliant
 * here (much faster than the agent's fsynced writes), so runs start from a converged host.
 */
export function writeFileSet(dir: string, n: number, opts: { create?: boolean } = {}): FileSet {
  const paths: string[] = [];
  for (let i = 0; i < n; i++) paths.push(path.join(dir, 'etc', `d${Math.floor(i / 100)}`, `f${i}.conf`));
  if (opts.create) {
    for (const p of paths) {
      mkdirSync(path.dirname(p), { recursive: true });
      writeFileSync(p, CONTENT, { mode: 0o644 });
      chmodSync(p, 0o644);
    }
  } else {
    mkdirSync(path.join(dir, 'etc'), { recursive: true });
  }
  const baseline = path.join(dir, 'workload.yaml');
  writeFileSync(baseline, baselineText(paths, undefined));
  return { dir, baseline, paths };
}

/** Rewrites the baseline as its next version (one extra file comes and goes), so every SIGHUP activates a new version. */
export function nextVersion(set: FileSet, n: number): void {
  writeFileSync(set.baseline, baselineText(set.paths, n % 2 === 1 ? path.join(set.dir, 'etc', 'reloaded.conf') : undefined));
}

export function compliant(p: string): boolean {
  try {
    const st = statSync(p);
    return st.isFile() && (st.mode & 0o7777) === 0o644 && readFileSync(p, 'utf8') === CONTENT;
  } catch {
    return false;
  }
}

export const TAMPERS = ['content', 'deleted', 'chmod'] as const;
export type Tamper = (typeof TAMPERS)[number];

export function tamper(p: string, kind: Tamper): void {
  switch (kind) {
    case 'content':
      writeFileSync(p, 'tampered\n');
      break;
    case 'deleted':
      rmSync(p, { force: true });
      break;
    case 'chmod':
      chmodSync(p, 0o666);
      break;
  }
}

/** VmRSS and RssAnon of a process, in kB (0 when it is gone). */
export function memoryOf(pid: number): { rssKb: number; anonKb: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { rssKb: kb('VmRSS'), anonKb: kb('RssAnon') };
  } catch {
    return { rssKb: 0, anonKb: 0 };
  }
}

/** How a process ended; an abort (SIGABRT, SIGSEGV, ...) is what the runtime checks are about. */
export interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export function aborted(e: Ended): boolean {
  return e.signal !== null && e.signal !== 'SIGTERM' && e.signal !== 'SIGKILL';
}

/** The daemon, its log in a file (a full pipe must never block it), and how it ended. */
export class Daemon {
  readonly proc: ChildProcess;
  readonly ended: Promise<Ended>;
  private readonly startedAt = Date.now();

  /** CMD is the executable, or a command that ends in one (`[node, ...flags, 'dist/agent/main.js']`); `run` and ARGS follow it. */
  constructor(
    cmd: string | string[],
    args: string[],
    readonly logFile: string,
    env: NodeJS.ProcessEnv,
  ) {
    const [bin, ...pre] = typeof cmd === 'string' ? [cmd] : cmd;
    const fd = openSync(logFile, 'w');
    this.proc = spawn(bin ?? 'false', [...pre, 'run', ...args], { env, stdio: ['ignore', 'ignore', fd] });
    closeSync(fd);
    this.ended = new Promise((resolve) => this.proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.proc.pid ?? 0;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  /** Resolves with the start-up time once the agent logs that it is ready; rejects if it exits first. */
  async ready(timeoutMs = 60_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.log().includes('"agent ready"')) return Date.now() - this.startedAt;
      if (!this.running) throw new Error(`agent exited (${this.proc.exitCode ?? this.proc.signalCode}) before it was ready:\n${this.log().slice(-3000)}`);
      if (Date.now() > deadline) throw new Error(`agent not ready after ${timeoutMs} ms:\n${this.log().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async stop(): Promise<Ended> {
    if (this.running) this.proc.kill('SIGTERM');
    return this.ended;
  }
}

export interface DriftReport {
  tampers: number;
  byKind: Record<Tamper, number>;
  reloads: number;
  /** Tampers not seen compliant again within the deadline. */
  unrepaired: string[];
  /** From tamper to compliant again, as this process saw it (polling every few ms), in ms. */
  latenciesMs: number[];
}

/**
 * Drifts files at RATE per second until `until()` says stop, never a file whose last tamper is not repaired yet, and
 * sends the daemon SIGHUP every `reloadEveryMs` after rewriting the baseline as its next version. Each tamper must be
 * seen compliant again within `repairDeadlineMs`. `onSecond` gets the running totals once a second.
 */
export async function driftContinuously(
  daemon: Daemon,
  set: FileSet,
  opts: { ratePerSecond: number; reloadEveryMs: number; repairDeadlineMs: number; until: () => boolean; onSecond?: (r: DriftReport) => void },
): Promise<DriftReport> {
  const report: DriftReport = { tampers: 0, byKind: { content: 0, deleted: 0, chmod: 0 }, reloads: 0, unrepaired: [], latenciesMs: [] };
  const pending = new Map<string, number>();
  let lastReload = Date.now();
  let lastSecond = Date.now();
  let next = 0;
  const step = 1000 / opts.ratePerSecond;
  const settle = (now: number): void => {
    for (const [p, at] of pending) {
      if (compliant(p)) {
        report.latenciesMs.push(now - at);
        pending.delete(p);
      } else if (now - at > opts.repairDeadlineMs) {
        report.unrepaired.push(p);
        pending.delete(p);
      }
    }
  };
  while (opts.until() && daemon.running) {
    const now = Date.now();
    settle(now);
    // Spread over the set; a file still waiting for its repair is skipped.
    const p = set.paths[(next * 7919) % set.paths.length] ?? '';
    next += 1;
    if (!pending.has(p) && compliant(p)) {
      const kind = TAMPERS[report.tampers % TAMPERS.length] ?? 'content';
      tamper(p, kind);
      pending.set(p, Date.now());
      report.tampers += 1;
      report.byKind[kind] += 1;
    }
    if (now - lastReload >= opts.reloadEveryMs) {
      report.reloads += 1;
      nextVersion(set, report.reloads);
      daemon.proc.kill('SIGHUP');
      lastReload = now;
    }
    if (now - lastSecond >= 1000) {
      opts.onSecond?.(report);
      lastSecond = now;
    }
    await new Promise((r) => setTimeout(r, step));
  }
  const deadline = Date.now() + opts.repairDeadlineMs;
  while (pending.size > 0 && Date.now() < deadline && daemon.running) {
    settle(Date.now());
    await new Promise((r) => setTimeout(r, 5));
  }
  report.unrepaired.push(...pending.keys());
  return report;
}
