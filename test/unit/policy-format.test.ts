// The policy format: the example parses, every kind of mistake is reported at its line:column and field, all at once,
// prototype keys stay data, and reserved or unreachable things are refused.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import schema from '../../baselines/policy.schema.json' with { type: 'json' };
import type { ErrorCode } from '../../lib/errors.js';
import { loadPolicyFile, loadPolicyFiles, MAX_POLICY_BYTES, parsePolicy, PolicyInvalidError, type PolicyDocument } from '../../lib/policy/index.js';
import { generatePolicyValidatorSource, MESSAGE_KEYWORDS } from '../../lib/policy/schema-codegen.js';

// dist/test/unit → repository root
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EXAMPLES = join(ROOT, 'baselines/examples/policies');

/** The header every test document shares; with rules(), spec.rules items start on line 7, their first key at column 7. */
const HEAD = 'apiVersion: homeostat/v1\nkind: Policy\nmetadata:\n  name: t\nspec:\n';

interface Found {
  code: ErrorCode;
  at: string;
  field: string | undefined;
  message: string;
}

function issuesOf(text: string): Found[] {
  try {
    parsePolicy(text, { file: 'p.yaml' });
  } catch (err) {
    assert.ok(err instanceof PolicyInvalidError, `expected PolicyInvalidError, got ${String(err)}`);
    return err.issues.map((i) => ({ code: i.code, at: `${i.location?.line}:${i.location?.column}`, field: i.location?.field, message: i.message }));
  }
  assert.fail(`expected the policy to be rejected:\n${text}`);
}

function oneIssue(text: string): Found {
  const found = issuesOf(text);
  assert.equal(found.length, 1, `expected one issue, got:\n${found.map((f) => `${f.at} ${f.code} ${f.message}`).join('\n')}`);
  return found[0] as Found;
}

function rules(body: string): string {
  return `${HEAD}  rules:\n${body}`;
}

function valid(text: string): PolicyDocument {
  return parsePolicy(text, { file: 'p.yaml' });
}

describe('policy format', () => {
  describe('the examples in baselines/examples/policies', () => {
    const files = readdirSync(EXAMPLES)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => join(EXAMPLES, f));

    it('has the worked example of docs/policy.md', () => assert.ok(files.some((f) => f.endsWith('fleet-governance.yaml'))));

    for (const file of files) {
      it(`${file.slice(EXAMPLES.length + 1)} loads, and validates as an editor would`, () => {
        const p = loadPolicyFile(file);
        assert.ok(p.rules.length > 0);
        const text = readFileSync(file, 'utf8');
        const ajv = new Ajv({ allErrors: true, allowUnionTypes: true });
        ajv.addVocabulary(MESSAGE_KEYWORDS);
        const validate = ajv.compile(schema);
        assert.ok(validate(parse(text)), JSON.stringify(validate.errors));
      });
    }

    it('reads the worked example into rules, windows and a content hash', () => {
      const p = loadPolicyFile(join(EXAMPLES, 'fleet-governance.yaml'));
      assert.equal(p.name, 'fleet-governance');
      assert.deepEqual({ ...p.selector?.matchLabels }, { env: 'prod' });
      assert.equal(p.priority, 0);
      assert.deepEqual([...p.windows.keys()], ['sunday-night']);
      assert.equal(p.windows.get('sunday-night')?.durationMs, 2 * 3_600_000);
      assert.deepEqual(
        p.rules.map((r) => [r.index, r.action.type, r.location.field]),
        [
          [0, 'defer', 'spec.rules[0]'],
          [1, 'escalate', 'spec.rules[1]'],
          [2, 'defer', 'spec.rules[2]'],
          [3, 'repair', 'spec.rules[3]'],
          [4, 'repair', 'spec.rules[4]'],
        ],
      );
      assert.deepEqual(p.rules[4]?.limits, { maxRepairsPerHour: 20 });
      assert.match(p.origin.sha256, /^[0-9a-f]{64}$/);
      const again = parsePolicy(`${p.origin.text}# a comment\n`, { file: 'x' });
      assert.notEqual(again.origin.sha256, p.origin.sha256, 'any change to the text is a new version');
    });

    it('the precompiled validator is up to date with the schema', () => {
      const current = readFileSync(join(ROOT, 'lib/policy/schema-validator.generated.ts'), 'utf8');
      assert.ok(current === generatePolicyValidatorSource(), 'baselines/policy.schema.json changed: run `node dist/lib/policy/schema-codegen.js` and rebuild');
    });
  });

  describe('reads every key', () => {
    it('lists mean any of, single values are lists of one, risk and riskAtLeast intersect', () => {
      const p = valid(
        rules(
          '    - match: { kind: [file, sysctl], change: content, risk: [medium, high, critical], riskAtLeast: high, baseline: "web-*" }\n' +
            '      action: repair\n' +
            '    - match: { actor: { exe: ["/usr/bin/vim*", "/usr/bin/nano"], user: root, loginUser: "ops-*", unit: "*.service", source: [audit, journal] } }\n' +
            '      action: { defer: 30m }\n' +
            '      description: hotfixes\n',
        ),
      );
      const [a, b] = p.rules;
      assert.deepEqual([...(a?.match.kind ?? [])], ['file', 'sysctl']);
      assert.deepEqual([...(a?.match.change ?? [])], ['content']);
      assert.deepEqual([...(a?.match.risk ?? [])], ['high', 'critical']);
      assert.equal(a?.match.baseline?.[0]?.matches('web-hardening'), true);
      assert.equal(b?.match.actor?.exe?.length, 2);
      assert.deepEqual([...(b?.match.actor?.source ?? [])], ['audit', 'journal']);
      assert.deepEqual(b?.action, { type: 'defer', ms: 30 * 60_000, text: '30m' });
      assert.equal(b?.description, 'hotfixes');
      assert.equal(b?.matchText, '{ actor: { exe: [/usr/bin/vim*, /usr/bin/nano], user: root, loginUser: ops-*, unit: *.service, source: [audit, journal] } }');
    });

    it('a rule without match, or with an empty one, matches every drift', () => {
      const p = valid(rules('    - action: monitor\n'));
      assert.deepEqual(p.rules[0]?.match, {});
    });

    it('window: NAME, a list, any and none', () => {
      const p = valid(
        `${HEAD}  maintenanceWindows:\n    - { name: a, cron: "0 2 * * 0", duration: 2h }\n    - { name: b, cron: "30 1 * * *", duration: 30m, timezone: Europe/Paris }\n  rules:\n` +
          '    - { match: { window: a }, action: monitor }\n    - { match: { window: [a, b] }, action: { defer: end-of-window } }\n' +
          '    - { match: { window: any }, action: ignore }\n    - { match: { window: none, kind: file }, action: repair }\n',
      );
      assert.deepEqual(
        p.rules.map((r) => r.match.window),
        [{ kind: 'in', names: ['a'] }, { kind: 'in', names: ['a', 'b'] }, { kind: 'any' }, { kind: 'none' }],
      );
      assert.equal(p.windows.get('b')?.timezone, 'Europe/Paris');
      assert.equal(p.windows.get('a')?.timezone, 'UTC');
    });
  });

  describe('reports each kind of mistake at its line:column and field', () => {
    it('HS_POLICY_PARSE: not YAML, and a second document, worded for policies', () => {
      const f = oneIssue(`${HEAD}  rules: [\n`);
      assert.equal(f.code, 'HS_POLICY_PARSE');
      const g = oneIssue(`${HEAD}  rules: []\n---\nkind: Policy\n`);
      assert.deepEqual([g.code, g.at], ['HS_POLICY_PARSE', '7:1']);
      assert.match(g.message, /a policy file holds one YAML document/);
    });

    it('HS_POLICY_UNKNOWN_KEY: a misspelt key, with a suggestion and the allowed keys', () => {
      const f = oneIssue(rules('    - match: { kind: file }\n      action: repair\n      limits: { maxRepairPerHour: 3 }\n'));
      assert.deepEqual([f.code, f.at, f.field], ['HS_POLICY_UNKNOWN_KEY', '9:17', 'spec.rules[0].limits.maxRepairPerHour']);
      assert.match(f.message, /did you mean "maxRepairsPerHour"/);
    });

    it('HS_POLICY_UNKNOWN_KEY: a condition written beside match, pointing under it', () => {
      const f = oneIssue(rules('    - kind: file\n      action: repair\n'));
      assert.deepEqual([f.code, f.at, f.field], ['HS_POLICY_UNKNOWN_KEY', '7:7', 'spec.rules[0].kind']);
      assert.match(f.message, /conditions go under match:/);
    });

    it('HS_POLICY_INVALID: a bad duration, a bad cron, a bad time zone, a window too long', () => {
      const found = issuesOf(
        `${HEAD}  maintenanceWindows:\n    - name: a\n      cron: "0 25 * * 0"\n      duration: 2x\n    - name: b\n      cron: "0 0 2 * * 0"\n      duration: 8d\n      timezone: Mars/Base\n  rules: []\n`,
      );
      assert.deepEqual(
        found.map((f) => [f.at, f.field]),
        [
          ['8:13', 'spec.maintenanceWindows[0].cron'],
          ['9:17', 'spec.maintenanceWindows[0].duration'],
          ['11:13', 'spec.maintenanceWindows[1].cron'],
          ['12:17', 'spec.maintenanceWindows[1].duration'],
          ['13:17', 'spec.maintenanceWindows[1].timezone'],
        ],
      );
      assert.match(found[0]?.message ?? '', /"25" is not a valid hour/);
      assert.match(found[1]?.message ?? '', /30s, 10m, 1h or 2d/);
      assert.match(found[2]?.message ?? '', /six fields/);
      assert.match(found[3]?.message ?? '', /from 1m to 7d/);
      assert.match(found[4]?.message ?? '', /not a time zone/);
    });

    it('HS_POLICY_INVALID: cron restricting both day fields is refused rather than read one way', () => {
      const f = oneIssue(`${HEAD}  maintenanceWindows:\n    - { name: a, cron: "0 2 1 * 0", duration: 1h }\n  rules: []\n`);
      assert.deepEqual([f.code, f.field], ['HS_POLICY_INVALID', 'spec.maintenanceWindows[0].cron']);
      assert.match(f.message, /both day-of-month and day-of-week/);
    });

    it('HS_POLICY_INVALID: a window referenced but not defined, with a suggestion', () => {
      const f = oneIssue(`${HEAD}  maintenanceWindows:\n    - { name: sunday-night, cron: "0 2 * * 0", duration: 2h }\n  rules:\n    - match: { window: sunday-nigth }\n      action: monitor\n`);
      assert.deepEqual([f.code, f.at, f.field], ['HS_POLICY_INVALID', '9:24', 'spec.rules[0].match.window']);
      assert.match(f.message, /not defined .*did you mean "sunday-night"/);
      const g = oneIssue(rules('    - { match: { window: any }, action: monitor }\n'));
      assert.match(g.message, /defines no spec.maintenanceWindows/);
    });

    it('HS_POLICY_DUPLICATE: two windows of one name, and a key written twice', () => {
      const found = issuesOf(
        `${HEAD}  maintenanceWindows:\n    - { name: a, cron: "0 2 * * 0", duration: 2h }\n    - { name: a, cron: "0 3 * * 0", duration: 1h }\n  rules:\n    - action: repair\n      action: monitor\n`,
      );
      assert.deepEqual(
        found.map((f) => [f.code, f.at]),
        [
          ['HS_POLICY_DUPLICATE', '8:15'],
          ['HS_POLICY_DUPLICATE', '11:7'],
        ],
      );
      assert.match(found[0]?.message ?? '', /already used by spec.maintenanceWindows\[0\] \(line 7\)/);
    });

    it('HS_POLICY_INVALID: a rule after a catch-all can never match', () => {
      const f = oneIssue(rules('    - action: repair\n    - match: { kind: file }\n      action: escalate\n'));
      assert.deepEqual([f.code, f.at, f.field], ['HS_POLICY_INVALID', '8:7', 'spec.rules[1]']);
      assert.match(f.message, /can never match: spec.rules\[0\] \(line 7\) matches every drift/);
    });

    it('HS_POLICY_UNSUPPORTED: ask: opa is reserved and refused plainly', () => {
      const f = oneIssue(rules('    - action: { ask: opa }\n'));
      assert.deepEqual([f.code, f.field], ['HS_POLICY_UNSUPPORTED', 'spec.rules[0].action.ask']);
      assert.match(f.message, /not supported yet/);
    });

    it('HS_POLICY_INVALID: actions that are not one, defer without a length, limits on a rule that never repairs', () => {
      const found = issuesOf(
        rules(
          '    - { match: { kind: file }, action: defer }\n    - { match: { kind: file }, action: { defer: 0s } }\n' +
            '    - { match: { kind: file }, action: { defer: 31d } }\n    - { match: { kind: file }, action: { defer: end-of-window } }\n' +
            '    - { match: { kind: file }, action: escalate, limits: { maxRepairsPerHour: 3 } }\n    - { match: { kind: file }, action: { repair: true } }\n' +
            '    - { match: { kind: file }, action: { defer: 1m, ask: opa } }\n',
        ),
      );
      assert.deepEqual(
        found.map((f) => f.field),
        [
          'spec.rules[0].action',
          'spec.rules[1].action.defer',
          'spec.rules[2].action.defer',
          'spec.rules[3].action.defer',
          'spec.rules[4].limits',
          'spec.rules[5].action.repair',
          'spec.rules[6].action',
          'spec.rules[6].action.ask',
        ],
      );
      assert.match(found[0]?.message ?? '', /\{ defer: 30m \}/);
      assert.match(found[3]?.message ?? '', /needs a window/);
      assert.match(found[4]?.message ?? '', /never repairs/);
      assert.match(found[5]?.message ?? '', /write action: repair/);
      assert.match(found[6]?.message ?? '', /one action only/);
    });

    it('HS_POLICY_INVALID: resource patterns name the type first; risk conditions that exclude each other', () => {
      const found = issuesOf(
        rules(
          '    - { match: { resource: "/etc/ssh/*" }, action: escalate }\n    - { match: { resource: ["fil:/etc/x", "*:/etc/**"] }, action: escalate }\n' +
            '    - { match: { risk: low, riskAtLeast: high }, action: escalate }\n',
        ),
      );
      assert.deepEqual(
        found.map((f) => [f.at, f.field]),
        [
          ['7:28', 'spec.rules[0].match.resource'],
          ['8:29', 'spec.rules[1].match.resource[0]'],
          ['9:42', 'spec.rules[2].match.riskAtLeast'],
        ],
      );
      assert.match(found[0]?.message ?? '', /did you mean "file:\/etc\/ssh\/\*"/);
      assert.match(found[1]?.message ?? '', /did you mean "file"/);
      assert.match(found[2]?.message ?? '', /exclude each other/);
    });

    it('reports every problem of a document at once, in text order', () => {
      const found = issuesOf(
        'apiVersion: homeostat/v2\nkind: Policy\nmetadata:\n  name: Bad_Name\nspec:\n  priority: 2000\n  rules:\n    - { match: { kind: fiel }, action: repair }\n',
      );
      assert.deepEqual(
        found.map((f) => f.at),
        ['1:13', '4:9', '6:13', '8:24'],
      );
    });

    it('a plain scalar ending in a colon is an error at once, not a slow parse (the baseline quick reader is exponential in it)', () => {
      const f = oneIssue(`apiVersion: homeostat/v1\nkind: Policy\nmetadata:\n  name: ${'x'.repeat(200)}:\nspec:\n  rules: []\n`);
      assert.deepEqual([f.code, f.at], ['HS_POLICY_PARSE', '4:9']);
    });

    it('quotes document text cut short: a huge key or name makes a readable message', () => {
      const long = 'a'.repeat(5000);
      const found = issuesOf(`${HEAD}  selector: { matchLabels: { ${long}: ${long} } }\n  rules:\n    - { match: { window: ${long}, ${long}: 1 }, action: ${long} }\n`);
      assert.ok(found.length >= 4);
      for (const f of found) assert.ok(f.message.length < 400, `${f.message.length}: ${f.message.slice(0, 120)}`);
    });

    it('refuses a text larger than MAX_POLICY_BYTES before parsing it', () => {
      const f = oneIssue(rules(`    - action: repair\n${'#'.repeat(MAX_POLICY_BYTES)}\n`));
      assert.match(f.message, /larger than 1024 KiB/);
    });
  });

  describe('prototype keys are data', () => {
    it('__proto__ and constructor as keys are unknown keys, not a way into objects', () => {
      const found = issuesOf(rules('    - match: { __proto__: { kind: file }, constructor: 1 }\n      action: repair\n'));
      assert.deepEqual(
        found.map((f) => [f.code, f.field]),
        [
          ['HS_POLICY_UNKNOWN_KEY', 'spec.rules[0].match.__proto__'],
          ['HS_POLICY_UNKNOWN_KEY', 'spec.rules[0].match.constructor'],
        ],
      );
      assert.equal(({} as Record<string, unknown>).kind, undefined);
    });

    it('a window named constructor is a window like any other; one not defined is not found on Object.prototype', () => {
      const p = valid(`${HEAD}  maintenanceWindows:\n    - { name: constructor, cron: "0 2 * * 0", duration: 1h }\n  rules:\n    - { match: { window: constructor }, action: monitor }\n`);
      assert.ok(p.windows.get('constructor'));
      const f = oneIssue(`${HEAD}  maintenanceWindows:\n    - { name: a, cron: "0 2 * * 0", duration: 1h }\n  rules:\n    - { match: { window: constructor }, action: monitor }\n`);
      assert.match(f.message, /window "constructor" is not defined/);
      const g = oneIssue(rules('    - { match: { window: hasownproperty }, action: monitor }\n'));
      assert.match(g.message, /not defined/);
    });

    it('a label called constructor is a label', () => {
      const p = valid(`${HEAD}  selector: { matchLabels: { constructor: x, toString: y } }\n  rules: []\n`);
      assert.equal(p.selector?.matchLabels.constructor, 'x');
      assert.deepEqual(Object.keys(p.selector?.matchLabels ?? {}), ['constructor', 'toString']);
    });
  });

  describe('files', () => {
    let tmp: string;
    before(() => (tmp = mkdtempSync(join(tmpdir(), 'hs-policy-'))));
    after(() => rmSync(tmp, { recursive: true, force: true }));

    it('two files with the same metadata.name are refused, with every file problem at once', () => {
      const a = join(tmp, 'a.yaml');
      const b = join(tmp, 'b.yaml');
      const c = join(tmp, 'c.yaml');
      writeFileSync(a, rules('    - action: repair\n'));
      writeFileSync(b, rules('    - action: monitor\n'));
      writeFileSync(c, rules('    - action: nope\n'));
      try {
        loadPolicyFiles([a, b, c]);
        assert.fail('expected a refusal');
      } catch (err) {
        assert.ok(err instanceof PolicyInvalidError);
        assert.deepEqual(
          err.issues.map((i) => [i.code, i.location?.file]),
          [
            ['HS_POLICY_DUPLICATE', b],
            ['HS_POLICY_INVALID', c],
          ],
        );
      }
    });

    it('does not follow a symlink in place of a policy file', () => {
      const target = join(tmp, 'real.yaml');
      const link = join(tmp, 'link.yaml');
      writeFileSync(target, rules('    - action: repair\n'));
      symlinkSync(target, link);
      assert.throws(() => loadPolicyFile(link), (err: unknown) => err instanceof PolicyInvalidError && /symlink/.test(err.describe()));
      assert.equal(loadPolicyFile(target).rules.length, 1);
    });
  });
});
