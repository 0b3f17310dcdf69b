// The one interface every managed thing implements. The resource only observes and repairs;
// retries, polling, backoff, policy and recording belong to the engine.
import type { ResourceDecl } from '../../lib/baseline/types.js';
import type { Logger } from '../../lib/log.js';
import type { Clock } from '../../lib/clock.js';
import type { FileWatchHub } from '../host/fswatch.js';
import type { AgentSettings } from '../settings.js';
import type { Baseline } from '../../lib/baseline/types.js';

/** A plain, JSON-serialisable picture of a state, for the audit log and `check --json`. */
export type StateSummary = Record<string, unknown>;

/** One difference between what is and what should be. */
export interface Change {
  /** What differs: `content`, `mode`, `owner`, `group`, `exists`, `type`, `value`, `active`, `enabled`, `masked`, ... */
  field: string;
  observed: unknown;
  desired: unknown;
  /** A unified diff when both sides are text under the size limit. */
  diff?: string;
}

/** Host adapters and services a resource may use. One instance per agent process. */
export interface HostContext {
  log: Logger;
  clock: Clock;
  /** Shared inotify-backed watches for paths (one watcher for the whole agent). */
  fsWatch: FileWatchHub;
  settings: AgentSettings;
  /** What the agent last verified per path, so its own events and unchanged files cost one stat. Written only from `commit`. */
  journal: PathJournal;
  /** Extension point for other adapters (systemd client, procfs): each kind file adds its own key. */
  adapters: Map<string, unknown>;
}

export interface PathJournal {
  /** The content hash recorded for this exact file state (device, inode, size, mtime, ctime), if any. */
  knownHash(path: string, st: import('node:fs').BigIntStats): string | undefined;
  record(path: string, st: import('node:fs').BigIntStats, sha256: string | null): void;
  forget(path: string): void;
}

export type Disposer = () => void | Promise<void>;

export interface Resource<O = unknown> {
  readonly id: string;
  /** Reads the current state. No side effects. Throws HsError when it cannot read. */
  observe(): Promise<O>;
  /** Pure: the changes that would bring `observed` to the desired state; empty means compliant. */
  diff(observed: O): Change[];
  /** Makes the changes. Idempotent; throws HsError (with `retryable`) when it cannot. */
  apply(observed: O, changes: Change[]): Promise<ApplyResult | void>;
  /**
   * Called by the engine with an observation it found compliant, directly or when verifying a repair: the kind may
   * remember it (files record their stat and hash in the journal, so their next observation costs one stat).
   */
  commit?(observed: O): void;
  /** Summaries of both sides for records. */
  summarize(observed: O): StateSummary;
  desired(): StateSummary;
  /**
   * Arms a watch, then calls `notify` on any possible change. A spurious call is fine; a missed one is a bug.
   * Kinds with no event source omit it and the engine polls them every `pollIntervalMs`.
   */
  watch?(notify: (reason: string) => void): Promise<Disposer>;
  /** Poll interval when there is no watch (or as well as it, for sources that can miss events). */
  readonly pollIntervalMs?: number;
  /** Releases anything held between reconciles. */
  close?(): Promise<void>;
}

/** What an apply may say beyond success: e.g. the replaced content kept for undo. */
export interface ApplyResult {
  /** Bytes of the state that was replaced (size-limited), kept in the cache so a repair can be explained and undone. */
  replaced?: Buffer;
  detail?: string;
}

/** A resource type: the key that names it in a baseline and a factory. Registered in registry.ts. */
export interface ResourceKind {
  readonly type: string;
  /** Reads what it needs of `decl` now: the engine releases the declaration's fields once the resource exists. */
  create(decl: ResourceDecl, host: HostContext): Resource;
  /**
   * Optional: resources this kind derives from a whole baseline at activation (e.g. the sysctl kind adds a `file:` resource
   * for its /etc/sysctl.d drop-in), enforced like declared ones.
   */
  derive?(baseline: Baseline, settings: AgentSettings): ResourceDecl[];
}
