// The fleet's recorded history as outcomes and replays read it: stored events in each agent's own order, page by page,
// with the kinds of change, actor, recorded decision and risk of each record decoded, and each resource's baseline policy.
import { DEFAULT_POLICY, RISKS, type Policy, type Risk } from '../../lib/baseline/types.js';
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { ACTOR_SOURCES, CHANGE_KINDS, changeKindOf, type Actor } from '../../lib/policy/index.js';
import type { ControllerStore } from '../store/types.js';
import type { HistoryRow } from '../store/tuning.js';
import { validateBaseline } from '../validate.js';

/** What a record says was decided, when the agent sent it (`decision` field). */
export interface RecordedDecision {
  action: string;
  cause?: string;
  /** `fleet-governance v3 spec.rules[2]` or `baseline web` */
  rule?: string;
}

export interface HistoryRecord {
  id: number;
  agentId: string;
  seq: number;
  time: number;
  receivedAt: number;
  resource: string | null;
  event: string;
  trigger: string | null;
  baseline: string | null;
  version: number | null;
  detail: string | null;
  /** Kinds of change of a drift (`content`, `mode`, `state`, ...), sorted; empty for other records. */
  changes: readonly string[];
  actor: Actor | undefined;
  decision: RecordedDecision | undefined;
  risk: Risk | undefined;
}

/** Rows read per page: large enough that paging costs little, small enough to yield to other work often. */
export const PAGE_ROWS = 8192;

export interface HistoryRange {
  since: number;
  until: number;
}

/**
 * The records of [since, until) in (agent, seq) order, a page at a time. Between pages the event loop runs other work
 * (agents' events, API requests); `stopped` ends the walk early (the controller is shutting down).
 */
export async function* readHistory(store: ControllerStore, range: HistoryRange, stopped: () => boolean = () => false): AsyncGenerator<HistoryRecord[]> {
  let after: { agentId: string; seq: number } | null = null;
  for (;;) {
    if (stopped()) return;
    const rows = await store.tuning.scanHistory({ since: range.since, until: range.until, after, limit: PAGE_ROWS });
    if (rows.length === 0) return;
    const last = rows[rows.length - 1] as HistoryRow;
    after = { agentId: last.agentId, seq: last.seq };
    yield rows.map(decodeRow);
    if (rows.length < PAGE_ROWS) return;
    await new Promise<void>((r) => setImmediate(r));
  }
}

const KNOWN_FIELDS = new Set<string>([...CHANGE_KINDS, 'active', 'leftovers']);
const EMPTY: readonly string[] = Object.freeze([]);
const changeCache = new Map<string, readonly string[]>();
const actorCache = new Map<string, Actor | undefined>();
const decisionCache = new Map<string, RecordedDecision | undefined>();

/**
 * Records repeat the same few actors, decisions and details: each text is decoded once while it keeps coming (the cache is
 * dropped when full, so it stays small). Decoded values are shared, never changed.
 */
function cached<T>(cache: Map<string, T>, text: string, decode: (text: string) => T): T {
  if (cache.has(text)) return cache.get(text) as T;
  const v = decode(text);
  if (cache.size > 4096) cache.clear();
  cache.set(text, v);
  return v;
}

export function decodeRow(r: HistoryRow): HistoryRecord {
  return {
    id: r.id,
    agentId: r.agentId,
    seq: r.seq,
    time: r.time,
    receivedAt: r.receivedAt,
    resource: r.resource,
    event: r.event,
    trigger: r.trigger,
    baseline: r.baseline,
    version: r.version,
    detail: r.detail,
    changes: r.event === 'drift_detected' ? changesOf(r.changes, r.detail) : EMPTY,
    actor: r.actor === null ? undefined : cached(actorCache, r.actor, actorOf),
    decision: r.decision === null ? undefined : cached(decisionCache, r.decision, decisionOf),
    risk: RISKS.includes(r.risk as Risk) ? (r.risk as Risk) : undefined,
  };
}

/**
 * The kinds of change of a drift: the record's `changes` field when the agent sent it, else the field names of the detail
 * the engine writes for every drift (`content: sha256:… -> sha256:…; mode: 0666 -> 0644`). Sorted and deduplicated, so
 * one kind of change is one key.
 */
export function changesOf(changes: string | null, detail: string | null): readonly string[] {
  const text = changes !== null ? `c${changes}` : `d${detail ?? ''}`;
  const cached = changeCache.get(text);
  if (cached) return cached;
  let fields: string[] = [];
  if (changes !== null) {
    try {
      const v = JSON.parse(changes) as unknown;
      if (Array.isArray(v)) fields = v.filter((x): x is string => typeof x === 'string');
    } catch {
      fields = [];
    }
  } else if (detail !== null) {
    for (const part of detail.split('; ')) {
      const colon = part.indexOf(': ');
      const field = colon > 0 ? part.slice(0, colon) : '';
      if (KNOWN_FIELDS.has(field)) fields.push(field);
    }
  }
  const out = Object.freeze([...new Set(fields.map(changeKindOf))].sort());
  // Drifts repeat the same few details; the cache stays small by being dropped when full.
  if (changeCache.size > 4096) changeCache.clear();
  changeCache.set(text, out);
  return out;
}

function actorOf(text: string): Actor | undefined {
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    if (v === null || typeof v !== 'object' || !ACTOR_SOURCES.includes(v.source as Actor['source'])) return undefined;
    const a: Actor = { source: v.source as Actor['source'] };
    for (const k of ['exe', 'cmdline', 'user', 'loginUser', 'unit', 'detail'] as const) if (typeof v[k] === 'string') a[k] = v[k];
    for (const k of ['pid', 'uid', 'loginUid', 'time'] as const) if (typeof v[k] === 'number') a[k] = v[k];
    if (Array.isArray(v.parents)) a.parents = v.parents.filter((p): p is string => typeof p === 'string');
    return a;
  } catch {
    return undefined;
  }
}

function decisionOf(text: string): RecordedDecision | undefined {
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    if (v === null || typeof v !== 'object' || typeof v.action !== 'string') return undefined;
    const rule = v.rule as Record<string, unknown> | undefined;
    const label =
      rule && typeof rule === 'object'
        ? typeof rule.baseline === 'string'
          ? `baseline ${rule.baseline}`
          : typeof rule.document === 'string'
            ? `${rule.document} v${String(rule.version)} spec.rules[${String(rule.index)}]`
            : undefined
        : undefined;
    return { action: v.action, ...(typeof v.cause === 'string' ? { cause: v.cause } : {}), ...(label ? { rule: label } : {}) };
  } catch {
    return undefined;
  }
}

/** A resource as its baseline version declares it: what decide() needs beyond the drift. */
export interface ResourceInfo {
  policy: Policy;
  kind: string;
}

/** Parsed baseline versions kept at once; versions are immutable, so an entry never goes stale. */
const POLICY_CACHE = 64;

/**
 * Each resource's effective baseline policy, from the baseline version its records name, parsed once per version. A record
 * whose version is gone (or unreadable) gets the default policy, with the risk the record itself carries when it has one.
 */
export class ResourcePolicies {
  private readonly versions = new Map<string, Map<string, ResourceInfo> | null>();

  constructor(
    private readonly store: ControllerStore,
    private readonly log: Logger,
  ) {}

  /** The resource's info once its baseline version is loaded (or known to be missing); undefined until `load` was awaited. */
  info(r: HistoryRecord): ResourceInfo | undefined {
    const resource = r.resource ?? '';
    let declared: Map<string, ResourceInfo> | null = null;
    if (r.baseline !== null && r.version !== null) {
      const key = `${r.baseline}@${r.version}`;
      if (!this.versions.has(key)) return undefined;
      declared = this.versions.get(key) ?? null;
    }
    const found = declared?.get(resource);
    if (found) return r.risk === undefined || r.risk === found.policy.risk ? found : { kind: found.kind, policy: { ...found.policy, risk: r.risk } };
    const kind = resource.slice(0, Math.max(0, resource.indexOf(':')));
    return { kind, policy: r.risk === undefined ? DEFAULT_POLICY : { ...DEFAULT_POLICY, risk: r.risk } };
  }

  /** Reads and parses the baseline version a record names, so `info` can answer for it. */
  async load(r: HistoryRecord): Promise<ResourceInfo> {
    if (r.baseline !== null && r.version !== null) await this.version(r.baseline, r.version);
    return this.info(r) as ResourceInfo;
  }

  private async version(name: string, version: number): Promise<Map<string, ResourceInfo> | null> {
    const key = `${name}@${version}`;
    if (this.versions.has(key)) return this.versions.get(key) ?? null;
    let parsed: Map<string, ResourceInfo> | null = null;
    try {
      const v = await this.store.getBaselineVersion(name, version);
      if (v) {
        const sources = Object.fromEntries(Object.entries(v.sources).map(([rel, b64]) => [rel, Buffer.from(b64, 'base64')]));
        parsed = new Map(validateBaseline(v.yaml, v.file, sources).resources.map((d) => [d.id, { policy: d.policy, kind: d.type }]));
      }
    } catch (err) {
      this.log.warn({ baseline: name, version, err: errorMessage(err) }, 'stored baseline version unreadable: replayed with the default policy');
    }
    if (this.versions.size >= POLICY_CACHE) this.versions.delete(this.versions.keys().next().value ?? '');
    this.versions.set(key, parsed);
    return parsed;
  }
}
