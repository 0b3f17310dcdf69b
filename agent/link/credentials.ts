// The agent's enrollment with its controller, kept in STATE_DIR/controller.json (mode 0600): its id and credential,
// the controller's pinned signing key, the pinned TLS certificate fingerprint, and whether it enrolled over plain ws://.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { HsError } from '../../lib/errors.js';

export const CREDENTIALS_FILE = 'controller.json';

export interface LinkCredentials {
  agentId: string;
  credential: string;
  /** The controller's Ed25519 public key, base64 (32 bytes): only baselines it signed are ever applied. */
  signingPublicKey: string;
  /** sha256 of the controller's TLS certificate, base64url; null when enrolled over plain ws://. */
  tlsFingerprint: string | null;
  /** Enrolled over plain ws:// with --insecure-http: only then may the credential travel over ws:// again. */
  insecureHttp: boolean;
  controllerUrl: string;
  enrolledAt: number;
}

export function loadCredentials(stateDir: string): LinkCredentials | undefined {
  const file = path.join(stateDir, CREDENTIALS_FILE);
  if (!existsSync(file)) return undefined;
  try {
    const c = JSON.parse(readFileSync(file, 'utf8')) as Partial<LinkCredentials>;
    if (typeof c.agentId !== 'string' || typeof c.credential !== 'string' || typeof c.signingPublicKey !== 'string') throw new Error('fields missing');
    return {
      agentId: c.agentId,
      credential: c.credential,
      signingPublicKey: c.signingPublicKey,
      tlsFingerprint: typeof c.tlsFingerprint === 'string' ? c.tlsFingerprint : null,
      insecureHttp: c.insecureHttp === true,
      controllerUrl: typeof c.controllerUrl === 'string' ? c.controllerUrl : '',
      enrolledAt: typeof c.enrolledAt === 'number' ? c.enrolledAt : 0,
    };
  } catch (err) {
    throw new HsError('HS_CONFIG', `${file} is unreadable; remove it and enroll again with --token`, { cause: err });
  }
}

export function saveCredentials(stateDir: string, c: LinkCredentials): void {
  const file = path.join(stateDir, CREDENTIALS_FILE);
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(c, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}
