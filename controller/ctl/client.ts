// homeostatctl's HTTP client: the operator API over https (trusting a given CA file or a pinned fingerprint) or http.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { HsError } from '../../lib/errors.js';
import { derFingerprint } from '../../lib/join-token.js';

export interface ClientOptions {
  server: string;
  token: string;
  /** PEM of the controller certificate or its CA (e.g. DATA_DIR/tls.crt). */
  ca?: string;
  /** Pinned sha256 fingerprint (base64url) of the controller certificate, as enrollment tokens carry it. */
  fingerprint?: string;
}

export class ApiClient {
  constructor(private readonly opts: ClientOptions) {}

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
            if (!raw || derFingerprint(raw) !== this.opts.fingerprint) req.destroy(new HsError('HS_AUTH', 'controller certificate does not match --fingerprint'));
          });
        });
      }
      req.on('error', (err) => reject(err instanceof HsError ? err : new HsError('HS_CONFIG', `cannot reach ${this.opts.server}: ${err.message}`, { cause: err, retryable: true })));
      req.end(payload);
    });
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // plain text answers (diffs) stay text
    }
    if (status >= 400) {
      const e = (parsed as { error?: { code?: string; message?: string; issues?: { code: string; message: string; location?: { file: string; line: number; column: number; field?: string } }[] } }).error;
      const issues = (e?.issues ?? []).map((i) => `\n  ${i.location ? `${i.location.file}:${i.location.line}:${i.location.column}: ` : ''}${i.message}${i.location?.field ? ` (${i.location.field})` : ''} [${i.code}]`).join('');
      throw new HsError('HS_CONFIG', `${method} ${path}: ${status} ${e?.code ?? ''} ${e?.message ?? text}${issues}`);
    }
    return parsed as T;
  }
}
