// The document parsers fuzzed (baselines today; a policy parser joins with one more entry in PARSERS), the invariants every
// outcome must keep, and the fast-check properties that feed them: random text, mutated examples, generated documents
// with hostile keys, alias bombs, deep nesting and huge scalars, plus the validate-command splitter and source paths.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { BaselineInvalidError, ERROR_CODES, HsError } from '../../lib/errors.js';
import { parseBaseline } from '../../lib/baseline/index.js';
import { splitCommand } from '../../lib/baseline/command.js';
import { sourcePathProblem, sourcesFromMap } from '../../lib/baseline/sources.js';

/** Longest one input may take; far above any real document, far below "hung". */
export const PER_INPUT_MS = 5000;

export interface DocumentParser {
  name: string;
  /** Parses `text`; must throw only BaselineInvalidError-like located errors. Returns something JSON-serialisable. */
  parse(text: string, file: string): unknown;
  /** Checks what an accepted document must satisfy (ids unique, stable hash, ...). */
  accepted(result: unknown, text: string, file: string): void;
  /** Valid documents to mutate. */
  examples: string[];
  /** Words of the format, for generators. */
  vocabulary: string[];
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EXAMPLES = path.join(ROOT, 'baselines/examples');

const HEAD = 'apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: fuzz\n';

const baselineParser: DocumentParser = {
  name: 'baseline',
  parse: (text, file) => parseBaseline(text, { file, readSource: (rel) => Buffer.from(`source ${rel}\n`) }),
  accepted(result, text, file) {
    const b = result as ReturnType<typeof parseBaseline>;
    const ids = b.resources.map((r) => r.id);
    assert.equal(new Set(ids).size, ids.length, 'resource ids are unique');
    for (const r of b.resources) assert.ok(r.location.line >= 1 && r.location.column >= 1, `${r.id} is located`);
    JSON.stringify(b);
    const again = parseBaseline(text, { file, readSource: sourcesFromMap(b.origin.sources, (rel) => `${rel} was not kept`) });
    assert.equal(again.origin.sha256, b.origin.sha256, 'the same text and sources give the same version');
  },
  examples: [
    ...readdirSync(EXAMPLES)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => readFileSync(path.join(EXAMPLES, f), 'utf8')),
    `${HEAD}spec:\n  resources:\n    - file: /etc/motd\n      content: "x\\n"\n      mode: "0600"\n      validate: [grep, -q, x, "%s"]\n    - file: /etc/a\n      source: files/a\n      secret: true\n`,
    `${HEAD}  labels: { team: a }\nspec:\n  selector: { matchLabels: { role: web } }\n  policy: { mode: monitor, flap: { maxRepairs: 2, window: 1h } }\n  resources:\n    - sysctl: net/ipv4/ip_forward\n      value: 0\n    - service: nginx\n      ensure: running\n    - directory: /etc/app\n      ensure: absent\n`,
  ],
  vocabulary: [
    'apiVersion', 'kind', 'metadata', 'spec', 'resources', 'policy', 'selector', 'matchLabels', 'labels', 'name', 'description',
    'file', 'directory', 'sysctl', 'service', 'content', 'source', 'mode', 'owner', 'group', 'validate', 'secret', 'ensure',
    'risk', 'escalateAt', 'flap', 'maxRepairs', 'window', 'value', 'persist', 'enabled', 'masked', 'present', 'absent',
    'homeostat/v1', 'Baseline', '/etc/motd', 'files/a', '../x', '/etc/shadow', '%s', '"0644"', '0644', 'monitor', 'high',
  ],
};

/** Every parser the fuzz suites run. A policy document parser is added here when it exists. */
export const PARSERS: DocumentParser[] = [baselineParser];

/** Keys that reach inherited properties of plain objects, or mean something to YAML libraries. */
const HOSTILE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', '<<', '', ' ', '0', '-1', 'length'];
const YAML_TOKENS = [
  ':', ': ', '- ', '-', '? ', '&a ', '*a', '&b ', '*b', '!!str ', '!!binary ', '!!map ', '!<tag:x> ', '!x ', '|', '|-', '|+', '>', '>-', '|2',
  '{', '}', '[', ']', ',', '"', "'", '#', ' #', '%YAML 1.2\n', '---\n', '...\n', '\t', '\\', '\n', '\n  ', '\n    - ', '\r', '\r\n', '\u2028',
  '\ufeff', '\u0000', '"\\u0000"', '"\\x41"', 'null', '~', 'true', 'yes', '0x1F', '0o17', '.inf', '.nan', '1e999', '-0', '9007199254740993',
];

/** Fails unless `err` is the located refusal a parser must give for bad input. */
export function assertLocated(err: unknown, text: string, file: string): void {
  if (!(err instanceof BaselineInvalidError)) throw new Error(`not a located refusal: ${err instanceof Error ? `${err.name}: ${err.message}\n${err.stack}` : String(err)}`);
  assert.ok(err.issues.length > 0, 'at least one issue');
  const lines = text.split(/\r\n|\r|\n|\u2028|\u2029/).length;
  for (const i of err.issues) {
    assert.ok(i instanceof HsError, 'each issue is an HsError');
    assert.ok(Object.hasOwn(ERROR_CODES, i.code), `known code ${i.code}`);
    assert.ok(typeof i.message === 'string' && i.message.length > 0, 'a message');
    const l = i.location;
    assert.ok(l, `${i.code} ${i.message} has a location`);
    assert.equal(l.file, file);
    assert.ok(Number.isInteger(l.line) && l.line >= 1 && l.line <= lines + 1, `line ${l.line} of ${lines}: ${i.message}`);
    assert.ok(Number.isInteger(l.column) && l.column >= 1, `column ${l.column}`);
    i.describe();
  }
  JSON.stringify(err);
}

/** Runs one input through a parser and checks whichever outcome it has; `note` records the input for the watchdog. */
export function checkDocument(p: DocumentParser, text: string, note: (text: string) => void): void {
  note(text);
  const file = `fuzz-${p.name}.yaml`;
  const t0 = performance.now();
  let result: unknown;
  let failed: unknown;
  try {
    result = p.parse(text, file);
  } catch (err) {
    failed = err;
  }
  const ms = performance.now() - t0;
  assert.ok(ms < PER_INPUT_MS, `took ${ms.toFixed(0)} ms (bound ${PER_INPUT_MS} ms) on ${text.length} characters`);
  if (failed === undefined) p.accepted(result, text, file);
  else assertLocated(failed, text, file);
}

const token = (p: DocumentParser): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...p.vocabulary) },
    { weight: 3, arbitrary: fc.constantFrom(...YAML_TOKENS) },
    { weight: 2, arbitrary: fc.constantFrom(...HOSTILE_KEYS) },
    { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
  );

/** Text built from the format's words, YAML's punctuation and hostile keys, line by line. */
const yamlish = (p: DocumentParser): fc.Arbitrary<string> =>
  fc
    .array(fc.tuple(fc.nat({ max: 10 }), fc.array(token(p), { minLength: 1, maxLength: 6 })), { maxLength: 40 })
    .map((lines) => lines.map(([indent, parts]) => ' '.repeat(indent) + parts.join('')).join('\n'));

/** A valid example with a few edits: deletions, insertions of tokens, duplicated or swapped lines. */
const mutated = (p: DocumentParser): fc.Arbitrary<string> =>
  fc
    .tuple(
      fc.constantFrom(...p.examples),
      fc.array(fc.tuple(fc.constantFrom('delete', 'insert', 'duplicate', 'swap'), fc.nat(), fc.nat({ max: 24 }), token(p)), { minLength: 1, maxLength: 6 }),
    )
    .map(([text, edits]) => {
      let t = text;
      for (const [op, at, n, tok] of edits) {
        const i = at % (t.length + 1);
        if (op === 'delete') t = t.slice(0, i) + t.slice(i + n);
        else if (op === 'insert') t = t.slice(0, i) + tok + t.slice(i);
        else {
          const lines = t.split('\n');
          const a = at % lines.length;
          const b = (at + n) % lines.length;
          if (op === 'duplicate') lines.splice(a, 0, lines[a] ?? '');
          else [lines[a], lines[b]] = [lines[b] ?? '', lines[a] ?? ''];
          t = lines.join('\n');
        }
      }
      return t;
    });

type Node = string | number | boolean | null | Node[] | { entries: [string, Node][] };

/** Emits a generated tree as YAML, block or flow style at random, so keys like __proto__ reach the parser as text. */
function emit(node: Node, indent: number, flow: boolean): string {
  if (node === null || typeof node !== 'object') return typeof node === 'string' ? (/^[A-Za-z/][\w./-]*$/.test(node) ? node : JSON.stringify(node)) : String(node);
  if (Array.isArray(node)) {
    if (flow || node.length === 0) return `[${node.map((n) => emit(n, 0, true)).join(', ')}]`;
    return node.map((n) => `\n${' '.repeat(indent)}- ${emit(n, indent + 2, false).replace(/^\n\s*/, '')}`).join('');
  }
  if (flow || node.entries.length === 0) return `{${node.entries.map(([k, v]) => `${JSON.stringify(k)}: ${emit(v, 0, true)}`).join(', ')}}`;
  return node.entries.map(([k, v]) => `\n${' '.repeat(indent)}${JSON.stringify(k)}: ${emit(v, indent + 2, false)}`).join('');
}

const generated = (p: DocumentParser): fc.Arbitrary<string> => {
  const key = fc.oneof(fc.constantFrom(...p.vocabulary), fc.constantFrom(...HOSTILE_KEYS), fc.string({ maxLength: 10 }));
  const { node } = fc.letrec<{ node: Node }>((tie) => ({
    node: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.oneof(fc.constantFrom(...p.vocabulary), fc.string({ maxLength: 20 }), fc.integer(), fc.boolean(), fc.constant(null), fc.double()),
      fc.array(tie('node'), { maxLength: 4 }),
      fc.array(fc.tuple(key, tie('node')), { maxLength: 5 }).map((entries) => ({ entries })),
    ) as fc.Arbitrary<Node>,
  }));
  const resource = fc
    .tuple(fc.constantFrom('file', 'directory', 'sysctl', 'service', 'toString'), fc.oneof(fc.constantFrom('/etc/motd', '/etc/a/b', 'net.ipv4.ip_forward', 'nginx'), fc.string()), fc.array(fc.tuple(key, node), { maxLength: 6 }))
    .map(([type, name, rest]): Node => ({ entries: [[type, name], ...rest] }));
  return fc
    .tuple(fc.array(fc.tuple(key, node), { maxLength: 3 }), fc.array(resource, { maxLength: 6 }), fc.array(fc.tuple(key, node), { maxLength: 3 }), fc.boolean())
    .map(([meta, resources, spec, flow]) => {
      const doc: Node = {
        entries: [
          ['apiVersion', 'homeostat/v1'],
          ['kind', 'Baseline'],
          ['metadata', { entries: [['name', 'fuzz'], ...meta] }],
          ['spec', { entries: [['resources', resources], ...spec] }],
        ],
      };
      return emit(doc, 0, flow).replace(/^\n/, '');
    });
};

/** Aliases that multiply (billion laughs), nesting thousands deep, scalars of megabytes, thousands of resources. */
const extremes = (): fc.Arbitrary<string> =>
  fc.oneof(
    fc.tuple(fc.integer({ min: 2, max: 14 }), fc.integer({ min: 2, max: 10 })).map(([levels, fan]) => {
      const lines = ['a0: &a0 [lol, lol]'];
      for (let i = 1; i < levels; i++) lines.push(`a${i}: &a${i} [${Array.from({ length: fan }, () => `*a${i - 1}`).join(', ')}]`);
      return `${HEAD}  labels: { x: y }\nbomb:\n${lines.map((l) => `  ${l}`).join('\n')}\nspec:\n  resources: []\n`;
    }),
    fc.tuple(fc.integer({ min: 10, max: 20_000 }), fc.constantFrom('[', '{"a": ', '- ')).map(([depth, open]) => {
      if (open === '- ') return `${HEAD}spec:\n  resources:\n${Array.from({ length: Math.min(depth, 3000) }, (_, i) => `${' '.repeat(4 + 2 * i)}- `).join('\n')}x\n`;
      const close = open === '[' ? ']' : '}';
      return `${HEAD}  labels: ${open.repeat(depth)}1${close.repeat(depth)}\nspec:\n  resources: []\n`;
    }),
    fc.tuple(fc.integer({ min: 1, max: 8 * 1024 * 1024 }), fc.constantFrom('plain', 'quoted', 'block', 'key')).map(([size, style]) => {
      const big = 'x'.repeat(size);
      if (style === 'key') return `${HEAD}spec:\n  resources:\n    - file: /etc/a\n      ${big}: 1\n`;
      const value = style === 'plain' ? big : style === 'quoted' ? `"${big}"` : `|\n        ${big}`;
      return `${HEAD}spec:\n  resources:\n    - file: /etc/a\n      content: ${value}\n`;
    }),
    fc.integer({ min: 1, max: 5000 }).map((n) => `${HEAD}spec:\n  resources:\n${Array.from({ length: n }, (_, i) => `    - file: /etc/f${i % 4000}\n      content: "${i}"\n`).join('')}`),
  );

export interface PropertySpec {
  title: string;
  /** Share of the suite's time budget. */
  share: number;
  property(note: (text: string) => void): fc.IProperty<unknown>;
}

export function documentProperties(p: DocumentParser): PropertySpec[] {
  const check = (note: (t: string) => void) => (text: string) => checkDocument(p, text, note);
  return [
    { title: `${p.name}: text of format words, YAML punctuation and hostile keys`, share: 0.2, property: (note) => fc.property(yamlish(p), check(note)) },
    { title: `${p.name}: arbitrary text`, share: 0.1, property: (note) => fc.property(fc.oneof(fc.string({ maxLength: 400 }), fc.string({ unit: 'binary', maxLength: 400 })), check(note)) },
    { title: `${p.name}: valid examples with random edits`, share: 0.2, property: (note) => fc.property(mutated(p), check(note)) },
    { title: `${p.name}: generated documents with hostile keys and values`, share: 0.2, property: (note) => fc.property(generated(p), check(note)) },
    { title: `${p.name}: alias bombs, deep nesting, huge scalars, many resources`, share: 0.1, property: (note) => fc.property(extremes(), check(note)) },
  ];
}

/** The validate-command splitter and the source-path rule, which read baseline values. */
export const valueProperties: PropertySpec[] = [
  {
    title: 'validate: the splitter never throws, and quoting each word gives the words back',
    share: 0.1,
    property: (note) =>
      fc.property(fc.string({ maxLength: 200 }), fc.array(fc.string({ maxLength: 12 }), { maxLength: 8 }), (text, words) => {
        note(text);
        const r = splitCommand(text);
        assert.ok('words' in r || (typeof r.error === 'string' && r.error.length > 0));
        const quoted = words.map((w) => `'${w.replaceAll("'", `'"'"'`)}'`).join(' ');
        assert.deepEqual(splitCommand(quoted), { words });
      }),
  },
  {
    title: 'source: a path the rule accepts never leaves the folder',
    share: 0.1,
    property: (note) =>
      fc.property(fc.array(fc.oneof(fc.constantFrom('..', '.', '', 'a', '__proto__', '%2e%2e', '\0', '...'), fc.string({ maxLength: 6 })), { minLength: 1, maxLength: 6 }), fc.boolean(), (segments, absolute) => {
        const rel = (absolute ? '/' : '') + segments.join('/');
        note(rel);
        if (sourcePathProblem(rel) !== undefined) return;
        const resolved = path.resolve('/srv/baselines/team', rel);
        assert.ok(resolved.startsWith('/srv/baselines/team/'), `${JSON.stringify(rel)} resolves to ${resolved}`);
      }),
  },
];
