// Records kept in the agent's local cache: the audit log entries and the other rows the engine and the link exchange with the store.
import type { Actor } from '../../lib/policy/actor.js';
import type { DecisionCause, PolicyAction, RuleRef } from '../../lib/policy/decide.js';
import { AUDIT_EVENTS } from '../../lib/audit-events.js';
import type { StateSummary } from '../resources/resource.js';

export { AUDIT_EVENTS };

export type AuditEvent = (typeof AUDIT_EVENTS)[number];

/**
 * What made the agent look: a watch event, a poll, the start-up pass, the periodic resync, the controller (a signed
 * assignment or decision), a SIGHUP `reload` of the local files, the `retry` of a failed repair after its backoff, or
 * `manual` (a one-shot command or an operator on the host).
 */
export const TRIGGERS = ['watch', 'poll', 'startup', 'resync', 'controller', 'reload', 'retry', 'manual'] as const;

export type Trigger = (typeof TRIGGERS)[number];

/** The decision a record was made by: what, why (the cause), which rule, in words; when it is looked at again. */
export interface DecisionRecord {
  action: PolicyAction;
  cause: DecisionCause;
  rule: RuleRef;
  reason: string;
  until?: number;
  reconsiderAt?: number;
}

/**
 * What a record of a decision carries besides the common fields: who made the drift (drift_detected), the decision and
 * its rule, the kinds of change and the resource's risk. Absent on other records (and on records of older agents).
 */
export interface DecisionFields {
  actor?: Actor;
  decision?: DecisionRecord;
  changes?: string[];
  risk?: string;
}

/** One audit record. `hash` = sha256(prevHash + canonical JSON of every other field); the first record's prevHash is 64 zeros. */
export interface AuditEntry extends DecisionFields {
  seq: number;
  time: number; // ms since epoch
  resource: string | null;
  event: AuditEvent;
  trigger: Trigger | null;
  baseline: string | null;
  version: number | null;
  observed: StateSummary | null;
  desired: StateSummary | null;
  diff: string | null;
  detail: string | null;
  prevHash: string;
  hash: string;
}

export type NewAuditEntry = Omit<AuditEntry, 'seq' | 'prevHash' | 'hash'>;

/** What the agent last wrote or verified at a path, so its own events are recognised and unchanged files are not re-hashed. */
export interface JournalEntry {
  path: string;
  dev: number;
  ino: number;
  size: number;
  mtimeNs: string; // bigint as decimal text
  ctimeNs: string;
  mode: number;
  uid: number;
  gid: number;
  sha256: string | null; // null for directories
}

/** Where a baseline version came from: files on this host, or the controller (which assigns the version number). */
export type BaselineOrigin = 'local' | 'controller';

/**
 * A baseline version to store. Versions are immutable: the same text (sha256) under the same name is the same version.
 * They are numbered per source: the host's own (`local`), or each controller's (by the key id in `signedBy`).
 */
export interface NewBaseline {
  name: string;
  sha256: string;
  text: string;
  /** `source:` files by path, base64. */
  sources: Record<string, string>;
  origin: BaselineOrigin;
  /** Assigned by the controller; absent for local baselines, which number themselves 1, 2, ... per name. */
  version?: number;
  signature?: string;
  /** The controller's signing key id; its numbers are kept apart from any other controller's. */
  signedBy?: string;
  expiresAt?: number;
}

export interface StoredBaseline {
  /** `local`, or `controller:KEYID`. */
  source: string;
  name: string;
  version: number;
  sha256: string;
  text: string;
  sources: Record<string, string>;
  origin: BaselineOrigin;
  signature: string | null;
  signedBy: string | null;
  expiresAt: number | null;
  storedAt: number;
  /** When this version became the active one of its name; null unless it is active now. */
  activatedAt: number | null;
}

export interface AuditQuery {
  /** Records with time >= since (ms since epoch). */
  since?: number;
  /** One resource id, or any of several (a bare path: its file or its directory). */
  resource?: string | string[];
  event?: string;
  /** Records with seq > afterSeq. */
  afterSeq?: number;
  limit?: number;
  /** With `limit`: the newest `limit` matching records (still returned in ascending seq) instead of the oldest. */
  newest?: boolean;
}

/** Records a damaged database lost, as the `records_lost` record at `recordedAt` names them. */
export interface LostRange {
  from: number;
  to: number;
  recordedAt: number;
}

export type AuditVerification =
  | { ok: true; count: number; lost?: LostRange[]; retainedFrom?: number }
  | { ok: false; count: number; seq: number; reason: string };

/** An audit record waiting for delivery to the controller; `seq` is the audit seq. */
export interface OutboxItem {
  seq: number;
  entry: AuditEntry;
}

export interface OutboxStats {
  pending: number;
  /** Records never delivered because the outbox was full, over the agent's lifetime. */
  dropped: number;
  oldestSeq: number | null;
}

/** A replaced content kept so a repair can be explained and undone; the bytes only up to the size limit. */
export interface BackupInfo {
  id: number;
  resource: string;
  time: number;
  sha256: string;
  size: number;
  /** Whether the bytes were kept (size within the limit). */
  kept: boolean;
}

export interface Backup extends BackupInfo {
  content: Buffer | null;
}

/** A drift an operator accepted (a rejected escalation): not repaired while its fingerprint matches and it has not expired. */
export interface AcceptedException {
  resource: string;
  fingerprint: string;
  reason: string;
  expiresAt: number;
}

/**
 * A drift left for a human on this host: opened by an `escalated` record and still undecided (no repair, approval,
 * rejection or resolution since). `id` is the seq of the record that opened it.
 */
export interface LocalEscalation {
  id: number;
  resource: string;
  baseline: string | null;
  version: number | null;
  openedAt: number;
  lastSeenAt: number;
  /** Escalated records for this drift after the first (each a drift that changed since, or a new one). */
  repeats: number;
  /** Why, as the latest escalated record says. */
  detail: string | null;
  /** The latest observed state, desired state and diff recorded for it. */
  observed: StateSummary | null;
  desired: StateSummary | null;
  diff: string | null;
  /** `failures`: opened because repairs kept failing (the agent keeps retrying); `decision`: the policy left it for a human. */
  cause: 'decision' | 'failures';
}
