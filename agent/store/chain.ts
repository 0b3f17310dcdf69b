// The audit hash chain's rule: hash = sha256(prevHash + canonical JSON of the record without prevHash and hash).
import { createHash, hash } from 'node:crypto';
import type { AuditEntry } from './types.js';

/** prevHash of the first record. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * JSON with object keys sorted (by UTF-16 code unit, JavaScript's default order) at every depth and no whitespace.
 * Otherwise JSON.stringify's rules: toJSON is honoured, undefined/functions are left out of objects and become null in
 * arrays, non-finite numbers become null. Parsing the output and canonicalising again gives the same text.
 */
export function canonicalJson(value: unknown): string {
  return write(value) ?? 'null';
}

function write(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return Number.isFinite(v) ? JSON.stringify(v) : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    case 'bigint':
      throw new TypeError('canonical JSON cannot represent a bigint');
    case 'object': {
      if (v === null) return 'null';
      const toJSON = (v as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === 'function') return write((toJSON as () => unknown).call(v));
      if (Array.isArray(v)) return `[${v.map((x: unknown) => write(x) ?? 'null').join(',')}]`;
      const obj = v as Record<string, unknown>;
      const parts: string[] = [];
      for (const key of Object.keys(obj).sort()) {
        const text = write(obj[key]);
        if (text !== undefined) parts.push(`${JSON.stringify(key)}:${text}`);
      }
      return `{${parts.join(',')}}`;
    }
    default:
      return undefined;
  }
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * SQLite keeps text as UTF-8, which has no lone surrogates: it would store U+FFFD instead and the record would no
 * longer match its hash. Texts are made well-formed the same way before hashing. (JSON documents escape them instead.)
 */
export function wellFormed(s: string | null): string | null {
  return s === null ? null : s.replace(LONE_SURROGATE, '\ufffd');
}

/**
 * An audit record's fields as they are hashed; observed and desired as their canonical JSON text (or null). The decision
 * fields (actor, decision, changes as canonical JSON; risk) are hashed only when present, so records written before they
 * existed keep their hashes.
 */
export interface HashedFields {
  actor?: string | null;
  decision?: string | null;
  changes?: string | null;
  risk?: string | null;
  seq: number;
  time: number;
  resource: string | null;
  event: string;
  trigger: string | null;
  baseline: string | null;
  version: number | null;
  observed: string | null;
  desired: string | null;
  diff: string | null;
  detail: string | null;
}

const str = (s: string | null): string => (s === null ? 'null' : JSON.stringify(s));
const num = (n: number | null): string => (n === null || !Number.isFinite(n) ? 'null' : JSON.stringify(n));

/**
 * The canonical JSON of a record without prevHash and hash, written out directly in sorted key order
 * (equal to `canonicalJson` of the entry minus those two keys; a test holds the two together). It runs on every append.
 */
export function hashedText(f: HashedFields): string {
  const opt = (key: string, v: string | null | undefined, after: boolean): string => (v == null ? '' : after ? `,"${key}":${v}` : `"${key}":${v},`);
  return (
    `{${opt('actor', f.actor, false)}"baseline":${str(f.baseline)}${opt('changes', f.changes, true)}${opt('decision', f.decision, true)}` +
    `,"desired":${f.desired ?? 'null'},"detail":${str(f.detail)},"diff":${str(f.diff)}` +
    `,"event":${str(f.event)},"observed":${f.observed ?? 'null'},"resource":${str(f.resource)}${opt('risk', f.risk == null ? null : str(f.risk), true)},"seq":${num(f.seq)}` +
    `,"time":${num(f.time)},"trigger":${str(f.trigger)},"version":${num(f.version)}}`
  );
}

/** sha256(prevHash + text), hex. One-shot hashing: it runs on every append. */
export function chainHash(prevHash: string, text: string): string {
  return hash('sha256', prevHash + text, 'hex');
}

/** Recomputes one entry's hash from its own fields, for anyone holding AuditEntry objects (e.g. after delivery). */
export function entryHash(e: AuditEntry): string {
  const { prevHash, hash: _hash, ...fields } = e;
  return createHash('sha256').update(prevHash).update(canonicalJson(fields)).digest('hex');
}
