// A small router of our own: method + path patterns with `:params`, handlers that take a plain request and return a plain
// response, so the whole API runs the same with or without a socket (see app.ts `inject`).
import type { IncomingHttpHeaders } from 'node:http';
import { HsError } from '../../lib/errors.js';

export interface ApiRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: Buffer;
  params: Record<string, string>;
}

export interface ApiResponse {
  status: number;
  headers?: Record<string, string>;
  /** An object or array is sent as JSON; a string as text; a Buffer as is. */
  body?: unknown;
}

export type Handler = (req: ApiRequest) => Promise<ApiResponse>;

export interface Route {
  method: 'GET' | 'POST' | 'DELETE' | 'PUT';
  pattern: string;
  /** `admin` routes need the operator's bearer token. */
  auth: 'admin' | 'none';
  handler: Handler;
}

interface Compiled extends Route {
  regex: RegExp;
  keys: string[];
}

export class Router {
  private readonly routes: Compiled[] = [];

  add(...routes: Route[]): this {
    for (const r of routes) {
      const keys: string[] = [];
      const source = r.pattern
        .split('/')
        .map((seg) => {
          if (!seg.startsWith(':')) return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
          keys.push(seg.slice(1));
          return '([^/]+)';
        })
        .join('/');
      this.routes.push({ ...r, regex: new RegExp(`^${source}/?$`), keys });
    }
    return this;
  }

  /** The route for a request; HS_NOT_FOUND when no path matches, HS_CONFLICT-free 405 signalled by `allowed`. */
  match(method: string, path: string): { route: Route; params: Record<string, string> } | { allowed: string[] } {
    const allowed: string[] = [];
    for (const r of this.routes) {
      const m = r.regex.exec(path);
      if (!m) continue;
      if (r.method !== method) {
        allowed.push(r.method);
        continue;
      }
      const params: Record<string, string> = {};
      r.keys.forEach((k, i) => {
        params[k] = decodeURIComponent(m[i + 1] ?? '');
      });
      return { route: r, params };
    }
    return { allowed };
  }
}

/** Status codes for the error vocabulary; anything unlisted is a server fault. */
export function statusOf(err: HsError): number {
  switch (err.code) {
    case 'HS_AUTH':
      return 401;
    case 'HS_NOT_FOUND':
      return 404;
    case 'HS_CONFLICT':
      return 409;
    case 'HS_CONFIG':
    case 'HS_PROTOCOL':
      return 400;
    default:
      return err.code.startsWith('HS_BASELINE') || err.code === 'HS_RESOURCE_UNKNOWN_TYPE' ? 422 : 500;
  }
}

export function json(status: number, body: unknown): ApiResponse {
  return { status, body };
}

/** The request body as JSON; HS_CONFIG when it is not. */
export function jsonBody<T>(req: ApiRequest): T {
  if (req.body.length === 0) return {} as T;
  try {
    return JSON.parse(req.body.toString('utf8')) as T;
  } catch (err) {
    throw new HsError('HS_CONFIG', 'the request body is not valid JSON', { cause: err });
  }
}
