// What the agent admits from the controller: documents (baselines and policies) signed by the pinned controller key, each
// kind in its own way (baselines over their bare payload, policies in the policy domain), not expired, and per name only
// moving forward — an older version only as an explicitly signed rollback issued after the current one; a removal only
// when signed for this agent, in its kind's removal domain, and issued after what it removes; after a removal only
// documents issued later. Plan requests and decisions only when signed for this agent. Pure, so every rule is testable.
import type { ErrorCode } from '../../lib/errors.js';
import { keyIdOf, verifyBytes, verifyInDomain, type SigningDomain } from '../../lib/signing.js';
import {
  decodeBaselineDoc,
  decodeDecisionDoc,
  decodePlanDoc,
  decodePolicyDoc,
  decodeRemovalDoc,
  type BaselineDoc,
  type Decision,
  type DecisionDoc,
  type PlanDoc,
  type PolicyDoc,
  type RemovalDoc,
  type SignedBaseline,
  type SignedDoc,
} from '../../proto/codec.js';

/** What the replay guard reads of every signed document, whatever its kind. */
export interface DocumentHeader {
  name: string;
  version: number;
  sha256: string;
  issuedAt: number;
  expiresAt: number;
  rollback: boolean;
}

export type Admission<D extends DocumentHeader = BaselineDoc> =
  | { kind: 'new'; doc: D }
  /** The version already enforced, re-signed with a later expiry. */
  | { kind: 'renewal'; doc: D }
  /** The version already enforced with an older or equal signature: keep what we have. */
  | { kind: 'unchanged' }
  | { kind: 'refused'; name: string; version: number; code: ErrorCode; message: string };

/** The codes a kind refuses with: a signature that does not hold, a document that is old or expired, or not valid. */
export interface RefusalCodes {
  signature: ErrorCode;
  stale: ErrorCode;
  invalid: ErrorCode;
}

export const BASELINE_CODES: RefusalCodes = { signature: 'HS_BASELINE_SIGNATURE', stale: 'HS_BASELINE_STALE', invalid: 'HS_BASELINE_INVALID' };
export const POLICY_CODES: RefusalCodes = { signature: 'HS_POLICY_SIGNATURE', stale: 'HS_POLICY_STALE', invalid: 'HS_POLICY_INVALID' };

/**
 * The last signed thing the agent accepted for a baseline name, kept across removals and restarts: the version and issue
 * time of the last document, and the issue time of a removal accepted after it (null while the name is enforced).
 */
export interface Prior {
  version: number;
  sha256: string;
  issuedAt: number;
  removedAt?: number | null;
}

export type Refusal = { code: ErrorCode; message: string };

/** Verifies the signature and decodes; the reason when it does not verify. */
export function verifySigned(s: SignedBaseline, pinnedKey: Uint8Array): { doc: BaselineDoc } | Refusal {
  if (s.keyId !== keyIdOf(pinnedKey)) return { code: 'HS_BASELINE_SIGNATURE', message: `signed by unknown key ${s.keyId || '(none)'}; the pinned controller key is ${keyIdOf(pinnedKey)}` };
  if (!verifyBytes(pinnedKey, s.payload, s.signature)) return { code: 'HS_BASELINE_SIGNATURE', message: 'the signature does not verify against the pinned controller key' };
  try {
    return { doc: decodeBaselineDoc(s.payload) };
  } catch (err) {
    return { code: 'HS_PROTOCOL', message: err instanceof Error ? err.message : String(err) };
  }
}

export function admit(s: SignedBaseline, pinnedKey: Uint8Array, prior: Prior | undefined, now: number): Admission {
  const v = verifySigned(s, pinnedKey);
  if (!('doc' in v)) return { kind: 'refused', name: '', version: 0, code: v.code, message: v.message };
  return admitDoc(v.doc, prior, now, BASELINE_CODES);
}

/** A policy document: signed in the policy domain by the pinned key, then the same forward-only rules as baselines. */
export function admitPolicy(s: SignedDoc, pinnedKey: Uint8Array, prior: Prior | undefined, now: number): Admission<PolicyDoc> {
  const v = verifyDomainDoc(s, pinnedKey, 'policy', decodePolicyDoc, POLICY_CODES.signature);
  if (!('doc' in v)) return { kind: 'refused', name: '', version: 0, code: v.code, message: v.message };
  return admitDoc(v.doc, prior, now, POLICY_CODES);
}

/** The replay guard on a verified document: not expired, forward only, rollbacks signed and later, nothing before a removal. */
export function admitDoc<D extends DocumentHeader>(doc: D, prior: Prior | undefined, now: number, codes: RefusalCodes): Admission<D> {
  const refuse = (code: ErrorCode, message: string): Admission<D> => ({ kind: 'refused', name: doc.name, version: doc.version, code, message });
  if (doc.expiresAt <= now) return refuse(codes.stale, `${doc.name} v${doc.version}: the signature expired at ${new Date(doc.expiresAt).toISOString()}`);
  if (!prior) return { kind: 'new', doc };
  const removedAt = prior.removedAt ?? null;
  if (removedAt !== null) {
    // Removed: everything signed up to the removal is void for this name, whatever its version.
    if (doc.issuedAt <= removedAt) return refuse(codes.stale, `${doc.name} v${doc.version} was issued before its removal from this agent at ${new Date(removedAt).toISOString()}`);
    if (doc.version === prior.version && doc.sha256 !== prior.sha256) return refuse(codes.signature, `${doc.name} v${doc.version}: content differs from the version accepted before under that number`);
    if (doc.version < prior.version && !doc.rollback) return refuse(codes.stale, `${doc.name} v${doc.version} is older than v${prior.version} accepted before and not a signed rollback`);
    return { kind: 'new', doc };
  }
  if (doc.version > prior.version) return { kind: 'new', doc };
  if (doc.version === prior.version) {
    if (doc.sha256 !== prior.sha256) return refuse(codes.signature, `${doc.name} v${doc.version}: content differs from the version already enforced under that number`);
    return doc.issuedAt > prior.issuedAt ? { kind: 'renewal', doc } : { kind: 'unchanged' };
  }
  if (doc.rollback && doc.issuedAt > prior.issuedAt) return { kind: 'new', doc };
  return refuse(codes.stale, `${doc.name} v${doc.version} is older than the enforced v${prior.version} and not a signed rollback issued after it`);
}

function verifyDomainDoc<T>(s: SignedDoc, pinnedKey: Uint8Array, domain: SigningDomain, decode: (b: Uint8Array) => T, code: ErrorCode = 'HS_BASELINE_SIGNATURE'): { doc: T } | Refusal {
  if (s.keyId !== keyIdOf(pinnedKey) || !verifyInDomain(pinnedKey, domain, s.payload, s.signature)) {
    return { code, message: `${domain} signature does not verify against the pinned controller key` };
  }
  try {
    return { doc: decode(s.payload) };
  } catch (err) {
    return { code: 'HS_PROTOCOL', message: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * A removal the agent may act on: signed by the pinned key in the removal domain of its kind (`removal` for baselines,
 * `policy-removal` for policies) and addressed to this agent.
 */
export function verifyRemoval(s: SignedDoc, pinnedKey: Uint8Array, agentId: string, domain: 'removal' | 'policy-removal' = 'removal'): { doc: RemovalDoc } | Refusal {
  const code = domain === 'removal' ? BASELINE_CODES.signature : POLICY_CODES.signature;
  const v = verifyDomainDoc(s, pinnedKey, domain, decodeRemovalDoc, code);
  if (!('doc' in v)) return v;
  if (v.doc.agentId !== agentId) return { code, message: `removal of ${v.doc.name} addressed to ${v.doc.agentId || '(nobody)'}, not this agent` };
  return v;
}

/** Whether a verified removal ends the enforcement described by `prior`: only when issued after everything accepted for the name. */
export function removalApplies(r: RemovalDoc, prior: Prior | undefined): boolean {
  if (!prior) return true;
  return r.issuedAt > Math.max(prior.issuedAt, prior.removedAt ?? 0);
}

/** A plan request the agent may answer: signed in the plan domain by the pinned key, for this agent and plan, not expired. */
export function verifyPlan(s: SignedDoc | null, planId: string, pinnedKey: Uint8Array, agentId: string, now: number): { doc: PlanDoc } | Refusal {
  if (!s || s.payload.length === 0) return { code: 'HS_BASELINE_SIGNATURE', message: 'plan request is not signed by the controller' };
  const v = verifyDomainDoc(s, pinnedKey, 'plan', decodePlanDoc);
  if (!('doc' in v)) return v;
  const d = v.doc;
  if (d.agentId !== agentId) return { code: 'HS_BASELINE_SIGNATURE', message: `plan ${d.planId} addressed to ${d.agentId || '(nobody)'}, not this agent` };
  if (d.planId !== planId) return { code: 'HS_BASELINE_SIGNATURE', message: `plan request ${planId} carries the signed plan ${d.planId}` };
  if (d.expiresAt <= now) return { code: 'HS_BASELINE_STALE', message: `plan ${d.planId} expired at ${new Date(d.expiresAt).toISOString()}` };
  return v;
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
