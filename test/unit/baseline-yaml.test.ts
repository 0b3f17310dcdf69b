// The quick YAML reader against the full parser: same values and same key positions for what it accepts, and it gives up
// (leaving the text to the full parser) on everything else, including every malformed document.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse, parseDocument } from 'yaml';
import { readFast } from '../../lib/baseline/yaml-fast.js';
import { readYaml, type Path, type YamlDoc } from '../../lib/baseline/yaml-doc.js';

/** Every key path in a plain value. */
function keyPaths(value: unknown, path: Path = []): Path[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => keyPaths(v, [...path, i]));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => [[...path, k], ...keyPaths(v, [...path, k])]);
}

function assertSameAsFull(text: string): void {
  const quick = readFast(text);
  assert.ok(quick, `the quick reader gave up on:\n${text}`);
  assert.deepEqual(quick.value, parse(text, { uniqueKeys: false }), `values differ for:\n${text}`);
  const doc: YamlDoc = readYaml(text, 't.yaml');
  assert.equal(doc.reader, 'quick');
  const full = doc.detail().locator;
  for (const p of keyPaths(quick.value)) {
    assert.deepEqual(doc.keys.keyPos(p), full.keyPos(p), `key position of ${JSON.stringify(p)} differs for:\n${text}`);
  }
}

function assertGivesUp(text: string): void {
  assert.equal(readFast(text), undefined, `the quick reader should leave this to the full parser:\n${text}`);
}

describe('baseline YAML: the quick reader', () => {
  describe('reads as the full parser does', () => {
    const cases: Record<string, string> = {
      'nested mappings': 'a:\n  b:\n    c: 1\n  d: x\ne: y\n',
      'sequence of mappings': 'r:\n  - file: /a\n    mode: "0644"\n  - sysctl: x\n    value: 1\n',
      'sequence at the key column': 'r:\n- a\n- b\nnext: 1\n',
      'compact mapping with more spaces': 'r:\n  -   a: 1\n      b: 2\n',
      'nested block under a dash': 'r:\n  -\n    a: 1\n  - b\n',
      'null items and values': 'a:\nb: ~\nc: null\nd: Null\ne:\n  - \n  - x\n',
      'comments and blank lines': '# top\n\na: 1 # trailing\n  # indented comment\n\nb:  # on the key\n  c: 2\n# end\n',
      'document start marker': '---\na: 1\n',
      'document start marker with comment': '--- # doc\na: 1\n',
      'quoted keys': '"a b": 1\n\'c\': 2\n"d:e": 3\n',
      'single quotes': "a: 'it''s'\nb: ''\nc: 'x # not a comment'\n",
      'double-quote escapes': 'a: "l1\\nl2\\t\\"q\\" \\\\ \\x41 \\u00e9 \\U0001F600 \\/ \\0 \\e \\N \\_"\n',
      'plain scalars with indicators inside': 'a: http://x:80/p\nb: a#b\nc: x-y\nd: -1\ne: "-"\nf: a,b]c\ng: sshd -t -f %s\n',
      'key with space before colon': 'a : 1\nb  : x\n',
      numbers: 'a: 0644\nb: 0o17\nc: 0x1F\nd: -5\ne: +5\nf: 1.5\ng: 1e3\nh: .5\ni: .inf\nj: -.Inf\nk: 1.0\nl: 007\nm: 1_000\nn: 0x\n',
      'not-a-number': 'a: .nan\n',
      booleans: 'a: true\nb: True\nc: TRUE\nd: false\ne: yes\nf: on\ng: off\nh: n\n',
      'flow collections': 'a: { b: 1, c: "x", d: [1, 2, { e: f }] }\ng: []\nh: {}\ni: [a b, "c,d", \'e\']\nj: {"k":1}\n',
      'flow with spaces': 'flap: {maxRepairs: 5,window: 10m}\nl: [ a , b ]\n',
      'literal block': 'a: |\n  line 1\n\n  line 3\n    indented\nb: 1\n',
      'literal block, strip': 'a: |-\n  x\n  y\n\n\nb: 1\n',
      'literal block with leading blank line': 'a: |\n\n  x\n',
      'literal block at the end without newline': 'a: |\n  x\n  y',
      'literal block in a sequence item': 'r:\n  - content: |\n      [server]\n      port = 1\n    mode: "0600"\n  - |\n    text\n',
      'literal block with comment-like lines': 'a: |\n  # not a comment\n  x: y\n# a comment\nb: 1\n',
      'folded block': 'a: >\n  one\n  two\n\n  three\nb: >-\n  x\n  y\n',
      'deep indentation': 'a:\n        b:\n                c: 1\n',
      'unicode text': 'a: "žluťoučký kůň"\nb: 日本語\n',
      'no final newline': 'a: 1\nb: 2',
      'duplicate keys (the last wins)': 'a: 1\na: 2\n',
      '__proto__ as a key': '__proto__: 1\nb: { __proto__: 2 }\n',
    };
    for (const [name, text] of Object.entries(cases)) it(name, () => assertSameAsFull(text));
  });

  describe('gives up on what it does not handle', () => {
    const cases: Record<string, string> = {
      anchor: 'a: &x 1\nb: *x\n',
      tag: 'a: !!str 1\n',
      'complex key': '? a\n: 1\n',
      'multi-line plain scalar': 'a: one\n  two\n',
      'multi-line double quote': 'a: "one\n  two"\n',
      'multi-line flow': 'a: [1,\n  2]\n',
      tab: 'a:\n\tb: 1\n',
      CRLF: 'a: 1\r\nb: 2\r\n',
      'keep chomping': 'a: |+\n  x\n\n',
      'indentation indicator': 'a: |2\n    x\n',
      'empty flow value': 'a: { b: }\n',
      'trailing comma': 'a: [1, 2, ]\n',
      directive: '%YAML 1.2\n---\na: 1\n',
      'document end': 'a: 1\n...\n',
      'two documents': 'a: 1\n---\nb: 2\n',
      'top-level sequence': '- a\n- b\n',
      'empty document': '# nothing\n',
      'scalar document': 'hello\n',
      'numeric key': '1: a\n',
      'null value in flow': '{ a: ~ }\n',
    };
    for (const [name, text] of Object.entries(cases)) it(name, () => assertGivesUp(text));
  });

  describe('never accepts malformed YAML', () => {
    const cases: Record<string, string> = {
      'mapping in a plain value': 'a: b: c\n',
      'dedent to no level': 'a:\n    b: 1\n  c: 2\n',
      'stray deeper line': 'a: 1\n  b: 2\n',
      'sequence after a value': 'a: 1\n- b\n',
      'unclosed double quote': 'a: "x\n',
      'unclosed single quote': "a: 'x\n",
      'text after a quote': 'a: "x" y\n',
      'unclosed flow': 'a: { b: 1\n',
      'unknown escape': 'a: "\\q"\n',
      'sequence in a compact sequence': '- - a\n',
      'plain value starting with an indicator': 'a: @x\n',
      'comment without space after a quote': 'a: "x"#c\n',
    };
    for (const [name, text] of Object.entries(cases)) it(name, () => assertGivesUp(text));
    it('leaves each of them to the full parser, which reports it', () => {
      for (const text of ['a: b: c\n', 'a:\n    b: 1\n  c: 2\n', 'a: "x\n', 'a: { b: 1\n', 'a: "\\q"\n', 'a: @x\n']) {
        const doc = readYaml(text, 't.yaml');
        assert.equal(doc.reader, 'full');
        assert.equal(doc.readable, false, `expected a syntax error for:\n${text}`);
        assert.ok(doc.issues.every((i) => i.code === 'HS_BASELINE_PARSE'));
      }
    });
  });

  describe('bounded on hostile lines', () => {
    /** Reads `text` in a child process that is killed after `ms`: a reader that backtracks exponentially never returns. */
    function readsWithin(text: string, ms: number): boolean {
      const reader = fileURLToPath(new URL('../../lib/baseline/yaml-doc.js', import.meta.url));
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import { readYaml } from ${JSON.stringify(reader)}; import { readFileSync } from 'node:fs'; readYaml(readFileSync(0, 'utf8'), 'x.yaml');`], { input: text, timeout: ms });
      return r.status === 0;
    }

    it('a long plain value ending in a colon does not make the quick reader backtrack without end', () => {
      // Found by the fuzz suite: `(?:[^\s:#]+|...)*` over "Orders API ... hostsselector:" backtracked exponentially.
      assert.ok(readsWithin(`  description: ${'word '.repeat(40)}selector:\n`, 20_000), 'still reading after 20 s');
      assert.ok(readsWithin(`key: "${'a'.repeat(5000)}\n`, 20_000), 'an unclosed double quote: still reading after 20 s');
    });

    it('prints nothing to stderr, where the agent writes its JSON logs, for a collection used as a key', () => {
      const reader = fileURLToPath(new URL('../../lib/baseline/yaml-doc.js', import.meta.url));
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import { readYaml } from ${JSON.stringify(reader)}; readYaml('labels:\\n  ? [a]\\n  : b\\n', 'x.yaml');`]);
      assert.equal(r.status, 0, r.stderr.toString());
      assert.equal(r.stderr.toString(), '');
    });

    it('leaves keys longer than YAML allows to the full parser, which says where they are', () => {
      const text = `a:\n  ${'x'.repeat(2000)}: 1\n`;
      assertGivesUp(text);
      const doc = readYaml(text, 't.yaml');
      assert.equal(doc.readable, false);
      assert.deepEqual(doc.issues.map((i) => [i.code, i.location?.line]), [['HS_BASELINE_PARSE', 2]]);
    });
  });

  describe('on thousands of mangled baselines', () => {
    // dist/test/unit → repository root
    const examples = new URL('../../../baselines/examples/', import.meta.url);
    const seeds = readdirSync(examples)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => readFileSync(new URL(f, examples), 'utf8'));
    seeds.push('r:\n- a\n- b\nnext: 1\nq: >\n  one\n  two\n\n  three\nz: |-\n  x\n\n\nw: \'it\'\'s\'\n"k y": {a: [1, 2], "b":3}\n');
    const pieces = [' ', ':', '-', '#', '"', "'", '\n', '|', '>', '{', '}', '[', ']', ',', 'a', '0', '\\', '~', '.', '  ', '- ', ': '];

    it('reads whatever it accepts as the full parser does, and accepts nothing the full parser rejects', function () {
      this.timeout(20_000); // the full parser is slow, and the machine may be busy
      let state = 20240917; // a fixed seed: a failure can be replayed
      const next = (n: number): number => {
        state = (state * 1103515245 + 12345) & 0x7fffffff;
        return state % n;
      };
      let accepted = 0;
      for (let round = 0; round < 400; round++) {
        let text = seeds[next(seeds.length)] as string;
        for (let edits = 1 + next(3); edits > 0; edits--) {
          const at = next(text.length + 1);
          const piece = pieces[next(pieces.length)] as string;
          const op = next(3);
          text = op === 0 ? text.slice(0, at) + piece + text.slice(at) : op === 1 ? text.slice(0, at) + text.slice(at + 1 + next(3)) : text.slice(0, at) + piece + text.slice(at + 1);
        }
        const quick = readFast(text);
        if (!quick) continue;
        accepted++;
        const full = parseDocument(text, { uniqueKeys: false });
        assert.deepEqual(full.errors, [], `accepted text the full parser rejects (round ${round}):\n${text}`);
        assert.deepEqual(quick.value, full.toJS(), `values differ (round ${round}):\n${text}`);
      }
      assert.ok(accepted > 100, `only ${accepted} accepted: the mangling is too rough to test anything`);
    });
  });
});
