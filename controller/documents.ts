// Signed documents of one kind (baselines or policies) and what each agent is assigned of them: reads immutable versions,
// signs the version a rollout targets and the versions rollouts stage (renewing both before they expire), computes each
// agent's signed assignment from selectors, trusted labels and the waves it was admitted to, and signs removals and
// re-issues for single agents. Every signature of one name gets a strictly later issue time than the one before: the
// agents' replay guard relies on it. What differs between kinds (storage, payload, signing domain) is a DocumentKindSpec.
import { HsError } from '../lib/errors.js';
import type { Clock } from '../lib/clock.js';
import { selectorMatches, type Labels } from '../lib/labels.js';
import type { Logger } from '../lib/log.js';
import type { SigningDomain, SigningKey } from '../lib/signing.js';
import { signInDomain } from '../lib/signing.js';
import { unifiedDiff } from '../lib/textdiff.js';
import { encodeRemovalDoc, type SignedDoc } from '../proto/codec.js';
import type { DocumentKind, TargetRecord } from './store/types.js';

export const DEFAULT_SIGNATURE_VALIDITY_MS = 30 * 86_400_000;

/** What every stored version has, whatever its kind. */
export interface VersionRecord {
  name: string;
  version: number;
  selector: { matchLabels: Labels } | null;
}

/** When a document is signed, and whether it may take an agent back to an older version. */
export interface SigningContext {
  issuedAt: number;
  expiresAt: number;
  rollback: boolean;
}

/** What one kind of document needs from the store and the wire. */
export interface DocumentKindSpec<V extends VersionRecord> {
  kind: DocumentKind;
  getVersion(name: string, version: number): Promise<V | undefined>;
  listTargets(): Promise<TargetRecord[]>;
  putTarget(t: TargetRecord): Promise<void>;
  /** Keeps a staged version's renewed signature with its rollout, so a restarted controller hands out the renewed one. */
  saveStaged(rolloutId: number, record: TargetRecord): Promise<void>;
  /** The payload an agent verifies: the version's content with the signing context. */
  encode(v: V, when: SigningContext): Uint8Array;
  /** A signed payload with a new issue and expiry time (a re-issue of the same content). */
  reissue(payload: Uint8Array, when: { issuedAt: number; expiresAt: number }): Uint8Array;
  sign(key: SigningKey, payload: Uint8Array): Buffer;
  /** The domain this kind's removals are signed in, so a removal of one kind never removes the other. */
  removalDomain: SigningDomain;
  /** The version's files as a diff shows them, the document's text first. */
  files(v: V): { path: string; bytes: Buffer }[];
}

/** A signed document as assignments carry it. */
export interface Signed {
  payload: Uint8Array;
  signature: Uint8Array;
  keyId: string;
}

/** A version a staged rollout hands out wave by wave, and the agents admitted to it so far. */
export interface StagedVersion {
  rolloutId: number;
  record: TargetRecord;
  selector: { matchLabels: Labels } | null;
  admitted: Set<string>;
}

/** One kind's part of an agent's assignment, in name order. */
export interface KindAssignment {
  names: string[];
  docs: Signed[];
  records: TargetRecord[];
  /** Changes whenever this part does (so unchanged agents are not sent it again, and equal ones share a frame). */
  key: string;
}

function signedOf(r: TargetRecord): Signed {
  return { payload: r.payload, signature: r.signature, keyId: r.keyId };
}

interface ActiveTarget {
  record: TargetRecord;
  selector: { matchLabels: Labels } | null;
}

export class DocumentService<V extends VersionRecord> {
  private targets = new Map<string, ActiveTarget>();
  private readonly staged = new Map<string, StagedVersion>();
  private readonly listeners = new Set<() => void>();
  /** The latest issue time signed per name (targets, staged, re-issues, removals). */
  private readonly lastIssued = new Map<string, number>();
  /** Documents issued again for agents that removed the name after the original was signed, by source document. */
  private readonly reissued = new Map<string, TargetRecord>();

  constructor(
    protected readonly spec: DocumentKindSpec<V>,
    protected readonly key: SigningKey,
    protected readonly clock: Clock,
    protected readonly log: Logger,
    protected readonly validityMs = DEFAULT_SIGNATURE_VALIDITY_MS,
  ) {}

  get kind(): DocumentKind {
    return this.spec.kind;
  }

  /** Loads the current targets; call once before serving. */
  async load(): Promise<void> {
    const next = new Map<string, ActiveTarget>();
    for (const t of await this.spec.listTargets()) {
      const v = await this.spec.getVersion(t.name, t.version);
      next.set(t.name, { record: t, selector: v?.selector ?? null });
    }
    this.targets = next;
  }

  /** Called whenever any target changes (a rollout or a renewal), so connected agents can be sent their new assignment. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async version(name: string, version: number): Promise<V> {
    const v = await this.spec.getVersion(name, version);
    if (!v) throw new HsError('HS_NOT_FOUND', `no ${this.spec.kind} ${name} version ${version}`);
    return v;
  }

  /** A unified diff of the document (and each of its files) between two versions. */
  async diff(name: string, from: number, to: number): Promise<string> {
    const [a, b] = [await this.version(name, from), await this.version(name, to)];
    const before = new Map(this.spec.files(a).map((f) => [f.path, f.bytes]));
    const after = new Map(this.spec.files(b).map((f) => [f.path, f.bytes]));
    const parts: string[] = [];
    for (const path of [...new Set([...before.keys(), ...after.keys()])]) {
      const x = before.get(path) ?? Buffer.alloc(0);
      const y = after.get(path) ?? Buffer.alloc(0);
      if (x.equals(y)) continue;
      parts.push(unifiedDiff(path, x, y, 1024 * 1024) ?? `${path}: differs (too large or binary to show)\n`);
    }
    return parts.join('');
  }

  target(name: string): TargetRecord | undefined {
    return this.targets.get(name)?.record;
  }

  listTargets(): TargetRecord[] {
    return [...this.targets.values()].map((t) => t.record);
  }

  /**
   * Signs `version` for a staged rollout without making it the fleet's target: only agents admitted with `admit` are sent
   * it, every other selected agent keeps the target. Moving to an older version than the target is signed as a rollback.
   */
  async stage(name: string, version: number, rolloutId: number): Promise<StagedVersion> {
    const v = await this.version(name, version);
    const target = this.targets.get(name)?.record;
    const rollback = target !== undefined && version < target.version;
    const record = this.signDoc(v, rollback, rolloutId);
    const staged: StagedVersion = { rolloutId, record, selector: v.selector, admitted: new Set() };
    this.staged.set(name, staged);
    return staged;
  }

  /** Restores a staged rollout after a restart (its signed document comes from the store). */
  restoreStaged(name: string, staged: StagedVersion): void {
    this.staged.set(name, staged);
  }

  staging(name: string): StagedVersion | undefined {
    return this.staged.get(name);
  }

  /** Lets these agents have the staged version (their wave was reached); connected ones are sent it at once. */
  admit(name: string, agentIds: Iterable<string>): void {
    const s = this.staged.get(name);
    if (!s) return;
    for (const id of agentIds) s.admitted.add(id);
    this.changed();
  }

  /** The staged version becomes the target: every selected agent, also ones enrolled later, gets it. */
  async promote(name: string): Promise<void> {
    const s = this.staged.get(name);
    if (!s) return;
    await this.spec.putTarget(s.record);
    this.targets.set(name, { record: s.record, selector: s.selector });
    this.staged.delete(name);
    this.changed();
  }

  /**
   * Drops the staged version and sends the agents that had it back to the target, re-signed as an explicit rollback issued
   * after the staged one (the agents' replay guard admits exactly that). Without a target the document is removed from them.
   */
  async unstage(name: string): Promise<void> {
    const s = this.staged.get(name);
    if (!s) return;
    const target = this.targets.get(name)?.record;
    this.staged.delete(name);
    if (target && s.admitted.size > 0) {
      const v = await this.version(name, target.version);
      const record = this.signDoc(v, true, target.rolloutId, s.record.issuedAt);
      await this.spec.putTarget(record);
      this.targets.set(name, { record, selector: v.selector });
    }
    this.changed();
  }

  /**
   * Re-signs targets and staged versions past half their validity, so connected agents never reach the expiry while the
   * controller runs — also agents left on the version of a paused or aborted rollout.
   */
  async renewDue(): Promise<number> {
    const now = this.clock.now();
    const due = (r: TargetRecord): boolean => now >= r.issuedAt + (r.expiresAt - r.issuedAt) / 2;
    let renewed = 0;
    for (const t of [...this.targets.values()]) {
      const r = t.record;
      if (!due(r)) continue;
      const v = await this.version(r.name, r.version);
      const record = this.signDoc(v, r.rollback, r.rolloutId);
      await this.spec.putTarget(record);
      this.targets.set(v.name, { record, selector: v.selector });
      renewed++;
    }
    for (const [name, st] of [...this.staged]) {
      if (!due(st.record)) continue;
      const record = this.signDoc(await this.version(name, st.record.version), st.record.rollback, st.rolloutId);
      await this.spec.saveStaged(st.rolloutId, record);
      if (this.staged.get(name) === st) st.record = record;
      renewed++;
    }
    if (renewed > 0) this.changed();
    return renewed;
  }

  /**
   * `r` issued again (same version, content and rollback flag) after `after`: for an agent that accepted a removal of the
   * name later than `r` was signed, and so refuses `r` itself. Kept while no later issue is needed.
   */
  reissue(r: TargetRecord, after: number): TargetRecord {
    const cacheKey = `${r.name}@${r.version}/${r.issuedAt}`;
    const have = this.reissued.get(cacheKey);
    if (have && have.issuedAt > after) return have;
    const issuedAt = this.nextIssuedAt(r.name, after);
    const expiresAt = issuedAt + this.validityMs;
    const payload = Buffer.from(this.spec.reissue(r.payload, { issuedAt, expiresAt }));
    const record: TargetRecord = { ...r, issuedAt, expiresAt, payload, signature: this.spec.sign(this.key, payload), keyId: this.key.keyId };
    if (this.reissued.size >= 10_000) this.reissued.clear();
    this.reissued.set(cacheKey, record);
    return record;
  }

  /** A removal of `name` for one agent, issued after every document of that name signed so far. */
  signRemoval(agentId: string, name: string, version: number): { signed: SignedDoc; issuedAt: number } {
    const issuedAt = this.nextIssuedAt(name);
    const payload = Buffer.from(encodeRemovalDoc({ agentId, name, version, issuedAt }));
    return { signed: { payload, signature: signInDomain(this.key, this.spec.removalDomain, payload), keyId: this.key.keyId }, issuedAt };
  }

  /**
   * The signed documents for an agent, in name order: per name the staged version of a rollout when the agent was admitted
   * to it, else the target when its selector matches.
   */
  assignmentFor(labels: Labels, agentId: string | null = null): KindAssignment {
    const names: string[] = [];
    const docs: Signed[] = [];
    const records: TargetRecord[] = [];
    const keys: string[] = [];
    const all = [...new Set([...this.targets.keys(), ...this.staged.keys()])].sort((a, b) => a.localeCompare(b));
    for (const name of all) {
      const s = this.staged.get(name);
      const chosen = s && agentId !== null && s.admitted.has(agentId) ? { record: s.record, selector: s.selector } : this.targets.get(name);
      if (!chosen || !selectorMatches(chosen.selector ?? undefined, labels)) continue;
      names.push(name);
      docs.push(signedOf(chosen.record));
      records.push(chosen.record);
      keys.push(`${name}@${chosen.record.version}/${chosen.record.issuedAt}`);
    }
    return { names, docs, records, key: keys.join(',') };
  }

  /** A new issue time for `name`: now, or just after anything signed for it before (and after `after`). */
  private nextIssuedAt(name: string, after = 0): number {
    const prev = Math.max(this.targets.get(name)?.record.issuedAt ?? 0, this.staged.get(name)?.record.issuedAt ?? 0, this.lastIssued.get(name) ?? 0, after);
    const issuedAt = Math.max(this.clock.now(), prev + 1);
    this.lastIssued.set(name, issuedAt);
    return issuedAt;
  }

  private signDoc(v: V, rollback: boolean, rolloutId: number, after = 0): TargetRecord {
    // issuedAt strictly increases per name (targets, staged, re-issues and removals): the agent's replay guard compares it.
    const issuedAt = this.nextIssuedAt(v.name, after);
    const expiresAt = issuedAt + this.validityMs;
    const payload = Buffer.from(this.spec.encode(v, { issuedAt, expiresAt, rollback }));
    return { name: v.name, version: v.version, rollback, issuedAt, expiresAt, payload, signature: this.spec.sign(this.key, payload), keyId: this.key.keyId, rolloutId };
  }

  protected changed(): void {
    for (const l of this.listeners) l();
  }
}
