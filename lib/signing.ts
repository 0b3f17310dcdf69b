// Ed25519 signatures shared by both sides: the controller signs baseline and policy versions, decisions, plan requests and removals;
// the agent verifies them against the key it pinned from its join token. Keys travel as raw 32-byte public keys; private
// keys stay in PEM on the controller.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

/** The DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 raw key bytes follow it. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: Buffer; // raw 32 bytes
  keyId: string;
}

/**
 * Documents signed with a domain (plans, removals, policies and their removals) are signed as
 * `0x07 "homeostat/<domain>/v1" 0x00 payload`. Baselines and decisions are signed over their bare payload (as since
 * protocol 1); 0x07 is a protobuf tag with the invalid wire type 7, so a domain-signed message never decodes as one of
 * them, and each domain's signatures verify only in that domain: a policy's signature never passes for a baseline's, nor a
 * policy's removal for a baseline's.
 */
export type SigningDomain = 'plan' | 'removal' | 'policy' | 'policy-removal';

function domainMessage(domain: SigningDomain, payload: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([0x07]), Buffer.from(`homeostat/${domain}/v1`), Buffer.from([0]), payload]);
}

export function generateSigningKey(): { pem: string; key: SigningKey } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  return { pem, key: signingKeyFromPem(pem) };
}

export function signingKeyFromPem(pem: string): SigningKey {
  const privateKey = createPrivateKey(pem);
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const publicKey = spki.subarray(ED25519_SPKI_PREFIX.length);
  return { privateKey, publicKey: Buffer.from(publicKey), keyId: keyIdOf(publicKey) };
}

/** A short, stable name for a public key: the first 16 hex digits of its sha256. */
export function keyIdOf(publicKey: Uint8Array): string {
  return createHash('sha256').update(publicKey).digest('hex').slice(0, 16);
}

/** The full sha256 of a raw public key, base64url: what a join token carries so the agent pins the key, not first use. */
export function publicKeyFingerprint(publicKey: Uint8Array): string {
  return createHash('sha256').update(publicKey).digest('base64url');
}

export function signBytes(key: SigningKey, payload: Uint8Array): Buffer {
  return sign(null, payload, key.privateKey);
}

/** True only when `signature` is a valid Ed25519 signature of `payload` by `publicKey` (raw 32 bytes). Never throws. */
export function verifyBytes(publicKey: Uint8Array, payload: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    const key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
    return verify(null, payload, key, signature);
  } catch {
    return false;
  }
}

export function signInDomain(key: SigningKey, domain: SigningDomain, payload: Uint8Array): Buffer {
  return signBytes(key, domainMessage(domain, payload));
}

export function verifyInDomain(publicKey: Uint8Array, domain: SigningDomain, payload: Uint8Array, signature: Uint8Array): boolean {
  return verifyBytes(publicKey, domainMessage(domain, payload), signature);
}
