// Request bodies as data: JSON parsed without letting `__proto__` or `constructor.prototype` keys through, and maps whose
// keys come from the client built on null-prototype objects, so a key like `toString` or `__proto__` is only ever data.
import { HsError } from '../../lib/errors.js';

/**
 * JSON text to a value; HS_CONFIG naming what is wrong (the parser's position, or the forbidden key). `dataMaps` names
 * top-level members whose keys are names the client chose (a push's `sources`: file names): there a `__proto__` key is a
 * name like any other, for a route that copies the member into a dataMap.
 */
export function parseJsonBody(body: Buffer | string, opts: { dataMaps?: readonly string[] } = {}): unknown {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  // Objects holding a `__proto__` key (JSON.parse keeps it an own property): allowed only if they are one of `dataMaps`.
  const holders: unknown[] = [];
  try {
    const v = JSON.parse(text, function (this: unknown, key: string, value: unknown) {
      if (key === '__proto__') holders.push(this);
      if (key === 'constructor' && value !== null && typeof value === 'object' && Object.hasOwn(value, 'prototype')) throw new ForbiddenKey('constructor.prototype');
      return value;
    }) as unknown;
    if (holders.length > 0) {
      const top = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
      const allowed = new Set((opts.dataMaps ?? []).filter((k) => Object.hasOwn(top, k)).map((k) => top[k]));
      if (holders.some((h) => !allowed.has(h))) throw new ForbiddenKey('__proto__');
    }
    return v;
  } catch (err) {
    if (err instanceof ForbiddenKey) throw new HsError('HS_CONFIG', `the request body has a "${err.key}" key where none is accepted`);
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
