// Policy versions: validated with lib/policy's parser (the same located errors the agent gives), stored immutable, signed
// in their own domain (a policy's signature never verifies as a baseline's, nor its removal as a baseline's removal), and
// assigned, staged, renewed and removed like every signed document (documents.ts).
import type { Clock } from '../lib/clock.js';
import { HsError } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { parsePolicy } from '../lib/policy/index.js';
import { signInDomain, type SigningKey } from '../lib/signing.js';
import { decodePolicyDoc, encodePolicyDoc, type PolicyDoc } from '../proto/codec.js';
import { DEFAULT_SIGNATURE_VALIDITY_MS, DocumentService, type DocumentKindSpec, type SigningContext } from './documents.js';
import type { ControllerStore, PolicyVersionRecord } from './store/types.js';

/** The policy that holds accepted tuning proposals: written by the controller's tuning alone (docs/tuning.md). */
export const TUNING_POLICY = 'homeostat-tuning';

export interface PolicyPushInput {
  yaml: string;
  /** The name the policy is pushed under, for located errors (`fleet.yaml:9:13: ...`). */
  file: string;
  /** Set by tuning only: the one writer of TUNING_POLICY. */
  tuning?: boolean;
}

/** Stored, signed and diffed as policies are. */
export function policyKind(store: ControllerStore): DocumentKindSpec<PolicyVersionRecord> {
  return {
    kind: 'policy',
    getVersion: (name, version) => store.getPolicyVersion(name, version),
    listTargets: () => store.listPolicyTargets(),
    putTarget: (t) => store.putPolicyTarget(t),
    saveStaged: (rolloutId, { payload, signature, keyId, issuedAt, expiresAt }) => store.updateRollout(rolloutId, { signed: { payload, signature, keyId, issuedAt, expiresAt } }),
    encode: (v, when) => encodePolicyDoc(policyDocOf(v, when)),
    reissue: (payload, when) => encodePolicyDoc({ ...decodePolicyDoc(payload), ...when }),
    sign: (key, payload) => signInDomain(key, 'policy', payload),
    removalDomain: 'policy-removal',
    files: (v) => [{ path: `${v.name}.yaml`, bytes: Buffer.from(v.yaml) }],
  };
}

export class PolicyService extends DocumentService<PolicyVersionRecord> {
  constructor(
    private readonly store: ControllerStore,
    key: SigningKey,
    clock: Clock,
    log: Logger,
    validityMs = DEFAULT_SIGNATURE_VALIDITY_MS,
  ) {
    super(policyKind(store), key, clock, log, validityMs);
  }

  /** Validates (PolicyInvalidError listing every problem, located) and stores a new version, or the latest when identical. */
  async push(input: PolicyPushInput): Promise<{ record: PolicyVersionRecord; created: boolean }> {
    const p = parsePolicy(input.yaml, { file: input.file });
    // Its versions are rendered from the accepted proposals; a hand-written one would be replaced at the next accept.
    if (p.name === TUNING_POLICY && input.tuning !== true) {
      throw new HsError('HS_CONFLICT', `${input.file}: the policy name ${TUNING_POLICY} is kept for accepted tuning proposals; give this policy another name`);
    }
    const res = await this.store.addPolicyVersion({
      name: p.name,
      sha256: p.origin.sha256,
      yaml: input.yaml,
      file: input.file,
      description: p.description ?? '',
      selector: p.selector ?? null,
      priority: p.priority,
      rules: p.rules.length,
      windows: p.windows.size,
      createdAt: this.clock.now(),
    });
    if (res.created) this.log.info({ policy: p.name, version: res.record.version }, 'policy version stored');
    return res;
  }
}

/** The document an agent receives for a stored policy version, with the signing context. */
export function policyDocOf(v: PolicyVersionRecord, when: SigningContext): PolicyDoc {
  return { name: v.name, version: v.version, sha256: v.sha256, yaml: v.yaml, file: v.file, ...when };
}
