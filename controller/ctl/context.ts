// Where homeostatctl finds its controller: flags, then environment variables, then the context file that
// `homeostatctl login` writes (~/.config/homeostat/ctl.yaml, mode 0600). The context's credentials go only to the
// server they were saved for.
import { chmodSync, closeSync, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { HsError } from '../../lib/errors.js';

export const DEFAULT_SERVER = 'https://127.0.0.1:7400';

/** What `homeostatctl login` saves: the server, and how to authenticate to it and trust its certificate. */
export interface CtlContext {
  server: string;
  tokenFile?: string;
  token?: string;
  ca?: string;
  fingerprint?: string;
}

/** The connection options as given on the command line. */
export interface ConnectionFlags {
  server?: string;
  token?: string;
  tokenFile?: string;
  ca?: string;
  fingerprint?: string;
}

/** Everything a call needs, resolved; `from` says where the server came from (for messages). */
export interface Connection {
  server: string;
  token: string;
  ca?: string;
  fingerprint?: string;
  /** The file that named the CA, for messages. */
  caFile?: string;
  from: 'flag' | 'env' | 'context' | 'default';
}

const CONTEXT_KEYS = ['server', 'tokenFile', 'token', 'ca', 'fingerprint'] as const;
/** A context file is a few lines; anything larger is not one. */
const MAX_CONTEXT_BYTES = 64 * 1024;
const MAX_TOKEN_BYTES = 4096;

/** `$HOMEOSTAT_CTL_CONFIG`, else `$XDG_CONFIG_HOME/homeostat/ctl.yaml`, else `~/.config/homeostat/ctl.yaml`. */
export function contextPath(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = nonEmpty(env.HOMEOSTAT_CTL_CONFIG);
  if (explicit) return path.resolve(explicit);
  const base = nonEmpty(env.XDG_CONFIG_HOME) ?? path.join(homedir(), '.config');
  return path.join(base, 'homeostat', 'ctl.yaml');
}

/** An environment variable that is set to something: an empty one counts as unset. */
export function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v;
}

/**
 * Reads the context file, or undefined when there is none. Refused when another user owns it or others may write it:
 * root running homeostatctl must not send a token named by a file someone else controls to a server they chose.
 */
export function readContext(file: string): CtlContext | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new HsError('HS_CONFIG', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const st = fstatSync(fd);
    const uid = process.getuid?.() ?? st.uid;
    if (!st.isFile()) throw new HsError('HS_CONFIG', `${file} is not a regular file`);
    if (st.uid !== uid) throw new HsError('HS_CONFIG', `${file} belongs to uid ${st.uid}, not to you (uid ${uid}): remove it, or log in again with homeostatctl login`);
    if ((st.mode & 0o022) !== 0) throw new HsError('HS_CONFIG', `${file} may be changed by other users (mode ${(st.mode & 0o777).toString(8)}): chmod 600 ${file}`);
    if (st.size > MAX_CONTEXT_BYTES) throw new HsError('HS_CONFIG', `${file} is ${st.size} bytes; a context file is a few lines`);
    const text = readFileSync(fd, 'utf8');
    return parseContext(text, file);
  } finally {
    closeSync(fd);
  }
}

function parseContext(text: string, file: string): CtlContext {
  let v: unknown;
  try {
    v = parseYaml(text);
  } catch (err) {
    throw new HsError('HS_CONFIG', `${file}: not YAML (${(err as Error).message}); remove it and log in again with homeostatctl login`, { cause: err });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HsError('HS_CONFIG', `${file}: expected a mapping with server, tokenFile, ca`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!(CONTEXT_KEYS as readonly string[]).includes(k)) throw new HsError('HS_CONFIG', `${file}: unknown key "${k}"; allowed: ${CONTEXT_KEYS.join(', ')}`);
    if (typeof o[k] !== 'string') throw new HsError('HS_CONFIG', `${file}: ${k} must be a string`);
  }
  if (typeof o.server !== 'string') throw new HsError('HS_CONFIG', `${file}: server is missing; log in again with homeostatctl login URL`);
  const out: CtlContext = { server: o.server };
  for (const k of ['tokenFile', 'token', 'ca', 'fingerprint'] as const) if (typeof o[k] === 'string') out[k] = o[k];
  return out;
}

/** Writes the context file 0600 (its folder 0700), replacing any earlier one in one step. */
export function writeContext(file: string, ctx: CtlContext): void {
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  const body = `# homeostatctl's context, written by homeostatctl login; homeostatctl logout removes it.\n${stringifyYaml(ctx)}`;
  rmSync(tmp, { force: true });
  // 'wx': never through a file (or symlink) someone placed at the temporary name.
  writeFileSync(tmp, body, { mode: 0o600, flag: 'wx' });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

/** Removes the context file; false when there was none. */
export function removeContext(file: string): boolean {
  try {
    lstatSync(file);
  } catch {
    return false;
  }
  rmSync(file, { force: true });
  return true;
}

/** Reads a token file's first line, bounded. */
export function readTokenFile(file: string, what: string): string {
  let text: string;
  try {
    const fd = openSync(file, 'r');
    try {
      const st = fstatSync(fd);
      if (st.size > MAX_TOKEN_BYTES) throw new Error(`it is ${st.size} bytes; an operator token is one short line`);
      text = readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    throw new HsError('HS_CONFIG', `cannot read ${what} ${file}: ${errnoText(err)}`, { cause: err });
  }
  const token = (text.split('\n')[0] ?? '').trim();
  if (token === '') throw new HsError('HS_CONFIG', `${what} ${file} is empty`);
  return token;
}

function readCa(file: string, what: string): string {
  try {
    const st = lstatSync(file);
    if (st.size > MAX_CONTEXT_BYTES * 16) throw new Error(`it is ${st.size} bytes; a certificate is a few KiB`);
    const pem = readFileSync(file, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('it holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the controller\'s DATA_DIR/tls.crt');
    return pem;
  } catch (err) {
    throw new HsError('HS_CONFIG', `cannot use ${what} ${file}: ${errnoText(err)}`, { cause: err });
  }
}

function errnoText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return err instanceof Error ? err.message : String(err);
}

const sameServer = (a: string, b: string): boolean => {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return a === b;
  }
};

/**
 * The connection by precedence: flags, then environment (`HOMEOSTAT_SERVER`, `HOMEOSTAT_ADMIN_TOKEN`,
 * `HOMEOSTAT_TOKEN_FILE`, `HOMEOSTAT_CA`, `HOMEOSTAT_FINGERPRINT`), then the context file, each item on its own. The
 * context's token and CA are used only for the server it names.
 */
export function resolveConnection(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env, file = contextPath(env)): Connection {
  if (flags.token !== undefined && flags.tokenFile !== undefined) throw new HsError('HS_CONFIG', 'give --token or --token-file, not both');
  if (flags.ca !== undefined && flags.fingerprint !== undefined) throw new HsError('HS_CONFIG', 'give --ca or --fingerprint, not both');
  const ctx = readContext(file);
  const envServer = nonEmpty(env.HOMEOSTAT_SERVER);
  const [server, from]: [string, Connection['from']] =
    flags.server !== undefined ? [flags.server, 'flag'] : envServer ? [envServer, 'env'] : ctx ? [ctx.server, 'context'] : [DEFAULT_SERVER, 'default'];
  try {
    const u = new URL(server);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('not http');
  } catch {
    throw new HsError('HS_CONFIG', `--server ${JSON.stringify(server)} is not a URL like https://controller.example:7400`);
  }
  const own = ctx !== undefined && sameServer(ctx.server, server) ? ctx : undefined;

  let token: string | undefined;
  if (flags.token !== undefined) token = flags.token;
  else if (flags.tokenFile !== undefined) token = readTokenFile(flags.tokenFile, '--token-file');
  else if (nonEmpty(env.HOMEOSTAT_ADMIN_TOKEN)) token = (env.HOMEOSTAT_ADMIN_TOKEN ?? '').trim();
  else if (nonEmpty(env.HOMEOSTAT_TOKEN_FILE)) token = readTokenFile(env.HOMEOSTAT_TOKEN_FILE ?? '', '$HOMEOSTAT_TOKEN_FILE');
  else if (own?.token !== undefined) token = own.token;
  else if (own?.tokenFile !== undefined) token = readTokenFile(own.tokenFile, `the token file named by ${file},`);
  if (token === undefined || token === '') {
    throw new HsError(
      'HS_AUTH',
      `no operator token for ${server}: pass --token-file DATA_DIR/admin.token (the controller's data dir), set $HOMEOSTAT_ADMIN_TOKEN, or save it once with homeostatctl login ${server} --token-file FILE --ca DATA_DIR/tls.crt`,
    );
  }

  const out: Connection = { server, token, from };
  const trust = (ca: string | undefined, fingerprint: string | undefined, what: string): boolean => {
    if (ca !== undefined) {
      out.ca = readCa(ca, what);
      out.caFile = ca;
      return true;
    }
    if (fingerprint !== undefined) {
      out.fingerprint = fingerprint;
      return true;
    }
    return false;
  };
  if (!trust(flags.ca, flags.fingerprint, '--ca') && !trust(nonEmpty(env.HOMEOSTAT_CA), nonEmpty(env.HOMEOSTAT_FINGERPRINT), '$HOMEOSTAT_CA')) {
    trust(own?.ca, own?.fingerprint, `the CA named by ${file},`);
  }
  return out;
}
