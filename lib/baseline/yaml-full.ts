// The full YAML parser (the `yaml` package) for any text the quick reader gave up on: every YAML 1.2 feature, its syntax
// errors, and what still parsed around them.
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import type { DuplicateKey, Path, Pos, YEntry, YNode } from './yaml-doc.js';
import { explainSyntax } from './yaml-syntax.js';

// Loading the yaml package costs a one-shot `check` more than the quick reader spends on a typical baseline, so it is
// loaded on first use only. The literal require('yaml') is what bundlers (esbuild) see and include; plain ESM runs from
// dist/ have no `require` and use createRequire.
let yamlModule: typeof Yaml | undefined;
function yaml(): typeof Yaml {
  yamlModule ??= (typeof require === 'function' ? require('yaml') : createRequire(import.meta.url)('yaml')) as typeof Yaml;
  return yamlModule;
}

export interface SyntaxProblem {
  message: string;
  line: number;
  column: number;
}

/** A document as the full parser read it: plain values, and where each key and value is. */
export interface Parsed {
  value: unknown;
  root: YNode;
  duplicates: DuplicateKey[];
}

/** What the parser still built from a text with syntax errors: every part, cut short or not. */
export interface PartlyParsed extends Parsed {
  /**
   * The indices of the items of the list at `path` that no syntax error touches. An item is touched by an error from the
   * end of the item before it to the start of the next one (the last one: to the end of the text), because an error in
   * between may have cut the item short or made a second, phantom item of its tail.
   */
  intact(path: Path): Set<number>;
}

export type FullResult = Parsed | { syntax: SyntaxProblem[]; partial?: PartlyParsed };

/** More expanded aliases than this is an attack (a "billion laughs"), not a baseline. */
const MAX_ALIAS_COUNT = 100;

export function readFull(text: string): FullResult {
  const { LineCounter, parseDocument } = yaml();
  const lineCounter = new LineCounter();
  // Duplicate keys are reported by the walk below, with the same words as the quick reader's.
  // logLevel error: the library would print warnings (a collection used as a key) to stderr, where the agent's JSON logs
  // go; errors are still collected ("silent" would drop the one for a second document).
  const doc = parseDocument(text, { lineCounter, uniqueKeys: false, prettyErrors: false, logLevel: 'error' });
  const at = (offset: number): Pos => {
    const p = lineCounter.linePos(offset);
    return { line: p.line, column: p.col };
  };
  if (doc.errors.length > 0) {
    const syntax = doc.errors.map((e) => {
      if (e.code === 'MULTIPLE_DOCS') {
        return { message: 'a baseline file holds one YAML document; remove this second one or move it to its own file', ...at(e.pos[0]) };
      }
      const quote = e.code === 'MISSING_CHAR' ? /closing (["'])quote/.exec(e.message)?.[1] : undefined;
      const open = quote === undefined ? -1 : openingQuote(text, e.pos[0], quote);
      if (open !== -1) return { message: `YAML syntax: this ${quote} opens a quoted value that is never closed`, ...at(open) };
      const { message, line, column } = explainSyntax(text, { code: e.code, message: e.message, ...at(e.pos[0]) });
      return { message, line, column };
    });
    return { syntax, partial: partlyParsed(doc, text, at) };
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    return { syntax: [{ message: `YAML aliases: ${err instanceof Error ? err.message : String(err)}`, line: 1, column: 1 }] };
  }
  return walkDocument(doc, text, at, value);
}

/** The parts of a document with errors, or undefined when even they cannot be read (an alias bomb, deep nesting). */
function partlyParsed(doc: Yaml.Document.Parsed, text: string, at: (offset: number) => Pos): PartlyParsed | undefined {
  let parsed: Parsed;
  try {
    parsed = walkDocument(doc, text, at, doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }));
  } catch {
    return undefined; // the syntax errors are reported all the same
  }
  const { isNode, isSeq } = yaml();
  const errors = doc.errors.map((e) => e.pos);
  const intact = (path: Path): Set<number> => {
    const out = new Set<number>();
    // A key written twice on the way: the values hold the last one, getIn finds the first, so no item can be matched.
    if (parsed.duplicates.some((d) => d.path.length <= path.length && d.path.every((seg, i) => seg === path[i]))) return out;
    const seq = doc.getIn(path, true);
    if (!isSeq(seq)) return out;
    const ranges = seq.items.map((item) => (isNode(item) ? (item.range ?? undefined) : undefined));
    ranges.forEach((range, i) => {
      if (!range) return;
      const from = i === 0 ? (seq.range?.[0] ?? 0) : ranges[i - 1]?.[2];
      const to = i === ranges.length - 1 ? text.length : ranges[i + 1]?.[0];
      if (from === undefined || to === undefined) return;
      if (errors.every(([start, end]) => end < from || start > to)) out.add(i);
    });
    return out;
  };
  return { ...parsed, intact };
}

/** Every key's and value's place in `doc`, whose plain values are `value`. */
function walkDocument(doc: Yaml.Document.Parsed, text: string, at: (offset: number) => Pos, value: unknown): Parsed {
  const { isAlias, isMap, isScalar, isSeq } = yaml();
  const duplicates: DuplicateKey[] = [];
  const seen = new Map<Yaml.Node, YNode>();

  const walk = (node: unknown, path: (string | number)[]): YNode => {
    if (isAlias(node)) {
      const target = node.resolve(doc as Yaml.Document);
      const known = target ? seen.get(target) : undefined;
      return known ?? (node.range ? at(node.range[0]) : { line: 1, column: 1 });
    }
    if (!isMap(node) && !isSeq(node) && !isScalar(node)) return { line: 1, column: 1 };
    const pos = node.range ? at(node.range[0]) : { line: 1, column: 1 };
    let out: YNode;
    if (isScalar(node)) {
      out = { line: pos.line, column: pos.column, raw: node.range ? text.slice(node.range[0], node.range[1]) : '' };
    } else if (isSeq(node)) {
      const items: YNode[] = [];
      out = { line: pos.line, column: pos.column, items };
      node.items.forEach((item, i) => items.push(walk(item, [...path, i])));
    } else {
      const entries = new Map<string, YEntry>();
      out = { line: pos.line, column: pos.column, entries };
      for (const pair of node.items) {
        const k = pair.key;
        const key = isScalar(k) ? (k.value === null ? '' : String(k.value)) : String(k);
        const keyPos = isScalar(k) && k.range ? at(k.range[0]) : pos;
        const child = pair.value === null ? { line: keyPos.line, column: keyPos.column, raw: '' } : walk(pair.value, [...path, key]);
        if (entries.has(key)) duplicates.push({ path: [...path, key], key: keyPos });
        entries.set(key, { key: keyPos, node: child });
      }
    }
    seen.set(node, out);
    return out;
  };

  const root = doc.contents ? walk(doc.contents, []) : { line: 1, column: 1 };
  return { value, root, duplicates };
}

/** The parser reports an unclosed quote where the text ends; the quote that opened it is the last unescaped one before. */
function openingQuote(text: string, before: number, quote: string): number {
  for (let i = Math.min(before, text.length) - 1; i >= 0; i--) {
    if (text[i] === quote && (quote === "'" || text[i - 1] !== '\\')) return i;
  }
  return -1;
}
