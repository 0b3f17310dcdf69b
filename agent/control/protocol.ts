// The local control channel between `homeostat-agent` commands and the running daemon: one JSON request and one JSON
// answer per connection over a unix socket in the root-only state dir (mode 0600), bounded before it is parsed.
import path from 'node:path';
import { HsError } from '../../lib/errors.js';

export const CONTROL_SOCKET = 'control.sock';
/** A request is a few hundred bytes; anything past this is refused before it is parsed. */
export const MAX_REQUEST_BYTES = 16 * 1024;
/** A client that does not finish its request within this is disconnected. */
export const REQUEST_TIMEOUT_MS = 10_000;

export type BaselineSource = 'local' | 'controller';

export type ControlRequest =
  | { op: 'approve'; id: number; by: string }
  | { op: 'reject'; id: number; reason: string; expiresAt: number; by: string }
  | { op: 'forget'; name: string; source?: BaselineSource; by: string };

export type ControlAnswer = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } };

export function socketPath(stateDir: string): string {
  return path.join(stateDir, CONTROL_SOCKET);
}

/** Checks a request's shape; throws HS_CONFIG naming the field that is wrong. */
export function parseRequest(text: string): ControlRequest {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new HsError('HS_CONFIG', 'control request: not JSON');
  }
  const r = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  const str = (k: string, max = 1000): string => {
    const x = r[k];
    if (typeof x !== 'string' || x.length === 0 || x.length > max) throw new HsError('HS_CONFIG', `control request: '${k}' must be a string of 1 to ${max} characters`);
    return x;
  };
  const int = (k: string): number => {
    const x = r[k];
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 1) throw new HsError('HS_CONFIG', `control request: '${k}' must be a positive integer`);
    return x;
  };
  switch (r.op) {
    case 'approve':
      return { op: 'approve', id: int('id'), by: str('by', 200) };
    case 'reject':
      return { op: 'reject', id: int('id'), reason: str('reason'), expiresAt: int('expiresAt'), by: str('by', 200) };
    case 'forget': {
      const source = r.source;
      if (source !== undefined && source !== 'local' && source !== 'controller') throw new HsError('HS_CONFIG', "control request: 'source' must be local or controller");
      return { op: 'forget', name: str('name', 253), by: str('by', 200), ...(source ? { source } : {}) };
    }
    default:
      throw new HsError('HS_CONFIG', `control request: unknown op ${JSON.stringify(r.op)}`);
  }
}
