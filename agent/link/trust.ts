// Which signed baselines the agent admits: signed by the pinned controller key, not expired, and only moving forward
// (an older version only as an explicitly signed rollback issued after the current one). Pure, so every rule is testable.
import type { ErrorCode } from '../../lib/errors.js';
import { keyIdOf, verifyBytes } from '../../lib/signing.js';
import { decodeBaselineDoc, decodeDecisionDoc, type BaselineDoc, type Decision, type DecisionDoc, type SignedBaseline } from '../../proto/codec.js';

export type Admission =
  | { kind: 'new'; doc: BaselineDoc }
  /** The version already enforced, re-signed with a later expiry. */
  | { kind: 'renewal'; doc: BaselineDoc }
  /** The version already enforced with an older or equal signature: keep what we have. */
  | { kind: 'unchanged' }
  | { kind: 'refused'; name: string; version: number; code: ErrorCode; message: string };

/** Verifies the signature and decodes; the reason when it does not verify. */
export function verifySigned(s: SignedBaseline, pinnedKey: Uint8Array): { doc: BaselineDoc } | { code: ErrorCode; message: string } {
  if (s.keyId !== keyIdOf(pinnedKey)) return { code: 'HS_BASELINE_SIGNATURE', message: `signed by unknown key ${s.keyId || '(none)'}; the pinned controller key is ${keyIdOf(pinnedKey)}` };
  if (!verifyBytes(pinnedKey, s.payload, s.signature)) return { code: 'HS_BASELINE_SIGNATURE', message: 'the signature does not verify against the pinned controller key' };
  try {
    return { doc: decodeBaselineDoc(s.payload) };
  } catch (err) {
    return { code: 'HS_PROTOCOL', message: err instanceof Error ? err.message : String(err) };
  }
}

export function admit(s: SignedBaseline, pinnedKey: Uint8Array, current: BaselineDoc | undefined, now: number): Admission {
  const v = verifySigned(s, pinnedKey);
  if (!('doc' in v)) return { kind: 'refused', name: current?.name ?? '', version: 0, code: v.code, message: v.message };
  const doc = v.doc;
  const refuse = (code: ErrorCode, message: string): Admission => ({ kind: 'refused', name: doc.name, version: doc.version, code, message });
  if (doc.expiresAt <= now) return refuse('HS_BASELINE_STALE', `${doc.name} v${doc.version}: the signature expired at ${new Date(doc.expiresAt).toISOString()}`);
  if (!current || doc.version > current.version) return { kind: 'new', doc };
  if (doc.version === current.version) {
    if (doc.sha256 !== current.sha256) return refuse('HS_BASELINE_SIGNATURE', `${doc.name} v${doc.version}: content differs from the version already enforced under that number`);
    return doc.issuedAt > current.issuedAt ? { kind: 'renewal', doc } : { kind: 'unchanged' };
  }
  if (doc.rollback && doc.issuedAt > current.issuedAt) return { kind: 'new', doc };
  return refuse('HS_BASELINE_STALE', `${doc.name} v${doc.version} is older than the enforced v${current.version} and not a signed rollback issued after it`);
}

/** A decision the agent may act on: signed by the pinned key and addressed to this agent. */
export function verifyDecision(d: Decision, pinnedKey: Uint8Array, agentId: string): { doc: DecisionDoc } | { message: string } {
  if (d.keyId !== keyIdOf(pinnedKey) || !verifyBytes(pinnedKey, d.payload, d.signature)) return { message: 'decision signature does not verify against the pinned controller key' };
  let doc: DecisionDoc;
  try {
    doc = decodeDecisionDoc(d.payload);
  } catch (err) {
    return { message: err instanceof Error ? err.message : String(err) };
  }
  if (doc.agentId !== agentId) return { message: `decision addressed to ${doc.agentId}, not this agent` };
  return { doc };
}
