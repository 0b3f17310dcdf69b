// The YAML document as the validator sees it: plain values for the schema, and where each key and value is for messages.
import { HsError } from '../errors.js';
import { quickKeyPos, readFast } from './yaml-fast.js';
import { readFull, type Parsed, type PartlyParsed } from './yaml-full.js';

/** 1-based, as editors count. */
export interface Pos {
  line: number;
  column: number;
}

/** Where a value sits in the text; maps and sequences also hold their children. Built from the full parser's nodes. */
export interface YNode extends Pos {
  /** The scalar's source text, e.g. `0644` for a number written without quotes. */
  raw?: string;
  entries?: Map<string, YEntry>;
  items?: YNode[];
}

export interface YEntry {
  key: Pos;
  node: YNode;
}

export type Path = readonly (string | number)[];

/** A key written twice in one mapping: YAML forbids it, and the second silently winning would hide a mistake. */
export interface DuplicateKey {
  path: Path;
  key: Pos;
}

/** Answers "where is it" for a path into the document. */
export interface Locator {
  /** The key naming the path's last segment, or the item itself for a sequence index. */
  keyPos(path: Path): Pos | undefined;
  valuePos(path: Path): Pos | undefined;
  /** A scalar's source text. */
  raw(path: Path): string | undefined;
}

export interface Detail {
  locator: Locator;
  duplicates: DuplicateKey[];
}

export interface YamlDoc {
  value: unknown;
  /** False when the text is not YAML at all: `issues` says why, and nothing else can be checked. */
  readable: boolean;
  issues: HsError[];
  /** Which reader produced `value`: the quick one for plain block YAML, the full one for everything else. */
  reader: 'quick' | 'full';
  /** Cheap, and enough for keys: resource locations and "declared at line N" need no more. */
  keys: Locator;
  hasDuplicates: boolean;
  /** Every position and every duplicate key, from the full parser; read once, on first use, when there is an error to point at. */
  detail(): Detail;
  /** When the text has syntax errors: what parsed around them, for the checks the syntax errors would otherwise hide. */
  parts?: ParsedParts;
}

/**
 * The document as far as it parsed, with every item of spec.resources that a syntax error touched (and so may have cut
 * short) emptied to null: only `resources`, the items no error touched, may be checked.
 */
export interface ParsedParts {
  doc: YamlDoc;
  resources: ReadonlySet<number>;
}

const RESOURCES = ['spec', 'resources'] as const;

/** Deeper than this is not configuration: a baseline needs about six levels. Checked before anything walks the value. */
export const MAX_DEPTH = 64;

/** Reads one YAML document: the quick reader when the text is plain block YAML, the full parser otherwise. */
export function readYaml(text: string, file: string): YamlDoc {
  let doc: YamlDoc;
  try {
    doc = readEither(text, file);
  } catch (err) {
    // Both readers recurse: a document nested thousands of levels deep runs out of stack before any depth check can run.
    if (!(err instanceof RangeError) || !/call stack/i.test(err.message)) throw err;
    return unreadable([new HsError('HS_BASELINE_PARSE', `the document is nested too deeply to read (a baseline needs far fewer than ${MAX_DEPTH} levels)`, { location: { file, line: 1, column: 1 } })]);
  }
  if (doc.readable && depthOf(doc.value, doc.reader === 'full') > MAX_DEPTH) {
    return unreadable([new HsError('HS_BASELINE_PARSE', `the document nests more than ${MAX_DEPTH} levels deep; a baseline needs far fewer`, { location: { file, line: 1, column: 1 } })]);
  }
  if (doc.parts && depthOf(doc.parts.doc.value, true) > MAX_DEPTH) delete doc.parts;
  return doc;
}

function unreadable(issues: HsError[]): YamlDoc {
  const nowhere = treeLocator({ line: 1, column: 1 });
  return { value: undefined, readable: false, issues, reader: 'full', keys: nowhere, hasDuplicates: false, detail: () => ({ locator: nowhere, duplicates: [] }) };
}

/**
 * How many mappings and lists deep `value` goes, without recursion. With `aliases` (the full parser's values, where an
 * alias is the same object met again) each object is walked once; the quick reader makes no shared objects.
 */
function depthOf(value: unknown, aliases: boolean): number {
  let max = 0;
  const values: unknown[] = [value];
  const depths: number[] = [0];
  const seen = aliases ? new Set<object>() : undefined;
  while (values.length > 0) {
    const v = values.pop();
    const d = (depths.pop() as number) + 1;
    if (v === null || typeof v !== 'object') continue;
    if (d > max) max = d;
    if (max > MAX_DEPTH) return max;
    if (seen) {
      if (seen.has(v)) continue;
      seen.add(v);
    }
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') {
        values.push(child);
        depths.push(d);
      }
    }
  }
  return max;
}

function readEither(text: string, file: string): YamlDoc {
  const quick = readFast(text);
  if (quick) {
    let detail: Detail | undefined;
    const keys: Locator = {
      keyPos: (path) => {
        const last = path[path.length - 1];
        return typeof last === 'string' ? quickKeyPos(quick.keys, valueAt(quick.value, path.slice(0, -1)), last) : undefined;
      },
      valuePos: () => undefined,
      raw: () => undefined,
    };
    return {
      value: quick.value,
      readable: true,
      issues: [],
      reader: 'quick',
      keys,
      hasDuplicates: quick.hasDuplicates,
      detail: () => (detail ??= fullDetail(text)),
    };
  }
  const full = readFull(text);
  if ('syntax' in full) {
    const doc = unreadable(full.syntax.map((e) => new HsError('HS_BASELINE_PARSE', e.message, { location: { file, line: e.line, column: e.column } })));
    if (full.partial) doc.parts = parsedParts(full.partial);
    return doc;
  }
  return fullDoc(full);
}

function fullDoc(full: Parsed): YamlDoc {
  const detail: Detail = { locator: treeLocator(full.root), duplicates: full.duplicates };
  return {
    value: full.value,
    readable: true,
    issues: [],
    reader: 'full',
    keys: detail.locator,
    hasDuplicates: full.duplicates.length > 0,
    detail: () => detail,
  };
}

function parsedParts(partial: PartlyParsed): ParsedParts {
  const resources = partial.intact(RESOURCES);
  // Emptied, the touched items cannot be compared with the intact ones either (declared twice, inside a file, ...).
  const list = valueAt(partial.value, RESOURCES);
  if (Array.isArray(list)) for (let i = 0; i < list.length; i++) if (!resources.has(i)) list[i] = null;
  return { doc: fullDoc(partial), resources };
}

/** Whether `path` lies inside one of `resources`, the indices of items of spec.resources. */
export function inResource(path: Path, resources: ReadonlySet<number>): boolean {
  return path[0] === 'spec' && path[1] === 'resources' && typeof path[2] === 'number' && resources.has(path[2]);
}

function fullDetail(text: string): Detail {
  const full = readFull(text);
  // The quick reader only accepts what the full parser reads the same way; should they ever disagree, point at the top.
  if ('syntax' in full) return { locator: treeLocator({ line: 1, column: 1 }), duplicates: [] };
  return { locator: treeLocator(full.root), duplicates: full.duplicates };
}

function treeLocator(root: YNode): Locator {
  return {
    keyPos: (path) => {
      const last = path[path.length - 1];
      if (last === undefined) return root;
      const parent = nodeAt(root, path.slice(0, -1));
      return typeof last === 'number' ? parent?.items?.[last] : parent?.entries?.get(last)?.key;
    },
    valuePos: (path) => nodeAt(root, path),
    raw: (path) => nodeAt(root, path)?.raw,
  };
}

function nodeAt(root: YNode, path: Path): YNode | undefined {
  let node: YNode | undefined = root;
  for (const seg of path) {
    if (!node) return undefined;
    node = typeof seg === 'number' ? node.items?.[seg] : node.entries?.get(seg)?.node;
  }
  return node;
}

/** The plain value at `path`, or undefined. */
export function valueAt(root: unknown, path: Path): unknown {
  let cur = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** `spec.resources[3].mode`; keys that are not plain words are quoted: `metadata.labels["app.kubernetes.io/name"]`. */
export function fieldPath(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (IDENT.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}
