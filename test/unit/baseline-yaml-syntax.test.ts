// YAML syntax errors in the validator's own voice: each usual mistake of a hand-written baseline is named at
// line:column with what to do.
import assert from 'node:assert/strict';
import { readYaml } from '../../lib/baseline/yaml-doc.js';

const HEAD = 'apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: web\nspec:\n  resources:\n';
const problems = (text: string): string[] => readYaml(text, 'web.yaml').issues.map((i) => `${i.location?.line ?? 0}:${i.location?.column ?? 0}: ${i.message}`);

describe('YAML syntax errors of a baseline', () => {
  it('a key indented one space short of, or past, its siblings', () => {
    assert.deepEqual(problems(`${HEAD}    - file: /etc/motd\n      content: "x"\n     mode: "0644"\n`), [
      '9:6: YAML syntax: this key is indented 1 space fewer than its sibling "content" at line 8; start "mode" at column 7, as its siblings do',
    ]);
    assert.deepEqual(problems(`${HEAD}    - file: /etc/motd\n      content: "x"\n        mode: "0644"\n`), [
      '9:9: YAML syntax: this key is indented 2 spaces more than its sibling "content" at line 8; start "mode" at column 7, as its siblings do',
    ]);
  });

  it('a tab used to indent', () => {
    assert.deepEqual(problems(`${HEAD}    - file: /etc/motd\n\t  content: "x"\n`), [
      '8:1: YAML syntax: line 8 is indented with a tab; YAML indents with spaces only: replace the tab with spaces, lining the key up with its siblings',
    ]);
  });

  it('a tab the parser blames on the line before it: the line with the tab, at its column (found by the fuzz suite)', () => {
    const found = problems('""\\x41"\n\u0000:\n\t__proto__');
    assert.ok(found.includes('3:1: YAML syntax: line 3 is indented with a tab; YAML indents with spaces only: replace the tab with spaces, lining the key up with its siblings'), found.join('\n'));
    for (const p of found) assert.match(p, /^[1-9]\d*:[1-9]\d*: /, 'every problem at a line and column from 1');
  });

  it('a nested mapping on its key\'s line', () => {
    assert.deepEqual(problems('apiVersion: homeostat/v1\nkind: Baseline\nmetadata: name: web\nspec:\n  resources: []\n'), [
      '3:11: YAML syntax: "metadata: name: ..." puts a mapping on the same line as its key "metadata"; move "name: web" to the next line, indented under "metadata" (2 spaces), or write metadata: { name: web }',
    ]);
  });

  it('a key without its colon, a list item without a space after "-", and a list item out of line', () => {
    assert.deepEqual(problems(`${HEAD}    - file: /etc/motd\n      content "x"\n`), [
      '8:14: YAML syntax: "content" has no ":" after it; write "content: "x"" (the key, a colon and a space, then the value)',
    ]);
    assert.deepEqual(problems(`${HEAD}    - file: /etc/motd\n      mode: "0644"\n    -file: /etc/x\n`), ['9:5: YAML syntax: a list item needs a space after "-": write "- file: /etc/x"']);
    assert.deepEqual(problems(`${HEAD}  - file: /etc/motd\n    mode: "0644"\n   - file: /etc/x\n`), [
      '9:4: YAML syntax: this list item is indented 1 space more than the item at line 7; start its "-" at column 3',
    ]);
  });

  it('an unclosed quote is still shown where it opens', () => {
    assert.deepEqual(problems(`${HEAD}    - file: /etc/motd\n      content: "x\n    - file: /etc/b\n`), ['8:16: YAML syntax: this " opens a quoted value that is never closed']);
  });
});
