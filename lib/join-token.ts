// The enrollment (join) token format both sides read: `hsj2.<id>.<secret>.<key>[.<tls>]`. `key` is the fingerprint of the
// controller's Ed25519 signing key and `tls` that of its TLS certificate (both sha256, base64url), so the token alone tells
// an agent which controller to trust: the certificate is checked before anything is sent, the signing key before anything is
// saved. Tokens of the first format (`hsj1.<id>.<secret>[.<tls>]`) pin no signing key; agents refuse to enroll with them.
import { createHash } from 'node:crypto';
import { HsError } from './errors.js';

export interface JoinToken {
  /** 2 for the current format; 1 for the first one, which carries no signing-key fingerprint. */
  format: 1 | 2;
  id: string;
  secret: string;
  /** sha256 of the controller's raw Ed25519 public key (base64url); null only in format 1. */
  signingKey: string | null;
  /** sha256 of the controller's TLS certificate (base64url); null for a controller serving plain ws:// (--insecure-http). */
  fingerprint: string | null;
}

const PART = /^[A-Za-z0-9_-]+$/;
const FINGERPRINT = /^[A-Za-z0-9_-]{43}$/;

export function formatJoinToken(t: { id: string; secret: string; signingKey: string; fingerprint: string | null }): string {
  return ['hsj2', t.id, t.secret, t.signingKey, ...(t.fingerprint ? [t.fingerprint] : [])].join('.');
}

export function parseJoinToken(text: string): JoinToken {
  const parts = text.trim().split('.');
  const [prefix, id, secret, third, fourth] = parts;
  const wellFormed = !!id && !!secret && parts.slice(1).every((p) => PART.test(p));
  if (prefix === 'hsj2' && wellFormed && parts.length >= 4 && parts.length <= 5 && FINGERPRINT.test(third ?? '')) {
    return { format: 2, id, secret, signingKey: third ?? null, fingerprint: fourth ?? null };
  }
  if (prefix === 'hsj1' && wellFormed && parts.length <= 4) return { format: 1, id, secret, signingKey: null, fingerprint: third ?? null };
  throw new HsError('HS_AUTH', 'malformed enrollment token: expected hsj2.<id>.<secret>.<signing-key>[.<tls-fingerprint>]');
}

/** The certificate fingerprint as tokens carry and agents pin it: sha256 of the DER bytes, base64url. */
export function derFingerprint(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('base64url');
}
