// Operator authentication at the HTTP edge: the bearer token (homeostatctl, scripts), or a dashboard session cookie that a
// login with the same token sets (HttpOnly, SameSite=Strict) together with a CSRF token the page must echo on changes.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Clock } from '../../lib/clock.js';

export const SESSION_COOKIE = 'hs_session';
export const CSRF_HEADER = 'x-csrf-token';
export const SESSION_TTL_MS = 12 * 3_600_000;
/** Sessions held at once; the oldest is dropped past it, so logins cannot grow the controller. */
export const MAX_SESSIONS = 64;

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Constant-time equality of two secrets of any length (their digests are compared). */
export function secretEquals(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}

export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(headers.authorization ?? '');
  return m?.[1];
}

/** The value of one cookie, when the Cookie header carries it exactly once. */
export function cookieValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const found: string[] = [];
  for (const part of (headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) found.push(part.slice(eq + 1).trim());
  }
  return found.length === 1 ? found[0] : undefined;
}

interface Session {
  csrf: string;
  expiresAt: number;
}

export type AuthResult = { ok: true; via: 'token' | 'session' } | { ok: false; reason: string };

export class OperatorAuth {
  /** By sha256 of the cookie value: the cookie itself is never kept. */
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly adminToken: string,
    private readonly clock: Clock,
    private readonly secureCookies: boolean,
  ) {}

  /** Who may call an admin route: a changing method on a session also needs the CSRF header. */
  check(method: string, headers: IncomingHttpHeaders): AuthResult {
    const bearer = bearerToken(headers);
    if (bearer !== undefined) return secretEquals(bearer, this.adminToken) ? { ok: true, via: 'token' } : { ok: false, reason: 'wrong operator token' };
    const s = this.session(headers);
    if (!s) return { ok: false, reason: 'missing or wrong operator token' };
    if (method !== 'GET' && method !== 'HEAD') {
      const presented = headers[CSRF_HEADER];
      if (typeof presented !== 'string' || !secretEquals(presented, s.csrf)) return { ok: false, reason: `a dashboard session needs the ${CSRF_HEADER} header on changes` };
    }
    return { ok: true, via: 'session' };
  }

  /** A new session for the operator token, or undefined when the token is wrong. */
  login(token: string): { cookie: string; csrf: string; expiresAt: number } | undefined {
    if (!secretEquals(token, this.adminToken)) return undefined;
    const now = this.clock.now();
    for (const [k, s] of this.sessions) if (s.expiresAt <= now) this.sessions.delete(k);
    while (this.sessions.size >= MAX_SESSIONS) {
      const oldest = this.sessions.keys().next();
      if (oldest.done) break;
      this.sessions.delete(oldest.value);
    }
    const value = randomBytes(32).toString('base64url');
    const session = { csrf: randomBytes(24).toString('base64url'), expiresAt: now + SESSION_TTL_MS };
    this.sessions.set(digest(value).toString('hex'), session);
    return { cookie: this.cookie(value, SESSION_TTL_MS), ...session };
  }

  /** The CSRF token and expiry of the session the request carries. */
  current(headers: IncomingHttpHeaders): Session | undefined {
    return this.session(headers);
  }

  /** Ends the request's session; returns the cookie that clears it in the browser. */
  logout(headers: IncomingHttpHeaders): string {
    const v = cookieValue(headers, SESSION_COOKIE);
    if (v !== undefined) this.sessions.delete(digest(v).toString('hex'));
    return this.cookie('', 0);
  }

  private session(headers: IncomingHttpHeaders): Session | undefined {
    const v = cookieValue(headers, SESSION_COOKIE);
    if (v === undefined) return undefined;
    const k = digest(v).toString('hex');
    const s = this.sessions.get(k);
    if (s && s.expiresAt <= this.clock.now()) {
      this.sessions.delete(k);
      return undefined;
    }
    return s;
  }

  private cookie(value: string, maxAgeMs: number): string {
    return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(maxAgeMs / 1000)}${this.secureCookies ? '; Secure' : ''}`;
  }
}
