// A baseline with YAML syntax errors: after them come the schema errors of the resources that parsed whole, in line
// order; a resource the syntax error cut short draws nothing more, and nothing of the file is ever accepted.
import assert from 'node:assert/strict';
import { BaselineInvalidError } from '../../lib/errors.js';
import { parseBaseline } from '../../lib/baseline/index.js';

function problems(text: string): string[] {
  try {
    parseBaseline(text, { file: 'web.yaml' });
  } catch (err) {
    if (!(err instanceof BaselineInvalidError)) throw err;
    return err.issues.map((i) => `${i.location?.line ?? 0}:${i.location?.column ?? 0}: ${i.message} [${i.code}${i.location?.field ? ` ${i.location.field}` : ''}]`);
  }
  assert.fail('the baseline was accepted');
}

const TAB = '5:7: YAML syntax: line 5 is indented with a tab; YAML indents with spaces only: replace the tab with spaces, lining the key up with its siblings [HS_BASELINE_PARSE]';

describe('schema errors of the parts that parsed, after YAML syntax errors', () => {
  it('a tab on line 5 and an unknown key on line 12 in another resource: both, in line order, with line:column', () => {
    const text = [
      'metadata: { name: web }', // 1
      'spec:',
      '  resources:',
      '    - file: /etc/motd',
      '      \tcontent: "hello"', // 5: a tab after the indentation
      '      mode: "0644"',
      '    - sysctl: net.ipv4.ip_forward',
      '      value: 1',
      '    - service: nginx.service',
      '      ensure: running',
      '    - directory: /srv/www',
      '      modee: "0755"', // 12
      'apiVersion: homeostat/v1',
      'kind: Baseline',
      '',
    ].join('\n');
    assert.deepEqual(problems(text), [
      TAB,
      '12:7: unknown key "modee" in a directory resource (did you mean "mode"?); allowed: ensure, mode, owner, group, policy, risk, escalateAt, flap [HS_BASELINE_UNKNOWN_KEY spec.resources[3].modee]',
    ]);
  });

  it('syntax errors come first; the schema errors of the resources around them follow in line order', () => {
    const text = [
      'apiVersion: homeostat/v1',
      'kind: Baseline',
      'metadata: { name: web }',
      'spec:',
      '  resources:',
      '    - file: etc/motd', // 6: relative path
      '      content: x',
      '    - file: /etc/issue',
      '      policy: mode: monitor', // 9: a mapping on its key's line
      '    - sysctl: net.ipv4.ip_forward',
      '      value: [1]', // 11: not a scalar
      '',
    ].join('\n');
    const got = problems(text);
    assert.match(got[0] ?? '', /^9:\d+: YAML syntax: "policy: mode: \.\.\." puts a mapping on the same line/);
    assert.deepEqual(
      got.slice(1).map((p) => p.slice(0, p.indexOf(':', p.indexOf(':') + 1))),
      ['6:13', '11:14'],
      got.join('\n'),
    );
    assert.match(got[1] ?? '', /spec\.resources\[0\]\.file\]$/);
    assert.match(got[2] ?? '', /spec\.resources\[2\]\.value\]$/);
  });

  it('a resource cut short by the error reports only the syntax error: nothing about what the error hid, no phantom resource', () => {
    // "mode" one space short of its siblings ends the file resource and reads as a list item of its own.
    const text = [
      'apiVersion: homeostat/v1',
      'kind: Baseline',
      'metadata: { name: web }',
      'spec:',
      '  resources:',
      '    - file: /etc/motd',
      '      validate: [/usr/bin/true]',
      '     mode: "0644"',
      '',
    ].join('\n');
    assert.deepEqual(problems(text), [
      '8:6: YAML syntax: this key is indented 1 space fewer than its sibling "validate" at line 7; start "mode" at column 7, as its siblings do [HS_BASELINE_PARSE]',
    ]);
    // A service cut short where a key falls back under spec: read as parsed, it would "need at least one of ensure, ...".
    const service = ['apiVersion: homeostat/v1', 'kind: Baseline', 'metadata: { name: web }', 'spec:', '  resources:', '    - service: nginx.service', '  ensure: running', '    - directory: /srv', ''].join('\n');
    const got = problems(service);
    assert.ok(got.length > 0 && got.every((p) => p.includes('[HS_BASELINE_PARSE')), got.join('\n'));
  });

  it('resources compared with each other are only the intact ones; each of them is still checked against the others', () => {
    const text = [
      'apiVersion: homeostat/v1',
      'kind: Baseline',
      'metadata: { name: web }',
      'spec:',
      '  resources:',
      '    - file: /etc/motd',
      '      content: x',
      '    - file: /etc/motd',
      '      content "y"', // 9: no colon; this resource is not compared
      '    - file: /etc/motd',
      '      content: z',
      '',
    ].join('\n');
    const got = problems(text);
    assert.equal(got.length, 2, got.join('\n'));
    assert.match(got[0] ?? '', /^9:\d+: YAML syntax: "content" has no ":" after it/);
    assert.equal(got[1], '10:7: file:/etc/motd is declared twice; the first is spec.resources[0] at line 6 [HS_BASELINE_DUPLICATE spec.resources[2].file]');
  });

  it('with spec or its resources written twice, no resource can be matched to its text: only the syntax error', () => {
    const text = [
      'apiVersion: homeostat/v1',
      'kind: Baseline',
      'metadata: { name: web }',
      'spec:',
      '  resources:',
      '    - file: /etc/a', // no error near the first spec.resources[0]
      '    - file: /etc/b',
      'spec:',
      '  resources:',
      '    - file: /etc/c',
      '      \tcontent: x', // 11: the tab is in the resource the values hold as spec.resources[0]
      '      colour: blue',
      '',
    ].join('\n');
    const got = problems(text);
    assert.equal(got.length, 1, got.join('\n'));
    assert.match(got[0] ?? '', /^11:7: YAML syntax: line 11 is indented with a tab/);
  });

  it('a second document is a syntax error; the resources of the first are still checked, the last one excepted', () => {
    const text = ['apiVersion: homeostat/v1', 'kind: Baseline', 'metadata: { name: web }', 'spec:', '  resources:', '    - file: /etc/a', '      colour: blue', '    - file: /etc/b', '---', 'kind: Baseline', ''].join('\n');
    const got = problems(text);
    assert.match(got[0] ?? '', /^9:1: a baseline file holds one YAML document/);
    assert.match(got[1] ?? '', /^7:7: unknown key "colour" in a file resource/);
    assert.equal(got.length, 2, got.join('\n'));
  });
});
