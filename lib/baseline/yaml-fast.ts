// A quick reader for the plain block YAML baselines are written in: several times faster than the full parser on a cold
// start, which is what the one-shot `check` pays. It gives up (returns undefined) on anything it is not sure of: anchors,
// tags, multi-line flow or plain scalars, tabs, several documents, syntax errors; the full parser then reads the text.
// What it does accept it reads exactly as the full parser would (YAML 1.2 core schema); a test compares the two.
// It records only where keys are; the full parser is asked for anything finer when there is an error to point at.
import type { Pos } from './yaml-doc.js';

export interface QuickResult {
  value: unknown;
  /** Where each key of a mapping is, as flat [key, line, column, key, line, column, ...] per mapping. */
  keys: Map<object, (string | number)[]>;
  /** A key written twice somewhere: the caller asks the full parser where. */
  hasDuplicates: boolean;
}

/** Thrown inside the reader to hand the text to the full parser. */
const GIVE_UP = new Error('not plain block YAML');
function giveUp(): never {
  throw GIVE_UP;
}

// Tabs, carriage returns, other control characters, BOMs and Unicode line separators all have YAML rules of their own.
const SPECIAL_CHARS = /[\u0000-\u0009\u000b-\u001f\u007f\u0085\u2028\u2029\ufeff]/;

export function readFast(text: string): QuickResult | undefined {
  if (SPECIAL_CHARS.test(text)) return undefined;
  try {
    return new QuickReader(text).document();
  } catch (err) {
    if (err === GIVE_UP) return undefined;
    throw err;
  }
}

/** The position of `key` in a mapping read by the quick reader, if it has that key. */
export function quickKeyPos(keys: Map<object, (string | number)[]>, owner: unknown, key: string): Pos | undefined {
  if (owner === null || typeof owner !== 'object') return undefined;
  const flat = keys.get(owner);
  if (!flat) return undefined;
  for (let i = flat.length - 3; i >= 0; i -= 3) {
    if (flat[i] === key) return { line: flat[i + 1] as number, column: flat[i + 2] as number };
  }
  return undefined;
}

// A `key: value` line in its most common forms: a word key, then a double-quoted string, a single-quoted
// string without quotes inside, or a one-line plain scalar, and perhaps a comment. Anything else takes the general path.
// Repetitions are written as `normal* (special normal*)*` with disjoint parts, so a line that does not match fails in
// linear time: `(?:[^\s:#]+|...)*` backtracked exponentially on a long plain value ending in ':'.
const SIMPLE_ENTRY =
  /([A-Za-z_][A-Za-z0-9_./-]*) *: +(?:"([^"\\]*(?:\\.[^"\\]*)*)"|'([^']*)'|((?:[^\s?:,[\]{}#&*!|>'"%@`-]|[?:-](?=\S))[^\s:#]*(?:(?::(?=\S)|#| +(?=[^\s#]))[^\s:#]*)*))(?: +(?:#.*)?)?$/y;
/** A word key and its colon at a position: the item is a mapping. */
const KEY_AT = /[A-Za-z_][A-Za-z0-9_./-]* *:(?: |$)/y;
/** YAML allows an implicit block key of at most 1024 characters up to its ':'; longer ones are the full parser's to report. */
const MAX_IMPLICIT_KEY = 1000;
/** Plain words that are not strings as keys; the general path leaves such keys to the full parser. */
const NON_STRING_WORDS = new Set(['null', 'Null', 'NULL', 'true', 'True', 'TRUE', 'false', 'False', 'FALSE']);

// The reader allocates as little as it can: objects that survive a young-generation GC are what a cold run pays for.
// Secondary results (a key's text, where a value ended) go through these fields rather than small result objects.
class QuickReader {
  private readonly lines: string[];
  private i = 0;
  private readonly keys = new Map<object, (string | number)[]>();
  private hasDuplicates = false;
  /** Set by readKey / readQuoted / flow reads. */
  private keyText = '';
  private keyNext = 0;
  private quoted = '';
  private end = 0;

  constructor(text: string) {
    this.lines = text.split('\n');
  }

  document(): QuickResult {
    this.skipBlank();
    const first = this.lines[this.i];
    if (first !== undefined && first.startsWith('---')) {
      if (!isEnd(first, 3)) giveUp();
      this.i++;
      this.skipBlank();
    }
    const line = this.lines[this.i];
    if (line === undefined) giveUp(); // an empty document: the full parser says so
    const ind = indentOf(line);
    if (isSeqEntry(line, ind) || !this.readKey(line, ind)) giveUp(); // a baseline is a mapping; anything else goes the long way
    const value = this.map(ind, ind);
    this.skipBlank();
    if (this.i < this.lines.length) giveUp(); // `...`, a second document, or a line that fits nowhere
    return { value, keys: this.keys, hasDuplicates: this.hasDuplicates };
  }

  /** Moves past empty, blank and comment-only lines. */
  private skipBlank(): void {
    const lines = this.lines;
    while (this.i < lines.length) {
      const line = lines[this.i] as string;
      const ind = indentOf(line);
      if (ind < line.length && line.charCodeAt(ind) !== 35 /* # */) return;
      this.i++;
    }
  }

  /** A block node starting on the current line at column `ind`: a sequence or a mapping. */
  private block(ind: number): unknown {
    const line = this.lines[this.i] as string;
    if (isSeqEntry(line, ind)) return this.seq(ind);
    if (this.readKey(line, ind)) return this.map(ind, ind);
    return giveUp(); // a scalar on a line of its own, possibly spanning lines
  }

  /** A block mapping whose keys sit at column `indent`; the first key may start mid-line (`- key: value`). */
  private map(indent: number, firstCol: number): Record<string, unknown> {
    const value: Record<string, unknown> = {};
    const flat: (string | number)[] = [];
    this.keys.set(value, flat);
    let col = firstCol;
    for (;;) {
      const line = this.lines[this.i] as string;
      let key: string;
      let v: unknown;
      SIMPLE_ENTRY.lastIndex = col;
      const m = SIMPLE_ENTRY.exec(line);
      if (m !== null && !NON_STRING_WORDS.has(m[1] as string)) {
        // the common `key: value` line, read in one native regex step
        key = m[1] as string;
        if (key.length > MAX_IMPLICIT_KEY) giveUp();
        flat.push(key, this.i + 1, col + 1);
        const dq = m[2];
        v = dq !== undefined ? (dq.includes('\\') ? (decodeEscapes(dq) ?? giveUp()) : dq) : (m[3] ?? resolvePlain(m[4] as string));
        this.i++;
      } else {
        if (!this.readKey(line, col)) giveUp();
        key = this.keyText;
        flat.push(key, this.i + 1, col + 1);
        v = this.value(line, this.keyNext, indent, true);
      }
      if (Object.hasOwn(value, key)) this.hasDuplicates = true;
      if (key === '__proto__') Object.defineProperty(value, key, { value: v, enumerable: true, writable: true, configurable: true });
      else value[key] = v;

      this.skipBlank();
      const next = this.lines[this.i];
      if (next === undefined) break;
      const ind = indentOf(next);
      if (ind < indent) break;
      if (ind > indent || isSeqEntry(next, ind)) giveUp();
      col = ind;
    }
    return value;
  }

  /** A block sequence whose dashes sit at column `indent`. */
  private seq(indent: number): unknown[] {
    const value: unknown[] = [];
    for (;;) {
      const line = this.lines[this.i] as string;
      let p = indent + 1;
      while (line.charCodeAt(p) === 32) p++;
      const c = line.charCodeAt(p);
      if (c === 45 /* - */ && (p + 1 === line.length || line.charCodeAt(p + 1) === 32)) giveUp(); // `- - x`
      KEY_AT.lastIndex = p;
      const isMap = p < line.length && c !== 35 /* # */ && (KEY_AT.test(line) || this.readKey(line, p));
      value.push(isMap ? this.map(p, p) : this.value(line, indent + 1, indent, false));

      this.skipBlank();
      const next = this.lines[this.i];
      if (next === undefined) break;
      const ind = indentOf(next);
      if (ind < indent) break;
      if (ind > indent) giveUp();
      if (!isSeqEntry(next, ind)) break; // the parent mapping goes on at this column
    }
    return value;
  }

  /**
   * The value that starts at `start` on the current line (after `key:` or `-`). `parentIndent` is the column of the
   * collection it belongs to: nested blocks and block scalars must sit deeper. Leaves `i` on the line after the value.
   */
  private value(line: string, start: number, parentIndent: number, inMap: boolean): unknown {
    let p = start;
    while (line.charCodeAt(p) === 32) p++;
    if (p === line.length || line.charCodeAt(p) === 35 /* # */) {
      this.i++;
      this.skipBlank();
      const next = this.lines[this.i];
      if (next !== undefined) {
        const ind = indentOf(next);
        if (ind > parentIndent) return this.block(ind);
        // `key:` followed by `- item` at the key's own column is a sequence value
        if (inMap && ind === parentIndent && isSeqEntry(next, ind)) return this.seq(ind);
      }
      return null;
    }
    const c = line[p];
    if (c === '|' || c === '>') return this.blockScalar(line, p, parentIndent);
    if (c === '"' || c === "'") {
      if (!this.readQuoted(line, p) || !isEnd(line, this.end)) giveUp();
      this.i++;
      return this.quoted;
    }
    if (c === '{' || c === '[') {
      const v = this.flow(line, p);
      if (!isEnd(line, this.end)) giveUp();
      this.i++;
      return v;
    }
    if (!plainStart(line, p)) giveUp();
    const hash = line.indexOf(' #', p);
    const raw = (hash === -1 ? line.slice(p) : line.slice(p, hash)).trimEnd();
    if (raw.includes(': ') || raw.endsWith(':')) giveUp(); // a mapping where none may start
    this.i++;
    return resolvePlain(raw);
  }

  /** `|`, `|-`, `>`, `>-` with content on the following lines; keep-chomping and explicit indentation go the long way. */
  private blockScalar(line: string, p: number, parentIndent: number): string {
    const folded = line[p] === '>';
    let q = p + 1;
    let strip = false;
    if (line[q] === '-') {
      strip = true;
      q++;
    }
    if (!isEnd(line, q)) giveUp();
    const lines = this.lines;
    const start = this.i + 1;
    let contentIndent = -1;
    let k = start;
    for (; k < lines.length; k++) {
      const l = lines[k] as string;
      const ind = indentOf(l);
      if (ind < l.length) {
        contentIndent = ind;
        break;
      }
    }
    if (contentIndent <= parentIndent) giveUp(); // empty scalar, or content at a column YAML reads otherwise
    if (folded && k > start) giveUp();
    const body: string[] = [];
    let end = start; // one past the last content line
    for (k = start; k < lines.length; k++) {
      const l = lines[k] as string;
      const ind = indentOf(l);
      if (ind === l.length) {
        if (l.length > contentIndent) giveUp(); // spaces beyond the indentation are content: rare, and subtle
        body.push('');
        continue;
      }
      if (ind < contentIndent) break;
      if (folded && ind > contentIndent) giveUp(); // more-indented lines keep their breaks when folded
      body.push(l.slice(contentIndent));
      end = k + 1;
    }
    body.length = end - start;
    let text: string;
    if (folded) {
      text = '';
      let blanks = 0;
      for (const l of body) {
        if (l === '') {
          blanks++;
          continue;
        }
        text += text === '' ? l : (blanks === 0 ? ' ' : '\n'.repeat(blanks)) + l;
        blanks = 0;
      }
    } else {
      text = body.join('\n');
    }
    // clip keeps one final line break (the full parser adds it even when the text ends without one)
    if (!strip) text += '\n';
    this.i = end;
    return text;
  }

  /** A flow collection `{ a: 1 }` / `[a, b]` that opens and closes on this line; sets `end`. */
  private flow(line: string, p: number): unknown {
    let k = skipSpaces(line, p + 1);
    if (line[p] === '{') {
      const value: Record<string, unknown> = {};
      const flat: (string | number)[] = [];
      this.keys.set(value, flat);
      if (line[k] === '}') {
        this.end = k + 1;
        return value;
      }
      for (;;) {
        const keyCol = k + 1;
        let key: string;
        const c = line[k];
        if (c === '"' || c === "'") {
          if (!this.readQuoted(line, k)) giveUp();
          key = this.quoted;
          k = skipSpaces(line, this.end);
        } else {
          const e = flowPlainEnd(line, k);
          key = line.slice(k, e).trimEnd();
          if (typeof resolvePlain(key) !== 'string') giveUp();
          k = skipSpaces(line, e);
        }
        if (line[k] !== ':') giveUp();
        k = skipSpaces(line, k + 1);
        const vc = line[k];
        if (vc === undefined || vc === ',' || vc === '}' || vc === '#') giveUp(); // `{ a: }` means null: the full parser reads it
        flat.push(key, this.i + 1, keyCol);
        const v = this.flowNode(line, k);
        if (Object.hasOwn(value, key)) this.hasDuplicates = true;
        if (key === '__proto__') Object.defineProperty(value, key, { value: v, enumerable: true, writable: true, configurable: true });
        else value[key] = v;
        k = skipSpaces(line, this.end);
        if (line[k] === '}') {
          this.end = k + 1;
          return value;
        }
        if (line[k] !== ',') giveUp();
        k = skipSpaces(line, k + 1);
        if (line[k] === '}') giveUp(); // trailing comma
      }
    }
    const value: unknown[] = [];
    if (line[k] === ']') {
      this.end = k + 1;
      return value;
    }
    for (;;) {
      if (line[k] === ',' || line[k] === ']' || k >= line.length) giveUp();
      value.push(this.flowNode(line, k));
      k = skipSpaces(line, this.end);
      if (line[k] === ']') {
        this.end = k + 1;
        return value;
      }
      if (line[k] !== ',') giveUp(); // includes `[a: b]`, a pair in a sequence
      k = skipSpaces(line, k + 1);
      if (line[k] === ']') giveUp();
    }
  }

  /** One value inside a flow collection; sets `end`. */
  private flowNode(line: string, k: number): unknown {
    const c = line[k];
    if (c === '{' || c === '[') return this.flow(line, k);
    if (c === '"' || c === "'") {
      if (!this.readQuoted(line, k)) giveUp();
      return this.quoted;
    }
    const e = flowPlainEnd(line, k);
    this.end = e;
    return resolvePlain(line.slice(k, e).trimEnd());
  }

  /** A block mapping key at `col`: sets `keyText` and `keyNext` (just past its colon); false when the line holds no key there. */
  private readKey(line: string, col: number): boolean {
    const c = line[col];
    if (c === '"' || c === "'") {
      if (!this.readQuoted(line, col) || line[this.end] !== ':' || this.end - col > MAX_IMPLICIT_KEY) return false;
      const after = this.end + 1;
      if (after < line.length && line.charCodeAt(after) !== 32) return false;
      this.keyText = this.quoted;
      this.keyNext = after;
      return true;
    }
    if (!plainStart(line, col)) return false;
    let idx = line.indexOf(':', col);
    while (idx !== -1 && idx + 1 < line.length && line.charCodeAt(idx + 1) !== 32) idx = line.indexOf(':', idx + 1);
    if (idx === -1) return false;
    const hash = line.indexOf(' #', col);
    if (hash !== -1 && hash < idx) return false;
    if (idx - col > MAX_IMPLICIT_KEY) return false; // the full parser reports it
    const key = line.slice(col, idx).trimEnd();
    if (key === '' || typeof resolvePlain(key) !== 'string') return false; // `1:`, `true:`, `null:` keys go the long way
    this.keyText = key;
    this.keyNext = idx + 1;
    return true;
  }

  /** A single- or double-quoted scalar closed on this line: sets `quoted` and `end`; false when it goes on or is malformed. */
  private readQuoted(line: string, p: number): boolean {
    let out = '';
    let k = p + 1;
    if (line[p] === "'") {
      for (;;) {
        const e = line.indexOf("'", k);
        if (e === -1) return false;
        out += line.slice(k, e);
        if (line[e + 1] !== "'") {
          this.quoted = out;
          this.end = e + 1;
          return true;
        }
        out += "'";
        k = e + 2;
      }
    }
    // double quotes: find the closing quote (skipping escaped characters), then decode what is between
    let e = k;
    for (; e < line.length; e++) {
      const ch = line.charCodeAt(e);
      if (ch === 34 /* " */) break;
      if (ch === 92 /* \ */) e++;
    }
    if (e >= line.length) return false; // closed on a later line, or an escaped line break
    const body = line.slice(k, e);
    const decoded = body.includes('\\') ? decodeEscapes(body) : body;
    if (decoded === undefined) return false;
    this.quoted = decoded;
    this.end = e + 1;
    return true;
  }
}

/** The text of a double-quoted scalar's body with its escapes applied; undefined when one is not valid YAML. */
function decodeEscapes(body: string): string | undefined {
  let out = '';
  let k = 0;
  for (;;) {
    const e = body.indexOf('\\', k);
    if (e === -1) return out + body.slice(k);
    out += body.slice(k, e);
    const esc = body[e + 1];
    if (esc === undefined) return undefined;
    const simple = ESCAPES[esc];
    if (simple !== undefined) {
      out += simple;
      k = e + 2;
      continue;
    }
    const len = HEX_LENGTH[esc];
    if (len === undefined) return undefined;
    const hex = body.slice(e + 2, e + 2 + len);
    if (hex.length !== len || !/^[0-9a-fA-F]+$/.test(hex)) return undefined;
    const code = parseInt(hex, 16);
    if (code > 0x10ffff) return undefined;
    out += String.fromCodePoint(code);
    k = e + 2 + len;
  }
}

function indentOf(line: string): number {
  let n = 0;
  while (line.charCodeAt(n) === 32) n++;
  return n;
}

function isSeqEntry(line: string, ind: number): boolean {
  return line.charCodeAt(ind) === 45 /* - */ && (ind + 1 === line.length || line.charCodeAt(ind + 1) === 32);
}

function skipSpaces(line: string, k: number): number {
  while (line.charCodeAt(k) === 32) k++;
  return k;
}

/** True when only spaces, and perhaps a comment after a space, follow position `k`. */
function isEnd(line: string, k: number): boolean {
  const j = skipSpaces(line, k);
  if (j === line.length) return true;
  return line.charCodeAt(j) === 35 /* # */ && j > k;
}

// Characters that cannot start a plain scalar or a plain key.
const INDICATORS = '[]{},#&*!|>\'"%@`';

/** Whether a plain scalar may start at `p`; `-`, `?` and `:` only when a character that could go on a plain scalar follows. */
function plainStart(line: string, p: number, inFlow = false): boolean {
  const c = line[p];
  if (c === undefined || INDICATORS.includes(c)) return false;
  if (c === '-' || c === '?' || c === ':') {
    const n = line[p + 1];
    return n !== undefined && n !== ' ' && !(inFlow && FLOW_STOP.includes(n));
  }
  return true;
}

const FLOW_STOP = ',[]{}';

/** Where a plain scalar inside a flow collection ends: at a flow indicator, a `: `, or the line's end. */
function flowPlainEnd(line: string, k: number): number {
  if (!plainStart(line, k, true)) giveUp();
  let e = k;
  for (; e < line.length; e++) {
    const ch = line[e] as string;
    if (FLOW_STOP.includes(ch)) break;
    if (ch === ':') {
      const n = line[e + 1];
      if (n === undefined || n === ' ' || FLOW_STOP.includes(n)) break;
    }
    if (ch === '#' && line[e - 1] === ' ') giveUp(); // a comment inside an unclosed flow collection
  }
  if (line.slice(k, e).trim() === '') giveUp();
  return e;
}

const ESCAPES: Record<string, string> = {
  '0': '\0',
  a: '\x07',
  b: '\b',
  t: '\t',
  n: '\n',
  v: '\v',
  f: '\f',
  r: '\r',
  e: '\x1b',
  ' ': ' ',
  '"': '"',
  '/': '/',
  '\\': '\\',
  N: '\u0085',
  _: '\u00a0',
  L: '\u2028',
  P: '\u2029',
};
const HEX_LENGTH: Record<string, number> = { x: 2, u: 4, U: 8 };

const INT_OCT = /^0o[0-7]+$/;
const INT = /^[-+]?[0-9]+$/;
const INT_HEX = /^0x[0-9a-fA-F]+$/;
const FLOAT_NAN = /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;
const FLOAT_EXP = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/;
const FLOAT = /^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/;

/** A plain scalar's value under the YAML 1.2 core schema, as the full parser resolves it. */
export function resolvePlain(s: string): string | number | boolean | null {
  switch (s) {
    case '':
    case '~':
    case 'null':
    case 'Null':
    case 'NULL':
      return null;
    case 'true':
    case 'True':
    case 'TRUE':
      return true;
    case 'false':
    case 'False':
    case 'FALSE':
      return false;
  }
  const c = s.charCodeAt(0);
  if (!((c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46)) return s; // not a digit, '+', '-' or '.'
  if (INT_OCT.test(s)) return parseInt(s.slice(2), 8);
  if (INT.test(s)) return parseInt(s, 10);
  if (INT_HEX.test(s)) return parseInt(s.slice(2), 16);
  if (FLOAT_NAN.test(s)) return s.slice(-3).toLowerCase() === 'nan' ? NaN : s[0] === '-' ? -Infinity : Infinity;
  if (FLOAT_EXP.test(s) || FLOAT.test(s)) return parseFloat(s);
  return s;
}
