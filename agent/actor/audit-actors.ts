// Who changed a managed path, from the Linux audit subsystem: the agent watches its paths (and the programs that change
// services and sysctls) with rules tagged by its key, follows auditd's log, and keeps the last few attributed events per
// path. The engine asks on each drift; without auditd every answer is `unknown`, said plainly, and nothing blocks.
import type { Logger } from '../../lib/log.js';
import { errorMessage } from '../../lib/errors.js';
import type { Actor } from '../../lib/policy/actor.js';
import { accounts } from '../host/accounts.js';
import { auditdState, AuditWatchRules, type AuditdOptions, type WatchReport, type WatchTarget } from '../host/auditd.js';
import { EventAssembler, eventPaths, parseAuditLine, type AuditEvent } from './audit-records.js';
import { AuditLogTail } from './audit-tail.js';
import { ProcReader } from './procinfo.js';

/**
 * The kernel removes each audit rule with a grace period of its own (about 13 ms here), and adds each in time that grows
 * with the rules it holds: 10,000 path rules took 3.3 s to add and over two minutes to remove, 1,024 about 13 s to remove
 * (within the unit's stop timeout). Above this many managed paths the agent watches their folders instead: a folder rule
 * covers everything under it, so the same changes are attributed, but the log also carries the agent's own work in those
 * folders, and a lookup more often waits its whole bounded wait (bench/README.md, agent-files).
 */
export const MAX_PATH_RULES = 1024;

/**
 * The folders of `paths`, without those inside another of them; a path directly under `/` keeps a rule of its own, since
 * a rule on `/` would record every write on the host.
 */
export function coveringFolders(paths: readonly string[]): string[] {
  const folders = new Set<string>();
  for (const p of paths) {
    const cut = p.lastIndexOf('/');
    folders.add(cut > 0 ? p.slice(0, cut) : p);
  }
  // Shortest first, so a folder is dropped when one it is under was kept.
  const out: string[] = [];
  for (const f of [...folders].sort((a, b) => a.length - b.length || a.localeCompare(b))) {
    if (!out.some((k) => f.startsWith(`${k}/`))) out.push(f);
  }
  return out;
}

export interface AuditAttributionOptions extends AuditdOptions {
  /** The key of every rule the agent adds; one agent per host uses `homeostat`. */
  key: string;
  log: Logger;
  /** Read this log instead of the one auditd.conf names. */
  logFile?: string;
  /** Records of this process are the agent's own: `source: self`. */
  selfPid?: number;
  /** Attributed events kept per path (the latest ones). */
  eventsPerPath?: number;
  /** How long an event is kept for a lookup. */
  retainMs?: number;
  /** Above this many paths, their folders are watched instead of each path (MAX_PATH_RULES). */
  maxPathRules?: number;
  proc?: ProcReader;
}

export interface LookupQuery {
  /** When the drift was seen (ms since the epoch). */
  time: number;
  /** When the resource was last seen as it should be: the change came after. Without it, any kept record may answer. */
  since?: number;
  /** Inodes the path had (now, and before the change): calls through a file descriptor name no path, only the inode. */
  inodes?: readonly number[];
  /** How long to wait for a record still on its way to the log when none is there yet. */
  waitMs?: number;
}

export type AttributionState = { state: 'stopped' } | { state: 'active'; logFile: string } | { state: 'unavailable'; reason: string };

interface Attributed {
  time: number;
  serial: number;
  /** When the agent read it (ms since the epoch). */
  readAt: number;
  actor: Actor;
  argv?: string[];
}

/**
 * The kernel stamps records with its coarse clock, a tick or so behind the one the agent reads (1-5 ms here, measured): a
 * stamp is never later than the change, and may be earlier than `since` for a change just after it. A record stamped
 * within this before `since` is taken only when no later one comes while waiting.
 */
const COARSE_CLOCK_MS = 20;
const AFTER_TIME_SLACK_MS = 5;
const DEFAULT_WAIT_MS = 50;
const POLL_WAIT_MS = 5;
/** Inodes and program runs remembered beyond the per-path index. */
const MAX_INODES = 4096;
const MAX_EXECS = 256;
/** Process start times are known to a clock tick (10 ms) after a boot time known to the second: within this, "started before". */
const PID_START_SLACK_MS = 20;
/** Paths not watchable yet (their folder is missing, often until the agent's own repair creates it) are tried again. */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 60_000;

export class AuditAttribution {
  private status: AttributionState = { state: 'stopped' };
  /** Between start() and stop(): watch() may (re)start following auditd when it comes back. */
  private wanted = false;
  private readonly rules: AuditWatchRules;
  private tail: AuditLogTail | undefined;
  private readonly assembler: EventAssembler;
  private readonly proc: ProcReader;
  private readonly byPath = new Map<string, Attributed[]>();
  private readonly byInode = new Map<number, Attributed[]>();
  private readonly execs: Attributed[] = [];
  private watchedPaths = new Set<string>();
  private readonly selfPid: number;
  private readonly perPath: number;
  private readonly retainMs: number;
  private expireTimer: NodeJS.Timeout | undefined;
  /** One rules update at a time: two overlapping ones would each add the same rules. */
  private watching: Promise<unknown> = Promise.resolve();
  private lastTargets: { paths: readonly string[]; programs: readonly string[] } | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = RETRY_FIRST_MS;
  /** Lookups waiting for a record: woken by each event of the key. */
  private readonly eventWaiters = new Set<() => void>();
  readonly stats = { records: 0, events: 0, attributed: 0, dropped: 0 };

  constructor(private readonly opts: AuditAttributionOptions) {
    this.rules = new AuditWatchRules({ ...opts, key: opts.key });
    this.assembler = new EventAssembler((e) => this.onEvent(e));
    this.proc = opts.proc ?? new ProcReader();
    this.selfPid = opts.selfPid ?? process.pid;
    this.perPath = opts.eventsPerPath ?? 8;
    this.retainMs = opts.retainMs ?? 15 * 60_000;
  }

  get state(): AttributionState {
    if (this.status.state === 'active' && this.tail?.problem) return { state: 'unavailable', reason: this.tail.problem };
    return this.status;
  }

  /** Finds auditd and its log; removes rules a crashed earlier run left; starts following the log. Never throws. */
  async start(): Promise<AttributionState> {
    this.wanted = true;
    try {
      const s = await auditdState(this.opts);
      const logFile = this.opts.logFile ?? s.logFile;
      if (!s.running || logFile === undefined) {
        this.status = { state: 'unavailable', reason: s.reason ?? 'auditd writes no log' };
        this.opts.log.info({ reason: this.status.reason }, 'actors of file changes unknown: no audit log');
        return this.status;
      }
      await this.rules.removeStale();
      this.tail?.stop();
      this.tail = new AuditLogTail({ file: logFile, log: this.opts.log, onLine: (l) => this.onLine(l) });
      this.tail.start();
      this.status = { state: 'active', logFile };
      if (!this.expireTimer) {
        this.expireTimer = setInterval(() => this.assembler.expire(Date.now()), 1000);
        this.expireTimer.unref();
      }
      return this.state;
    } catch (err) {
      this.status = { state: 'unavailable', reason: errorMessage(err) };
      return this.status;
    }
  }

  /**
   * Watches exactly these paths for writes and attribute changes, and these programs for runs (systemctl, sysctl: how
   * services and kernel settings are usually changed). Paths whose directory does not exist yet are reported, and tried
   * again a second later, backing off to a minute, until they can be watched. Called again as the managed set changes: it
   * also notices auditd stopping (every actor is then unknown) and coming back (the rules are put back).
   */
  watch(paths: readonly string[], programs: readonly string[] = []): Promise<WatchReport | undefined> {
    this.lastTargets = { paths, programs };
    this.retryMs = RETRY_FIRST_MS;
    return this.queueWatch(paths, programs);
  }

  private queueWatch(paths: readonly string[], programs: readonly string[]): Promise<WatchReport | undefined> {
    const next = this.watching.then(async () => {
      const report = await this.applyWatch(paths, programs);
      this.retryLater(report);
      return report;
    });
    this.watching = next.catch(() => undefined);
    return next;
  }

  /**
   * A path whose folder is missing cannot be watched; the folder usually comes soon (the agent's first pass creates the
   * folders of the files it manages, after the rules were asked for). Tried again, backing off, until none fails.
   */
  private retryLater(report: WatchReport | undefined): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (!this.wanted || !report || report.failed.length === 0) return;
    const targets = this.lastTargets;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!targets || targets !== this.lastTargets) return; // a newer call has its own retry
      this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
      void this.queueWatch(targets.paths, targets.programs);
    }, this.retryMs);
    this.retryTimer.unref();
  }

  private async applyWatch(paths: readonly string[], programs: readonly string[]): Promise<WatchReport | undefined> {
    this.watchedPaths = new Set(paths);
    for (const p of this.byPath.keys()) if (!this.watchedPaths.has(p)) this.byPath.delete(p);
    if (!this.wanted) return undefined;
    const s = await auditdState(this.opts);
    if (!s.running) {
      if (this.status.state === 'active') this.opts.log.warn({ reason: s.reason }, 'auditd stopped: actors of file changes unknown');
      this.tail?.stop();
      this.tail = undefined;
      this.status = { state: 'unavailable', reason: s.reason ?? 'auditd is not running' };
      return undefined;
    }
    if (this.status.state !== 'active' && (await this.start()).state !== 'active') return undefined;
    const watchPaths = paths.length > (this.opts.maxPathRules ?? MAX_PATH_RULES) ? coveringFolders(paths) : paths;
    const targets: WatchTarget[] = [...watchPaths.map((p) => ({ path: p, perms: 'wa' as const })), ...programs.map((p) => ({ path: p, perms: 'x' as const }))];
    try {
      return await this.rules.set(targets);
    } catch (err) {
      this.opts.log.warn({ err: errorMessage(err) }, 'audit rules not set');
      return undefined;
    }
  }

  /** Removes exactly the rules added and stops following the log. */
  async stop(): Promise<void> {
    this.wanted = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.watching;
    if (this.expireTimer) clearInterval(this.expireTimer);
    this.expireTimer = undefined;
    this.tail?.stop();
    this.tail = undefined;
    try {
      await this.rules.clear();
    } catch (err) {
      this.opts.log.warn({ err: errorMessage(err) }, 'audit rules not removed');
    }
    this.status = { state: 'stopped' };
  }

  /**
   * The actor of the latest recorded change of `path` (or of one of its inodes) between `since` and the drift. When there
   * is none, or the latest is the agent's own write, it waits up to `waitMs` for a record still in flight; then it takes a
   * record stamped just before `since` (the kernel's clock is coarse), then the agent's own write (`self`: e.g. two
   * baselines writing one file), else it answers `unknown` with the reason.
   */
  async actorForPath(path: string, q: LookupQuery): Promise<Actor> {
    const state = this.state;
    if (state.state !== 'active') return { source: 'unknown', detail: state.state === 'unavailable' ? state.reason : 'attribution is not started' };
    const latest = (from: number | undefined, readAfter?: number): Attributed | undefined => {
      let best: Attributed | undefined;
      const consider = (list: Attributed[] | undefined): void => {
        for (const a of list ?? []) {
          if (a.time > q.time + AFTER_TIME_SLACK_MS || (from !== undefined && a.time <= from)) continue;
          if (readAfter !== undefined && a.readAt <= readAfter) continue;
          if (!best || a.time > best.time || (a.time === best.time && a.serial > best.serial)) best = a;
        }
      };
      consider(this.byPath.get(path));
      for (const ino of q.inodes ?? []) consider(this.byInode.get(ino));
      return best;
    };
    const found = await this.waitFor(() => {
      const a = latest(q.since);
      return a && a.actor.source !== 'self' ? a : undefined;
    }, q.waitMs ?? DEFAULT_WAIT_MS);
    if (found) return found.actor;
    // Only a record read after `since` can be of a change after it: one read before is of a change the resource was seen
    // compliant after (the previous drift, the agent's own repair), however close its stamp is to `since`.
    const late = latest(q.since === undefined ? undefined : q.since - COARSE_CLOCK_MS, q.since);
    if (late) return late.actor;
    if (!this.watchedPaths.has(path)) return { source: 'unknown', detail: 'the path is not watched by the audit subsystem' };
    return { source: 'unknown', detail: 'no audit record of this change' };
  }

  /** The attributed changes of `path` kept now, oldest first, the agent's own included: for explaining a resource's history. */
  recent(path: string): { time: number; actor: Actor }[] {
    return (this.byPath.get(path) ?? []).map((a) => ({ time: a.time, actor: a.actor }));
  }

  /**
   * The latest run of a watched program, within `lookbackMs` before the drift, whose arguments satisfy `matches`: e.g.
   * `systemctl stop nginx.service`. Undefined when there is none.
   */
  async actorForCommand(matches: (argv: readonly string[]) => boolean, q: LookupQuery & { lookbackMs: number }): Promise<Actor | undefined> {
    if (this.state.state !== 'active') return undefined;
    const find = (): Attributed | undefined => {
      for (let i = this.execs.length - 1; i >= 0; i--) {
        const a = this.execs[i] as Attributed;
        if (a.time > q.time + AFTER_TIME_SLACK_MS || a.time < q.time - q.lookbackMs) continue;
        if (q.since !== undefined && a.time <= q.since - COARSE_CLOCK_MS) continue;
        if (a.argv && matches(a.argv)) return a;
      }
      return undefined;
    };
    return (await this.waitFor(find, q.waitMs ?? DEFAULT_WAIT_MS))?.actor;
  }

  /**
   * Looks now, then again each time the log gives an event (auditd's writes wake the tail through inotify), and at least
   * every POLL_WAIT_MS, until found or `waitMs` is over: a record still on its way is taken the moment it is read.
   */
  private async waitFor(find: () => Attributed | undefined, waitMs: number): Promise<Attributed | undefined> {
    this.tail?.readNow();
    let found = find();
    const deadline = Date.now() + waitMs;
    for (let left = waitMs; !found && left > 0; left = deadline - Date.now()) {
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          this.eventWaiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(left, POLL_WAIT_MS));
        this.eventWaiters.add(wake);
      });
      this.tail?.readNow();
      found = find();
    }
    return found;
  }

  private onLine(line: string): void {
    const r = parseAuditLine(line);
    if (!r) return;
    this.stats.records++;
    this.assembler.push(r);
  }

  private onEvent(e: AuditEvent): void {
    if (e.key !== this.opts.key) return;
    if (this.eventWaiters.size > 0) {
      const waiters = [...this.eventWaiters];
      this.eventWaiters.clear();
      queueMicrotask(() => waiters.forEach((w) => w())); // after this event is indexed below
    }
    this.stats.events++;
    const a: Attributed = { time: e.time, serial: e.serial, readAt: Date.now(), actor: this.actorOf(e), ...(e.argv ? { argv: e.argv } : {}) };
    if (e.syscall === 'execve' || e.syscall === 'execveat') {
      this.execs.push(a);
      if (this.execs.length > MAX_EXECS) this.execs.splice(0, this.execs.length - MAX_EXECS);
      return;
    }
    let named = false;
    for (const p of eventPaths(e)) {
      if (!this.watchedPaths.has(p)) continue;
      named = true;
      this.remember(this.byPath, p, a);
    }
    // Calls through a descriptor (fchmod, fchown, write after open elsewhere) name no path: only their inode says what they
    // touched. Named items are found by name, never by inode, which the filesystem reuses after a delete.
    for (const item of e.paths) {
      if (item.inode === undefined || item.nametype === 'PARENT' || item.name !== undefined) continue;
      this.remember(this.byInode, item.inode, a);
      if (this.byInode.size > MAX_INODES) {
        const oldest = this.byInode.keys().next().value;
        if (oldest !== undefined) this.byInode.delete(oldest);
      }
    }
    if (named) this.stats.attributed++;
  }

  private remember<K>(index: Map<K, Attributed[]>, key: K, a: Attributed): void {
    const list = index.get(key) ?? [];
    list.push(a);
    const cutoff = a.time - this.retainMs;
    while (list.length > this.perPath || (list[0] !== undefined && list[0].time < cutoff)) list.shift();
    index.delete(key); // re-inserted last: map order is recency, the oldest key is evicted first
    index.set(key, list);
  }

  /** The actor of an event, completed from /proc while the process still lives and is the same process. */
  private actorOf(e: AuditEvent): Actor {
    const actor: Actor = { source: e.pid === this.selfPid ? 'self' : 'audit', time: e.time };
    if (e.pid !== undefined) actor.pid = e.pid;
    if (e.exe !== undefined) actor.exe = e.exe;
    if (e.uid !== undefined) {
      actor.uid = e.uid;
      actor.user = e.user ?? accounts.userName(e.uid);
    }
    if (e.auid !== undefined) {
      actor.loginUid = e.auid;
      actor.loginUser = e.loginUser ?? accounts.userName(e.auid);
    }
    if (e.argv) actor.cmdline = e.argv.join(' ');
    if (e.pid !== undefined) {
      const info = this.proc.info(e.pid);
      // A pid is reused once its process is gone: /proc speaks for this event only if that process began before it.
      const same = info.startedAt !== undefined && info.startedAt <= e.time + PID_START_SLACK_MS;
      if (same) {
        if (info.unit !== undefined) actor.unit = info.unit;
        if (info.cmdline !== undefined && info.exe === e.exe && (actor.cmdline === undefined || info.cmdline.length > actor.cmdline.length)) {
          actor.cmdline = info.cmdline; // the kernel's title stops at 128 bytes
        }
      }
      const parents = this.proc.parents(same ? (info.ppid ?? e.ppid) : e.ppid, 16, e.time + PID_START_SLACK_MS);
      if (parents.length > 0) actor.parents = parents;
    }
    return actor;
  }
}
