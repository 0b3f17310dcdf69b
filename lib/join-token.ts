// The enrollment (join) token format both sides read: `hsj1.<id>.<secret>[.<fingerprint>]`. The fingerprint is the sha256 of
// the controller's TLS certificate (base64url), so a token alone lets an agent trust the controller it is enrolling with.
import { createHash } from 'node:crypto';
import { HsError } from './errors.js';

export interface JoinToken {
  id: string;
  secret: string;
  /** null for a controller serving plain ws:// (--insecure-http). */
  fingerprint: string | null;
}

const PREFIX = 'hsj1';
const PART = /^[A-Za-z0-9_-]+$/;

export function formatJoinToken(t: JoinToken): string {
  return [PREFIX, t.id, t.secret, ...(t.fingerprint ? [t.fingerprint] : [])].join('.');
}

export function parseJoinToken(text: string): JoinToken {
  const parts = text.trim().split('.');
  const [prefix, id, secret, fingerprint] = parts;
  if (prefix !== PREFIX || !id || !secret || parts.length > 4 || !parts.slice(1).every((p) => PART.test(p))) {
    throw new HsError('HS_AUTH', 'malformed enrollment token: expected hsj1.<id>.<secret>[.<fingerprint>]');
  }
  return { id, secret, fingerprint: fingerprint ?? null };
}

/** The certificate fingerprint as tokens carry and agents pin it: sha256 of the DER bytes, base64url. */
export function derFingerprint(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('base64url');
}
