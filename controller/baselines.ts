// Baseline versions and what each agent is assigned: validates and stores immutable versions, signs the version a rollout
// targets (renewing signatures before they expire), and computes each agent's signed assignment from selectors and labels.
import { HsError } from '../lib/errors.js';
import type { Clock } from '../lib/clock.js';
import { selectorMatches, type Labels } from '../lib/labels.js';
import type { Logger } from '../lib/log.js';
import { signBytes, type SigningKey } from '../lib/signing.js';
import { unifiedDiff } from '../lib/textdiff.js';
import { encodeBaselineDoc, type BaselineDoc, type SignedBaseline } from '../proto/codec.js';
import type { BaselineVersionRecord, ControllerStore, RolloutRecord, TargetRecord } from './store/types.js';
import { validateBaseline } from './validate.js';

export const DEFAULT_SIGNATURE_VALIDITY_MS = 30 * 86_400_000;

export interface PushInput {
  yaml: string;
  /** source: files by path relative to the baseline file. */
  sources: Record<string, Buffer>;
  file: string;
}

interface ActiveTarget {
  record: TargetRecord;
  selector: { matchLabels: Labels } | null;
  signed: SignedBaseline;
}

export class BaselineService {
  private targets = new Map<string, ActiveTarget>();
  private readonly listeners = new Set<() => void>();

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
    const sources: Record<string, string> = {};
    for (const [rel, bytes] of Object.entries(input.sources)) sources[rel] = bytes.toString('base64');
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
      const x = Buffer.from(a.sources[rel] ?? '', 'base64');
      const y = Buffer.from(b.sources[rel] ?? '', 'base64');
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

  /** Makes `version` the one every selected agent enforces. Moving to an older version is signed as an explicit rollback. */
  async rollout(name: string, version: number): Promise<RolloutRecord> {
    const v = await this.version(name, version);
    const previous = this.targets.get(name)?.record;
    const rollback = previous !== undefined && version < previous.version;
    const rollout = await this.store.addRollout({
      baseline: name,
      version,
      previousVersion: previous?.version ?? null,
      strategy: 'all-at-once',
      rollback,
      createdAt: this.clock.now(),
    });
    await this.sign(v, rollback, rollout.id);
    this.log.info({ baseline: name, version, rollback, rollout: rollout.id }, 'rollout started');
    this.changed();
    return rollout;
  }

  /** Re-signs targets past half their validity, so connected agents never reach the expiry while the controller runs. */
  async renewDue(): Promise<number> {
    const now = this.clock.now();
    let renewed = 0;
    for (const t of [...this.targets.values()]) {
      const r = t.record;
      if (now < r.issuedAt + (r.expiresAt - r.issuedAt) / 2) continue;
      await this.sign(await this.version(r.name, r.version), r.rollback, r.rolloutId);
      renewed++;
    }
    if (renewed > 0) this.changed();
    return renewed;
  }

  /** The signed baselines whose selectors match these labels, in name order. */
  assignmentFor(labels: Labels): { names: string[]; baselines: SignedBaseline[] } {
    const names: string[] = [];
    const baselines: SignedBaseline[] = [];
    for (const [name, t] of [...this.targets.entries()].sort(([a], [b]) => a.localeCompare(b))) {
      if (!selectorMatches(t.selector ?? undefined, labels)) continue;
      names.push(name);
      baselines.push(t.signed);
    }
    return { names, baselines };
  }

  /** A key that changes whenever the assignment for these names changes (so unchanged agents are not sent it again). */
  assignmentKey(names: string[]): string {
    return names.map((n) => `${n}@${this.targets.get(n)?.record.version ?? 0}/${this.targets.get(n)?.record.issuedAt ?? 0}`).join(',');
  }

  private async sign(v: BaselineVersionRecord, rollback: boolean, rolloutId: number): Promise<void> {
    // issuedAt strictly increases per name: the agent's replay guard compares it for rollbacks.
    const prevIssued = this.targets.get(v.name)?.record.issuedAt ?? 0;
    const issuedAt = Math.max(this.clock.now(), prevIssued + 1);
    const doc: BaselineDoc = {
      name: v.name,
      version: v.version,
      sha256: v.sha256,
      yaml: v.yaml,
      sources: Object.fromEntries(Object.entries(v.sources).map(([k, b64]) => [k, Buffer.from(b64, 'base64')])),
      file: v.file,
      issuedAt,
      expiresAt: issuedAt + this.validityMs,
      rollback,
    };
    const payload = Buffer.from(encodeBaselineDoc(doc));
    const signature = signBytes(this.key, payload);
    const record: TargetRecord = { name: v.name, version: v.version, rollback, issuedAt, expiresAt: doc.expiresAt, payload, signature, keyId: this.key.keyId, rolloutId };
    await this.store.putTarget(record);
    this.targets.set(v.name, { record, selector: v.selector, signed: { payload, signature, keyId: this.key.keyId } });
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }
}
