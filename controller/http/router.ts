// The route contract: method + path patterns with `:params`, handlers that take a plain request and return a plain
// response, so a route module knows nothing of the HTTP framework underneath (app.ts) and runs the same with or without
// a socket.
import type { IncomingHttpHeaders } from 'node:http';
import { HsError } from '../../lib/errors.js';
import { parseJsonBody } from './body.js';

export interface ApiRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** The raw body, at most the route's `bodyLimit` bytes; empty when none was sent. */
  body: Buffer;
  /** Path parameters, decoded; a null-prototype object, so only the route's own keys are there. */
  params: Record<string, string>;
}

export interface ApiResponse {
  status: number;
  headers?: Record<string, string | string[]>;
  /** An object or array is sent as JSON; a string as text; a Buffer as is. */
  body?: unknown;
}

export type Handler = (req: ApiRequest) => Promise<ApiResponse>;

export interface Route {
  method: 'GET' | 'POST' | 'DELETE' | 'PUT';
  pattern: string;
  /** `admin` routes need the operator: the bearer token, or a dashboard session (plus its CSRF token on changes). */
  auth: 'admin' | 'none';
  /** Largest body accepted, in bytes. Default: 64 KiB for admin routes, none at all for open ones. */
  bodyLimit?: number;
  /** Attempts per minute and address (open routes that check a secret, such as the dashboard login). */
  rateLimitPerMinute?: number;
  handler: Handler;
}

export const DEFAULT_ADMIN_BODY_LIMIT = 64 * 1024;

/** Status codes for the error vocabulary; anything unlisted is a server fault. */
export function statusOf(err: HsError): number {
  switch (err.code) {
    case 'HS_AUTH':
      return 401;
    case 'HS_NOT_FOUND':
      return 404;
    case 'HS_CONFLICT':
      return 409;
    case 'HS_TOO_LARGE':
      return 413;
    case 'HS_RATE_LIMITED':
      return 429;
    case 'HS_CONFIG':
    case 'HS_PROTOCOL':
      return 400;
    default:
      return err.code.startsWith('HS_BASELINE') || err.code.startsWith('HS_POLICY') || err.code === 'HS_RESOURCE_UNKNOWN_TYPE' ? 422 : 500;
  }
}

export function json(status: number, body: unknown): ApiResponse {
  return { status, body };
}

/**
 * The request body as a JSON object (an empty body is `{}`); HS_CONFIG when it is not JSON, not an object, or carries
 * `__proto__` or `constructor.prototype` keys, which could otherwise reach inherited properties of objects built from it
 * (`__proto__` is a name like any other inside the `dataMaps` members, see parseJsonBody).
 */
export function jsonBody<T>(req: ApiRequest, opts: { dataMaps?: readonly string[] } = {}): T {
  if (req.body.length === 0) return {} as T;
  const v = parseJsonBody(req.body, opts);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new HsError('HS_CONFIG', 'the request body must be a JSON object');
  return v as T;
}
