// Baseline versions: validated with the agent's own validator and stored immutable, signed over their bare payload (as
// since protocol 1), and assigned, staged, renewed and removed like every signed document (documents.ts).
import type { Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { signBytes, type SigningKey } from '../lib/signing.js';
import { decodeBaselineDoc, encodeBaselineDoc, type BaselineDoc } from '../proto/codec.js';
import { DEFAULT_SIGNATURE_VALIDITY_MS, DocumentService, type DocumentKindSpec, type SigningContext } from './documents.js';
import type { BaselineVersionRecord, ControllerStore } from './store/types.js';
import { validateBaseline } from './validate.js';

export { DEFAULT_SIGNATURE_VALIDITY_MS, type StagedVersion } from './documents.js';

export interface PushInput {
  yaml: string;
  /** source: files by path relative to the baseline file. */
  sources: Record<string, Buffer>;
  file: string;
}

/** Stored, signed and diffed as baselines are. */
export function baselineKind(store: ControllerStore): DocumentKindSpec<BaselineVersionRecord> {
  return {
    kind: 'baseline',
    getVersion: (name, version) => store.getBaselineVersion(name, version),
    listTargets: () => store.listTargets(),
    putTarget: (t) => store.putTarget(t),
    saveStaged: (rolloutId, { payload, signature, keyId, issuedAt, expiresAt }) => store.updateRollout(rolloutId, { signed: { payload, signature, keyId, issuedAt, expiresAt } }),
    encode: (v, when) => encodeBaselineDoc(baselineDocOf(v, when)),
    reissue: (payload, when) => encodeBaselineDoc({ ...decodeBaselineDoc(payload), ...when }),
    sign: signBytes,
    removalDomain: 'removal',
    files: (v) => [
      { path: `${v.name}.yaml`, bytes: Buffer.from(v.yaml) },
      ...Object.keys(v.sources)
        .sort()
        .map((rel) => ({ path: rel, bytes: Buffer.from(v.sources[rel] ?? '', 'base64') })),
    ],
  };
}

export class BaselineService extends DocumentService<BaselineVersionRecord> {
  constructor(
    private readonly store: ControllerStore,
    key: SigningKey,
    clock: Clock,
    log: Logger,
    validityMs = DEFAULT_SIGNATURE_VALIDITY_MS,
  ) {
    super(baselineKind(store), key, clock, log, validityMs);
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
}

/** The document an agent receives for a stored version: the whole baseline, its sources, and the signing context. */
export function baselineDocOf(v: BaselineVersionRecord, when: SigningContext): BaselineDoc {
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
