// Ed25519 signatures shared by both sides: the controller signs baseline versions and decisions, the agent verifies them
// against the key it pinned at enrollment. Keys travel as raw 32-byte public keys; private keys stay in PEM on the controller.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

/** The DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 raw key bytes follow it. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: Buffer; // raw 32 bytes
  keyId: string;
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
