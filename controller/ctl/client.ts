// homeostatctl's HTTP client: the operator API over https (trusting a given CA file or a pinned fingerprint) or http.
// An API error keeps the code the controller gave it; a connection or TLS failure says what to pass instead.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { ERROR_CODES, HsError, type ErrorCode } from '../../lib/errors.js';
import { derFingerprint } from '../../lib/join-token.js';

export interface ClientOptions {
  server: string;
  token: string;
  /** PEM of the controller certificate or its CA (e.g. DATA_DIR/tls.crt). */
  ca?: string;
  /** Pinned sha256 fingerprint (base64url) of the controller certificate, as enrollment tokens carry it. */
  fingerprint?: string;
}

/** A located problem the API returned with a 422. */
export interface ApiIssue {
  code: string;
  message: string;
  location?: { file: string; line: number; column: number; field?: string };
}

/** An error answer of the controller: its own code (HS_CONFLICT, HS_NOT_FOUND, ...), status and located issues. */
export class ApiError extends HsError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly status: number,
    readonly request: string,
    readonly issues: ApiIssue[],
  ) {
    super(code, message);
    this.name = 'ApiError';
  }

  override describe(): string {
    const issues = this.issues.map((i) => `\n  ${i.location ? `${i.location.file}:${i.location.line}:${i.location.column}: ` : ''}${i.message}${i.location?.field ? ` (${i.location.field})` : ''} [${i.code}]`).join('');
    return `${this.message} (${this.status} ${this.code} from ${this.request})${this.hint()}${issues}`;
  }

  private hint(): string {
    if (this.status === 401) return '\n  the operator token was refused: pass the one in the controller\'s DATA_DIR/admin.token with --token-file, or log in again with homeostatctl login';
    return '';
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), status: this.status, request: this.request, ...(this.issues.length > 0 ? { issues: this.issues } : {}) };
  }
}

const isErrorCode = (c: unknown): c is ErrorCode => typeof c === 'string' && Object.hasOwn(ERROR_CODES, c);

/** Node's codes for a certificate it could not verify. */
const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** What to tell the operator about a failed connection, by its cause. */
export function connectionError(server: string, err: NodeJS.ErrnoException, trusting: { ca?: boolean; fingerprint?: boolean }): HsError {
  const code = err.code ?? '';
  const u = new URL(server);
  const where = `${u.hostname}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`;
  let say: string;
  let errCode: ErrorCode = 'HS_CONFIG';
  let retryable = false;
  if (UNTRUSTED.has(code)) {
    errCode = 'HS_AUTH';
    say = trusting.ca
      ? `the certificate of ${server} is not the one --ca names (${code}): give the controller's own DATA_DIR/tls.crt (or the CA that signed its --tls-cert)`
      : `the certificate of ${server} is not trusted (${code}): pass --ca DATA_DIR/tls.crt (the controller's data dir), or --fingerprint SHA256 (the last part of a join token), or save either once with homeostatctl login ${server} --token-file FILE --ca FILE`;
  } else if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    errCode = 'HS_AUTH';
    say = `the certificate of ${server} is ${code === 'CERT_HAS_EXPIRED' ? 'expired' : 'not valid yet'}: renew the controller's certificate (or check this machine's clock)`;
  } else if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number/i.test(err.message)) {
    say = `${server} does not speak TLS: if the controller runs with --insecure-http, use http://${where}`;
  } else if (code === 'ECONNREFUSED') {
    retryable = true;
    say = `nothing listens at ${where}: is the controller running, and is --server (or $HOMEOSTAT_SERVER, or the context of homeostatctl login) right?`;
  } else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    retryable = code === 'EAI_AGAIN';
    say = `cannot resolve ${u.hostname}: check --server`;
  } else if ((code === 'ECONNRESET' || /socket hang up/i.test(err.message)) && u.protocol === 'http:') {
    say = `${server} closed the connection: if the controller serves TLS (the default), use https://${where} with --ca DATA_DIR/tls.crt`;
  } else {
    retryable = true;
    say = `cannot reach ${server}: ${err.message}`;
  }
  return new HsError(errCode, say, { cause: err, retryable });
}

export class ApiClient {
  constructor(private readonly opts: ClientOptions) {}

  get server(): string {
    return this.opts.server;
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = new URL(path, this.opts.server);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { authorization: `Bearer ${this.opts.token}`, accept: 'application/json' };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    const tlsOpts: RequestOptions = this.opts.fingerprint ? { rejectUnauthorized: false } : this.opts.ca ? { ca: this.opts.ca, checkServerIdentity: () => undefined } : {};
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = send(url, { method, headers, ...(url.protocol === 'https:' ? tlsOpts : {}) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      });
      if (url.protocol === 'https:' && this.opts.fingerprint) {
        req.on('socket', (s) => {
          s.once('secureConnect', () => {
            const raw = (s as TLSSocket).getPeerCertificate().raw;
            if (!raw || derFingerprint(raw) !== this.opts.fingerprint) {
              req.destroy(new HsError('HS_AUTH', `the certificate of ${this.opts.server} does not match --fingerprint: check the fingerprint (the last part of a join token this controller made), or pass --ca DATA_DIR/tls.crt`));
            }
          });
        });
      }
      req.on('error', (err) => reject(err instanceof HsError ? err : connectionError(this.opts.server, err, { ca: this.opts.ca !== undefined, fingerprint: this.opts.fingerprint !== undefined })));
      req.end(payload);
    });
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // plain text answers (diffs) stay text
    }
    if (status >= 400) {
      const e = (parsed as { error?: { code?: unknown; message?: unknown; issues?: ApiIssue[] } } | null)?.error;
      const code = isErrorCode(e?.code) ? e.code : status === 401 ? 'HS_AUTH' : status === 404 ? 'HS_NOT_FOUND' : 'HS_PROTOCOL';
      const message = typeof e?.message === 'string' ? e.message : text.slice(0, 500) || `HTTP ${status}`;
      throw new ApiError(code, message, status, `${method} ${path.split('?')[0] ?? path}`, Array.isArray(e?.issues) ? e.issues : []);
    }
    return parsed as T;
  }
}
