// Baseline versions and what each agent is assigned: validates and stores immutable versions, signs the version a rollout
// targets and the versions rollouts stage (renewing both before they expire), computes each agent's signed assignment from
// selectors, trusted labels and the waves it was admitted to, and signs removals and re-issues for single agents. Every
// signature of one baseline name gets a strictly later issue time than the one before: the agents' replay guard relies on it.
import { HsError } from '../lib/errors.js';
import type { Clock } from '../lib/clock.js';
import { selectorMatches, type Labels } from '../lib/labels.js';
import type { Logger } from '../lib/log.js';
import { signBytes, signInDomain, type SigningKey } from '../lib/signing.js';
import { unifiedDiff } from '../lib/textdiff.js';
import { decodeBaselineDoc, encodeBaselineDoc, encodeRemovalDoc, type BaselineDoc, type SignedBaseline, type SignedDoc } from '../proto/codec.js';
import type { BaselineVersionRecord, ControllerStore, TargetRecord } from './store/types.js';
import { validateBaseline } from './validate.js';

export const DEFAULT_SIGNATURE_VALIDITY_MS = 30 * 86_400_000;

export interface PushInput {
  yaml: string;
  /** source: files by path relative to the baseline file. */
  sources: Record<string, Buffer>;
  file: string;
}

/** A version a staged rollout hands out wave by wave, and the agents admitted to it so far. */
export interface StagedVersion {
  rolloutId: number;
  record: TargetRecord;
  selector: { matchLabels: Labels } | null;
  admitted: Set<string>;
}

function signedOf(r: TargetRecord): SignedBaseline {
  return { payload: r.payload, signature: r.signature, keyId: r.keyId };
}

interface ActiveTarget {
  record: TargetRecord;
  selector: { matchLabels: Labels } | null;
  signed: SignedBaseline;
}

export class BaselineService {
  private targets = new Map<string, ActiveTarget>();
  private readonly staged = new Map<string, StagedVersion>();
  private readonly listeners = new Set<() => void>();
  /** The latest issue time signed per name (targets, staged, re-issues, removals). */
  private readonly lastIssued = new Map<string, number>();
  /** Documents issued again for agents that removed the name after the original was signed, by source document. */
  private readonly reissued = new Map<string, TargetRecord>();

  constructor(
    private readonly store: ControllerStore,
    private readonly key: SigningKey,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly validityMs = DEFAULT_SIGNATURE_VALIDITY_MS,
  ) {}

  /** Loads the current targets; call once before serving. */
  async load(): Promise<void> {
    const next = new Map<string, ActiveTarget>();
    for (const t of await this.store.listTargets()) {
      const v = await this.store.getBaselineVersion(t.name, t.version);
      next.set(t.name, { record: t, selector: v?.selector ?? null, signed: { payload: t.payload, signature: t.signature, keyId: t.keyId } });
    }
    this.targets = next;
  }

  /** Called whenever any target changes (a rollout or a renewal), so connected agents can be sent their new assignment. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Validates with the agent's own validator and stores a new version (or returns the latest when identical). */
  async push(input: PushInput): Promise<{ record: BaselineVersionRecord; created: boolean }> {
    const b = validateBaseline(input.yaml, input.file, input.sources);
    // fromEntries defines each key as its own, so a source may be named `__proto__`.
    const sources = Object.fromEntries(Object.entries(input.sources).map(([rel, bytes]) => [rel, bytes.toString('base64')]));
    const res = await this.store.addBaselineVersion({
      name: b.name,
      sha256: b.origin.sha256,
      yaml: input.yaml,
      sources,
      file: input.file,
      description: b.description ?? '',
      selector: b.selector ?? null,
      resources: b.resources.length,
      createdAt: this.clock.now(),
    });
    if (res.created) this.log.info({ baseline: b.name, version: res.record.version }, 'baseline version stored');
    return res;
  }

  async version(name: string, version: number): Promise<BaselineVersionRecord> {
    const v = await this.store.getBaselineVersion(name, version);
    if (!v) throw new HsError('HS_NOT_FOUND', `no baseline ${name} version ${version}`);
    return v;
  }

  /** A unified diff of the YAML (and each source file) between two versions. */
  async diff(name: string, from: number, to: number): Promise<string> {
    const [a, b] = [await this.version(name, from), await this.version(name, to)];
    const parts: string[] = [];
    const yamlDiff = unifiedDiff(`${name}.yaml`, Buffer.from(a.yaml), Buffer.from(b.yaml), 1024 * 1024);
    if (a.yaml !== b.yaml) parts.push(yamlDiff ?? `${name}.yaml: differs (too large or binary to show)\n`);
    for (const rel of [...new Set([...Object.keys(a.sources), ...Object.keys(b.sources)])].sort()) {
      const x = Buffer.from((Object.hasOwn(a.sources, rel) ? a.sources[rel] : undefined) ?? '', 'base64');
      const y = Buffer.from((Object.hasOwn(b.sources, rel) ? b.sources[rel] : undefined) ?? '', 'base64');
      if (x.equals(y)) continue;
      parts.push(unifiedDiff(rel, x, y, 1024 * 1024) ?? `${rel}: differs (too large or binary to show)\n`);
    }
    return parts.join('');
  }

  target(name: string): TargetRecord | undefined {
    return this.targets.get(name)?.record;
  }

  listTargets(): TargetRecord[] {
    return [...this.targets.values()].map((t) => t.record);
  }

  selectorOf(name: string): { matchLabels: Labels } | null {
    return this.targets.get(name)?.selector ?? null;
  }

  /**
   * Signs `version` for a staged rollout without making it the fleet's target: only agents admitted with `admit` are sent
   * it, every other selected agent keeps the target. Moving to an older version than the target is signed as a rollback.
   */
  async stage(name: string, version: number, rolloutId: number): Promise<StagedVersion> {
    const v = await this.version(name, version);
    const target = this.targets.get(name)?.record;
    const rollback = target !== undefined && version < target.version;
    const { record } = this.signDoc(v, rollback, rolloutId);
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
    await this.store.putTarget(s.record);
    this.targets.set(name, { record: s.record, selector: s.selector, signed: signedOf(s.record) });
    this.staged.delete(name);
    this.changed();
  }

  /**
   * Drops the staged version and sends the agents that had it back to the target, re-signed as an explicit rollback issued
   * after the staged one (the agents' replay guard admits exactly that). Without a target the baseline is removed from them.
   */
  async unstage(name: string): Promise<void> {
    const s = this.staged.get(name);
    if (!s) return;
    const target = this.targets.get(name)?.record;
    this.staged.delete(name);
    if (target && s.admitted.size > 0) {
      const v = await this.version(name, target.version);
      const { record } = this.signDoc(v, true, target.rolloutId, s.record.issuedAt);
      await this.store.putTarget(record);
      this.targets.set(name, { record, selector: v.selector, signed: signedOf(record) });
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
      await this.sign(await this.version(r.name, r.version), r.rollback, r.rolloutId);
      renewed++;
    }
    for (const [name, st] of [...this.staged]) {
      if (!due(st.record)) continue;
      const { record } = this.signDoc(await this.version(name, st.record.version), st.record.rollback, st.rolloutId);
      // Persisted with the rollout, so a restarted controller hands out the renewed signature.
      const { payload, signature, keyId, issuedAt, expiresAt } = record;
      await this.store.updateRollout(st.rolloutId, { signed: { payload, signature, keyId, issuedAt, expiresAt } });
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
    const doc: BaselineDoc = { ...decodeBaselineDoc(r.payload), issuedAt, expiresAt: issuedAt + this.validityMs };
    const payload = Buffer.from(encodeBaselineDoc(doc));
    const record: TargetRecord = { ...r, issuedAt, expiresAt: doc.expiresAt, payload, signature: signBytes(this.key, payload), keyId: this.key.keyId };
    if (this.reissued.size >= 10_000) this.reissued.clear();
    this.reissued.set(cacheKey, record);
    return record;
  }

  /** A removal of `name` for one agent, issued after every document of that name signed so far. */
  signRemoval(agentId: string, name: string, version: number): { signed: SignedDoc; issuedAt: number } {
    const issuedAt = this.nextIssuedAt(name);
    const payload = Buffer.from(encodeRemovalDoc({ agentId, name, version, issuedAt }));
    return { signed: { payload, signature: signInDomain(this.key, 'removal', payload), keyId: this.key.keyId }, issuedAt };
  }

  /**
   * The signed baselines for an agent, in name order: per name the staged version of a rollout when the agent was admitted
   * to it, else the target when its selector matches. `key` changes whenever the assignment does (so unchanged agents are
   * not sent it again, and agents with the same assignment share one encoded frame).
   */
  assignmentFor(labels: Labels, agentId: string | null = null): { names: string[]; baselines: SignedBaseline[]; records: TargetRecord[]; key: string } {
    const names: string[] = [];
    const baselines: SignedBaseline[] = [];
    const records: TargetRecord[] = [];
    const keys: string[] = [];
    const all = [...new Set([...this.targets.keys(), ...this.staged.keys()])].sort((a, b) => a.localeCompare(b));
    for (const name of all) {
      const s = this.staged.get(name);
      const t = this.targets.get(name);
      let chosen: { record: TargetRecord; selector: { matchLabels: Labels } | null; signed: SignedBaseline } | undefined;
      if (s && agentId !== null && s.admitted.has(agentId)) chosen = { record: s.record, selector: s.selector, signed: signedOf(s.record) };
      else chosen = t;
      if (!chosen || !selectorMatches(chosen.selector ?? undefined, labels)) continue;
      names.push(name);
      baselines.push(chosen.signed);
      records.push(chosen.record);
      keys.push(`${name}@${chosen.record.version}/${chosen.record.issuedAt}`);
    }
    return { names, baselines, records, key: keys.join(',') };
  }

  private async sign(v: BaselineVersionRecord, rollback: boolean, rolloutId: number): Promise<void> {
    const { record } = this.signDoc(v, rollback, rolloutId);
    await this.store.putTarget(record);
    this.targets.set(v.name, { record, selector: v.selector, signed: signedOf(record) });
  }

  /** A new issue time for `name`: now, or just after anything signed for it before (and after `after`). */
  private nextIssuedAt(name: string, after = 0): number {
    const prev = Math.max(this.targets.get(name)?.record.issuedAt ?? 0, this.staged.get(name)?.record.issuedAt ?? 0, this.lastIssued.get(name) ?? 0, after);
    const issuedAt = Math.max(this.clock.now(), prev + 1);
    this.lastIssued.set(name, issuedAt);
    return issuedAt;
  }

  private signDoc(v: BaselineVersionRecord, rollback: boolean, rolloutId: number, after = 0): { record: TargetRecord } {
    // issuedAt strictly increases per name (targets, staged, re-issues and removals): the agent's replay guard compares it.
    const issuedAt = this.nextIssuedAt(v.name, after);
    const doc = baselineDocOf(v, { issuedAt, expiresAt: issuedAt + this.validityMs, rollback });
    const payload = Buffer.from(encodeBaselineDoc(doc));
    const signature = signBytes(this.key, payload);
    const record: TargetRecord = { name: v.name, version: v.version, rollback, issuedAt, expiresAt: doc.expiresAt, payload, signature, keyId: this.key.keyId, rolloutId };
    return { record };
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }
}

/** The document an agent receives for a stored version: the whole baseline, its sources, and the signing context. */
export function baselineDocOf(v: BaselineVersionRecord, when: { issuedAt: number; expiresAt: number; rollback: boolean }): BaselineDoc {
  return {
    name: v.name,
    version: v.version,
    sha256: v.sha256,
    yaml: v.yaml,
    sources: Object.fromEntries(Object.entries(v.sources).map(([k, b64]) => [k, Buffer.from(b64, 'base64')])),
    file: v.file,
    ...when,
  };
}
