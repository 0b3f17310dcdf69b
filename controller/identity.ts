// The controller's secrets in its data dir, created at first start: the Ed25519 signing key, the operator token and the TLS pair.
// The data dir is 0700 and every file in it 0600, whatever the umask; a file found more open is tightened.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { HsError } from '../lib/errors.js';
import { generateSigningKey, signingKeyFromPem, type SigningKey } from '../lib/signing.js';
import { certFingerprint, generateSelfSignedCert } from './tls/selfsigned.js';

export interface TlsIdentity {
  certPem: string;
  keyPem: string;
  /** base64url sha256 of the certificate's DER: carried in enrollment tokens. */
  fingerprint: string;
  generated: boolean;
}

/** Takes group and other access away from a file of ours (older versions wrote some 0644). */
function tighten(file: string): void {
  const st = lstatSync(file, { throwIfNoEntry: false });
  if (st?.isFile() && (st.mode & 0o077) !== 0) chmodSync(file, st.mode & 0o700);
}

function readOrCreate(file: string, create: () => string): { text: string; created: boolean } {
  if (existsSync(file)) {
    tighten(file);
    return { text: readFileSync(file, 'utf8'), created: false };
  }
  const text = create();
  // wx: two controllers starting on one data dir must not overwrite each other's key.
  writeFileSync(file, text, { mode: 0o600, flag: 'wx' });
  return { text, created: true };
}

/** Creates the data dir 0700 (or tightens it); refuses one that is not a directory or belongs to another user. */
export function ensureDataDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new HsError('HS_CONFIG', `cannot create the data dir ${dir}`, { cause: err });
  }
  const st = statSync(dir);
  if (!st.isDirectory()) throw new HsError('HS_CONFIG', `the data dir ${dir} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new HsError('HS_CONFIG', `the data dir ${dir} belongs to uid ${st.uid}, not to this controller (uid ${uid}): its keys could be read or replaced`);
  if ((st.mode & 0o077) !== 0) chmodSync(dir, st.mode & 0o700);
}

export function loadSigningKey(dataDir: string): SigningKey {
  const { text } = readOrCreate(path.join(dataDir, 'signing.key'), () => generateSigningKey().pem);
  return signingKeyFromPem(text);
}

/** The operator token in a file (--admin-token-file): its first line, which must not be empty. */
export function readAdminTokenFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new HsError('HS_CONFIG', `--admin-token-file ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const token = text.split('\n')[0]?.trim() ?? '';
  if (token === '') throw new HsError('HS_CONFIG', `--admin-token-file ${file} is empty`);
  return token;
}

/** The operator token: the one given, else the one generated at first start into DATA_DIR/admin.token. */
export function loadAdminToken(dataDir: string, given: string | undefined): { token: string; file: string | null; created: boolean } {
  if (given) return { token: given, file: null, created: false };
  const file = path.join(dataDir, 'admin.token');
  const { text, created } = readOrCreate(file, () => `${randomBytes(24).toString('base64url')}\n`);
  return { token: text.trim(), file, created };
}

/** The operator's pair when given; else the generated one in DATA_DIR/tls.crt and tls.key (made for `names`). */
export function loadTls(dataDir: string, opts: { certFile?: string; keyFile?: string; names: string[] }): TlsIdentity {
  if (opts.certFile || opts.keyFile) {
    if (!opts.certFile || !opts.keyFile) throw new HsError('HS_CONFIG', '--tls-cert and --tls-key go together');
    const certPem = readFileSync(opts.certFile, 'utf8');
    return { certPem, keyPem: readFileSync(opts.keyFile, 'utf8'), fingerprint: certFingerprint(certPem), generated: false };
  }
  const certFile = path.join(dataDir, 'tls.crt');
  const keyFile = path.join(dataDir, 'tls.key');
  let generated = false;
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    const pair = generateSelfSignedCert(['localhost', '127.0.0.1', '::1', hostname(), ...opts.names]);
    writeFileSync(keyFile, pair.keyPem, { mode: 0o600 });
    writeFileSync(certFile, pair.certPem, { mode: 0o600 });
    generated = true;
  }
  tighten(keyFile);
  tighten(certFile);
  const certPem = readFileSync(certFile, 'utf8');
  return { certPem, keyPem: readFileSync(keyFile, 'utf8'), fingerprint: certFingerprint(certPem), generated };
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Constant-time comparison of a presented secret with a stored sha256 hex. */
export function secretMatches(presented: string, storedHash: string): boolean {
  const a = Buffer.from(sha256Hex(presented), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
