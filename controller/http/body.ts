// Request bodies as data: JSON parsed without letting `__proto__` or `constructor.prototype` keys through, and maps whose
// keys come from the client built on null-prototype objects, so a key like `toString` or `__proto__` is only ever data.
import { HsError } from '../../lib/errors.js';

/** JSON text to a value; HS_CONFIG naming what is wrong (the parser's position, or the forbidden key). */
export function parseJsonBody(body: Buffer | string): unknown {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  try {
    return JSON.parse(text, function (this: unknown, key: string, value: unknown) {
      if (key === '__proto__') throw new ForbiddenKey('__proto__');
      if (key === 'constructor' && value !== null && typeof value === 'object' && Object.hasOwn(value, 'prototype')) throw new ForbiddenKey('constructor.prototype');
      return value;
    }) as unknown;
  } catch (err) {
    if (err instanceof ForbiddenKey) throw new HsError('HS_CONFIG', `the request body has a "${err.key}" key, which is never accepted`);
    throw new HsError('HS_CONFIG', `the request body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

class ForbiddenKey extends Error {
  constructor(readonly key: string) {
    super(key);
  }
}

/** A string-keyed map from client data: a null-prototype object, so looking up any key finds only what was sent. */
export function dataMap<V>(entries: Iterable<[string, V]> = []): Record<string, V> {
  const m = Object.create(null) as Record<string, V>;
  for (const [k, v] of entries) m[k] = v;
  return m;
}

/** JSON text an agent sent and the store kept (observed, desired): its value, or the text itself when it is not JSON. */
export function agentJson(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return { unparsed: text };
  }
}
