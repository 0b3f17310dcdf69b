// The baseline format: examples parse, every kind of mistake is reported at its line:column and field, all at once,
// policies inherit and override, sources resolve against the baseline's folder, and ids are normalised.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import { parse } from 'yaml';
import schema from '../../baselines/baseline.schema.json' with { type: 'json' };
import { BaselineInvalidError, HsError, type ErrorCode } from '../../lib/errors.js';
import { DEFAULT_POLICY, loadBaselineFile, loadBaselineFiles, parseBaseline, type Baseline, type ParseOptions } from '../../lib/baseline/index.js';
import { generateValidatorSource, MESSAGE_KEYWORDS } from '../../lib/baseline/schema-codegen.js';
import { readYaml } from '../../lib/baseline/yaml-doc.js';

// dist/test/unit → repository root
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EXAMPLES = join(ROOT, 'baselines/examples');
const exampleFiles = readdirSync(EXAMPLES)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => join(EXAMPLES, f));

/** The header every test document shares; `spec.resources` items start on line 7, their type key at column 7. */
const HEAD = 'apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: t\nspec:\n  resources:\n';

interface Found {
  code: ErrorCode;
  at: string; // line:column
  field: string | undefined;
  resource: string | undefined;
  message: string;
}

/** The issues parseBaseline reports for `text`; fails when it accepts it. */
function issuesOf(text: string, opts: Partial<ParseOptions> = {}): Found[] {
  try {
    parseBaseline(text, { file: 'b.yaml', ...opts });
  } catch (err) {
    assert.ok(err instanceof BaselineInvalidError, `expected BaselineInvalidError, got ${String(err)}`);
    return err.issues.map((i) => ({
      code: i.code,
      at: `${i.location?.line}:${i.location?.column}`,
      field: i.location?.field,
      resource: i.location?.resource,
      message: i.message,
    }));
  }
  assert.fail(`expected the baseline to be rejected:\n${text}`);
}

/** The one issue reported for `text`. */
function oneIssue(text: string, opts: Partial<ParseOptions> = {}): Found {
  const found = issuesOf(text, opts);
  assert.equal(found.length, 1, `expected one issue, got:\n${found.map((f) => `${f.at} ${f.code} ${f.message}`).join('\n')}`);
  return found[0] as Found;
}

function valid(resources: string, opts: Partial<ParseOptions> = {}): Baseline {
  return parseBaseline(HEAD + resources, { file: 'b.yaml', ...opts });
}

describe('baseline format', () => {
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'hs-baseline-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  describe('examples in baselines/examples', () => {
    it('has examples to check', () => assert.ok(exampleFiles.length >= 3));

    for (const file of exampleFiles) {
      it(`${file.slice(EXAMPLES.length + 1)} loads, and is read by the quick reader`, () => {
        const b = loadBaselineFile(file);
        assert.ok(b.resources.length > 0);
        assert.equal(readYaml(readFileSync(file, 'utf8'), file).reader, 'quick');
      });
    }

    /** The schema file compiled as an editor's validator would, apart from our precompiled one. */
    const editorValidator = (): ValidateFunction => {
      const ajv = new Ajv({ allErrors: true, allowUnionTypes: true });
      ajv.addVocabulary(MESSAGE_KEYWORDS);
      return ajv.compile(schema);
    };

    it('every example validates against baselines/baseline.schema.json as an editor would use it', () => {
      const validate = editorValidator();
      for (const file of exampleFiles) {
        const ok = validate(parse(readFileSync(file, 'utf8')));
        assert.ok(ok, `${file}: ${JSON.stringify(validate.errors)}`);
      }
    });

    it('the precompiled validator is up to date with the schema', () => {
      const current = readFileSync(join(ROOT, 'lib/baseline/schema-validator.generated.ts'), 'utf8');
      assert.ok(current === generateValidatorSource(), 'baselines/baseline.schema.json changed: run `node dist/lib/baseline/schema-codegen.js` and rebuild');
    });

    it('the schema rejects what the validator rejects, for editors', () => {
      const validate = editorValidator();
      const base = parse(readFileSync(join(EXAMPLES, 'app-config.yaml'), 'utf8')) as { spec: { resources: Record<string, unknown>[] } };
      const withBadMode = structuredClone(base);
      (withBadMode.spec.resources[0] as Record<string, unknown>).mode = 755;
      assert.equal(validate(withBadMode), false);
      const withUnknownKey = structuredClone(base);
      (withUnknownKey.spec.resources[0] as Record<string, unknown>).ownr = 'root';
      assert.equal(validate(withUnknownKey), false);
    });

    it('web-hardening carries sshd_config from files/ as bytes, with its hash and base64 in origin', () => {
      const b = loadBaselineFile(join(EXAMPLES, 'web-hardening.yaml'));
      const sshd = b.resources.find((r) => r.id === 'file:/etc/ssh/sshd_config');
      assert.ok(sshd);
      const bytes = readFileSync(join(EXAMPLES, 'files/sshd_config'));
      assert.ok(Buffer.isBuffer(sshd.fields.content));
      assert.ok((sshd.fields.content as Buffer).equals(bytes));
      assert.equal(sshd.fields.source, 'files/sshd_config');
      assert.equal(b.origin.sources['files/sshd_config'], bytes.toString('base64'));
      assert.match(b.origin.sha256, /^[0-9a-f]{64}$/);
      assert.equal(b.origin.text, readFileSync(join(EXAMPLES, 'web-hardening.yaml'), 'utf8'));
      assert.deepEqual(b.selector, { matchLabels: { role: 'web' } });
      assert.equal(b.description, 'SSH and kernel hardening for web hosts');
      assert.deepEqual(b.labels, { owner: 'platform-security' });
    });
  });

  describe('reports each kind of mistake at its line:column and field', () => {
    it('HS_BASELINE_PARSE: an unclosed quote, at the quote', () => {
      const f = oneIssue(`${HEAD}    - file: /etc/motd\n      content: "Authorized use only\n`);
      assert.deepEqual([f.code, f.at], ['HS_BASELINE_PARSE', '8:16']);
    });

    it('HS_BASELINE_PARSE: a second document', () => {
      const f = oneIssue(`${HEAD}    - file: /etc/motd\n---\nkind: Baseline\n`);
      assert.deepEqual([f.code, f.at], ['HS_BASELINE_PARSE', '8:1']);
      assert.match(f.message, /one YAML document/);
    });

    it('HS_BASELINE_UNKNOWN_KEY: a misspelt key, with a suggestion and the allowed keys', () => {
      const f = oneIssue(`${HEAD}    - file: /etc/motd\n      content: "x"\n      ownr: root\n`);
      assert.deepEqual([f.code, f.at, f.field, f.resource], ['HS_BASELINE_UNKNOWN_KEY', '9:7', 'spec.resources[0].ownr', 'file:/etc/motd']);
      assert.match(f.message, /did you mean "owner"/);
      assert.match(f.message, /allowed: .*owner/);
    });

    it('HS_RESOURCE_UNKNOWN_TYPE: a resource type this version does not know', () => {
      const f = oneIssue(`${HEAD}    - package: nginx\n      ensure: running\n`);
      assert.deepEqual([f.code, f.at, f.field], ['HS_RESOURCE_UNKNOWN_TYPE', '7:7', 'spec.resources[0].package']);
      assert.match(f.message, /file, directory, sysctl, service/);
    });

    it('HS_BASELINE_UNKNOWN_KEY: policy keys at spec level', () => {
      const f = oneIssue('apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: t\nspec:\n  mode: monitor\n  resources: []\n');
      assert.deepEqual([f.code, f.at, f.field], ['HS_BASELINE_UNKNOWN_KEY', '6:3', 'spec.mode']);
      assert.match(f.message, /spec\.policy/);
    });

    it('HS_BASELINE_INVALID: an unquoted mode, telling to quote it', () => {
      const f = oneIssue(`${HEAD}    - file: /etc/motd\n      mode: 0644\n`);
      assert.deepEqual([f.code, f.at, f.field, f.resource], ['HS_BASELINE_INVALID', '8:13', 'spec.resources[0].mode', 'file:/etc/motd']);
      assert.match(f.message, /write mode: "0644"/);
    });

    it('HS_BASELINE_INVALID: a mode that is not octal', () => {
      const f = oneIssue(`${HEAD}    - directory: /etc/app\n      mode: "0855"\n`);
      assert.deepEqual([f.code, f.at, f.field], ['HS_BASELINE_INVALID', '8:13', 'spec.resources[0].mode']);
      assert.match(f.message, /octal/);
    });

    it('HS_BASELINE_INVALID: a policy mode where a file mode goes, pointing to policy:', () => {
      const f = oneIssue(`${HEAD}    - file: /etc/motd\n      mode: monitor\n`);
      assert.deepEqual([f.code, f.at], ['HS_BASELINE_INVALID', '8:13']);
      assert.match(f.message, /policy: \{ mode: monitor \}/);
    });

    it('HS_BASELINE_INVALID: relative and unnormalised paths', () => {
      const found = issuesOf(`${HEAD}    - file: etc/motd\n    - file: /etc/../motd\n    - directory: /etc/app/\n    - file: /etc//x\n`);
      assert.deepEqual(
        found.map((f) => [f.code, f.at, f.field]),
        [
          ['HS_BASELINE_INVALID', '7:13', 'spec.resources[0].file'],
          ['HS_BASELINE_INVALID', '8:13', 'spec.resources[1].file'],
          ['HS_BASELINE_INVALID', '9:18', 'spec.resources[2].directory'],
          ['HS_BASELINE_INVALID', '10:13', 'spec.resources[3].file'],
        ],
      );
      assert.match(found[0]?.message ?? '', /relative/);
      assert.match(found[1]?.message ?? '', /write \/motd/);
      assert.match(found[2]?.message ?? '', /trailing/);
    });

    it('HS_BASELINE_INVALID: a value outside its set, with a suggestion', () => {
      const f = oneIssue(`${HEAD}    - service: nginx\n      ensure: runing\n`);
      assert.deepEqual([f.code, f.at, f.field, f.resource], ['HS_BASELINE_INVALID', '8:15', 'spec.resources[0].ensure', 'service:nginx.service']);
      assert.match(f.message, /one of running, stopped/);
      assert.match(f.message, /did you mean "running"/);
    });

    it('HS_BASELINE_INVALID: a missing required key, at the resource', () => {
      const f = oneIssue(`${HEAD}    - sysctl: net.ipv4.ip_forward\n      persist: true\n`);
      assert.deepEqual([f.code, f.at, f.field], ['HS_BASELINE_INVALID', '7:7', 'spec.resources[0].value']);
      assert.match(f.message, /needs "value"/);
    });

    it('HS_BASELINE_INVALID: validate without %s', () => {
      const f = oneIssue(`${HEAD}    - file: /etc/ssh/sshd_config\n      content: "x"\n      validate: sshd -t\n`);
      assert.deepEqual([f.code, f.at, f.field], ['HS_BASELINE_INVALID', '9:17', 'spec.resources[0].validate']);
      assert.match(f.message, /%s/);
    });

    it('HS_BASELINE_INVALID: top-level fields', () => {
      const found = issuesOf('apiVersion: homeostat/v2\nkind: Baseline\nmetadata:\n  name: Web_Hardening\nspec:\n  policy:\n    escalateAt: severe\n    flap: { maxRepairs: 0, window: 10 minutes }\n  resources: []\n');
      assert.deepEqual(
        found.map((f) => [f.code, f.at, f.field]),
        [
          ['HS_BASELINE_INVALID', '1:13', 'apiVersion'],
          ['HS_BASELINE_INVALID', '4:9', 'metadata.name'],
          ['HS_BASELINE_INVALID', '7:17', 'spec.policy.escalateAt'],
          ['HS_BASELINE_INVALID', '8:25', 'spec.policy.flap.maxRepairs'],
          ['HS_BASELINE_INVALID', '8:36', 'spec.policy.flap.window'],
        ],
      );
    });

    it('HS_BASELINE_INVALID: every missing top-level key', () => {
      const found = issuesOf('apiVersion: homeostat/v1\n');
      assert.deepEqual(
        found.map((f) => [f.code, f.at, f.field]),
        [
          ['HS_BASELINE_INVALID', '1:1', 'kind'],
          ['HS_BASELINE_INVALID', '1:1', 'metadata'],
          ['HS_BASELINE_INVALID', '1:1', 'spec'],
        ],
      );
    });

    it('HS_BASELINE_INVALID: a sysctl value on several lines, or too large to be exact', () => {
      const found = issuesOf(`${HEAD}    - sysctl: kernel.core_pattern\n      value: "core\\nkernel.x = 1"\n    - sysctl: kernel.x\n      value: 99999999999999999999\n`);
      assert.deepEqual(
        found.map((f) => [f.code, f.at, f.field]),
        [
          ['HS_BASELINE_INVALID', '8:14', 'spec.resources[0].value'],
          ['HS_BASELINE_INVALID', '10:14', 'spec.resources[1].value'],
        ],
      );
      assert.match(found[1]?.message ?? '', /value: "99999999999999999999"/);
    });

    it('HS_BASELINE_INVALID: a resource with two type keys', () => {
      const f = oneIssue(`${HEAD}    - file: /etc/a\n      directory: /etc/b\n`);
      assert.deepEqual([f.code, f.at, f.field], ['HS_BASELINE_INVALID', '8:7', 'spec.resources[0].directory']);
    });

    it('HS_BASELINE_INVALID: a unit type a service resource cannot manage, and an uninstantiated template', () => {
      const found = issuesOf(`${HEAD}    - service: dev-sda.device\n      ensure: running\n    - service: getty@.service\n      ensure: running\n`);
      assert.deepEqual(
        found.map((f) => [f.code, f.at, f.field]),
        [
          ['HS_BASELINE_INVALID', '7:16', 'spec.resources[0].service'],
          ['HS_BASELINE_INVALID', '9:16', 'spec.resources[1].service'],
        ],
      );
    });

    it('HS_BASELINE_DUPLICATE: the same id after normalisation', () => {
      const found = issuesOf(
        `${HEAD}    - sysctl: net/ipv4/ip_forward\n      value: "0"\n    - service: nginx\n      ensure: running\n    - sysctl: net.ipv4.ip_forward\n      value: "1"\n    - service: nginx.service\n      enabled: true\n`,
      );
      assert.deepEqual(
        found.map((f) => [f.code, f.at, f.field, f.resource]),
        [
          ['HS_BASELINE_DUPLICATE', '11:7', 'spec.resources[2].sysctl', 'sysctl:net.ipv4.ip_forward'],
          ['HS_BASELINE_DUPLICATE', '13:7', 'spec.resources[3].service', 'service:nginx.service'],
        ],
      );
      assert.match(found[0]?.message ?? '', /spec\.resources\[0\] at line 7/);
    });

    it('HS_BASELINE_DUPLICATE: a key written twice, at the second', () => {
      const f = oneIssue(`${HEAD}    - file: /etc/motd\n      mode: "0644"\n      mode: "0600"\n`);
      assert.deepEqual([f.code, f.at, f.field, f.resource], ['HS_BASELINE_DUPLICATE', '9:7', 'spec.resources[0].mode', 'file:/etc/motd']);
    });

    it('HS_BASELINE_CONFLICT: one path as a file and as a directory', () => {
      const f = oneIssue(`${HEAD}    - directory: /etc/app\n    - file: /etc/app\n      content: "x"\n`);
      assert.deepEqual([f.code, f.at, f.field, f.resource], ['HS_BASELINE_CONFLICT', '8:7', 'spec.resources[1].file', 'file:/etc/app']);
      assert.match(f.message, /line 7/);
    });

    it('HS_BASELINE_CONFLICT: anything under a directory declared absent', () => {
      const found = issuesOf(`${HEAD}    - directory: /srv/old\n      ensure: absent\n    - file: /srv/old/a/b.conf\n      content: "x"\n    - directory: /srv/old/c\n`);
      assert.deepEqual(
        found.map((f) => [f.code, f.at, f.field]),
        [
          ['HS_BASELINE_CONFLICT', '9:7', 'spec.resources[1].file'],
          ['HS_BASELINE_CONFLICT', '11:7', 'spec.resources[2].directory'],
        ],
      );
      assert.match(found[0]?.message ?? '', /inside \/srv\/old, which is declared absent/);
    });

    it('HS_BASELINE_CONFLICT: a path inside a managed file', () => {
      const f = oneIssue(`${HEAD}    - file: /etc/app.conf\n      content: "x"\n    - file: /etc/app.conf/extra\n      content: "y"\n`);
      assert.deepEqual([f.code, f.at, f.field], ['HS_BASELINE_CONFLICT', '9:7', 'spec.resources[1].file']);
      assert.match(f.message, /declared as a file/);
    });

    it('HS_BASELINE_CONFLICT: within one resource', () => {
      const found = issuesOf(
        `${HEAD}    - file: /etc/a\n      content: "x"\n      source: files/a\n    - file: /etc/b\n      ensure: absent\n      mode: "0644"\n    - service: telnet\n      ensure: running\n      masked: true\n    - sysctl: vm.swappiness\n      value: 10\n      risk: high\n      policy: { risk: low }\n`,
      );
      assert.deepEqual(
        found.map((f) => [f.code, f.at, f.field]),
        [
          ['HS_BASELINE_CONFLICT', '9:7', 'spec.resources[0].source'],
          ['HS_BASELINE_CONFLICT', '12:7', 'spec.resources[1].mode'],
          ['HS_BASELINE_CONFLICT', '15:7', 'spec.resources[2].masked'],
          ['HS_BASELINE_CONFLICT', '18:7', 'spec.resources[3].risk'],
        ],
      );
    });

    it('HS_BASELINE_SOURCE: a source that cannot be read, naming the resolved path', () => {
      const dir = join(tmp, 'missing-source');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, 'b.yaml');
      writeFileSync(file, `${HEAD}    - file: /etc/ssh/sshd_config\n      source: files/sshd_config\n`);
      try {
        loadBaselineFile(file);
        assert.fail('expected an error');
      } catch (err) {
        assert.ok(err instanceof BaselineInvalidError);
        const i = err.issues[0] as HsError;
        assert.equal(err.issues.length, 1);
        assert.equal(i.code, 'HS_BASELINE_SOURCE');
        assert.deepEqual([i.location?.file, i.location?.line, i.location?.column, i.location?.field], [file, 8, 15, 'spec.resources[0].source']);
        assert.ok(i.message.includes(join(dir, 'files/sshd_config')), i.message);
      }
    });

    it('reports every problem at once, in the order of the text', () => {
      const found = issuesOf(
        'apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: t\n  colour: blue\nspec:\n  resources:\n    - file: /etc/motd\n      mode: 644\n    - sysctl: net.ipv4.ip_forward\n    - file: /etc/motd\n      content: "x"\n    - service: nginx\n      enabled: yes\n',
      );
      assert.deepEqual(
        found.map((f) => [f.code, f.at]),
        [
          ['HS_BASELINE_UNKNOWN_KEY', '5:3'],
          ['HS_BASELINE_INVALID', '9:13'],
          ['HS_BASELINE_INVALID', '10:7'],
          ['HS_BASELINE_DUPLICATE', '11:7'],
          ['HS_BASELINE_INVALID', '14:16'],
        ],
      );
    });

    it('the error says it for humans: file:line:column, message, resource and field, code', () => {
      try {
        parseBaseline(`${HEAD}    - file: /etc/motd\n      mode: 0644\n`, { file: 'web.yaml' });
        assert.fail('expected an error');
      } catch (err) {
        assert.ok(err instanceof BaselineInvalidError);
        assert.equal(err.code, 'HS_BASELINE_INVALID');
        assert.match(err.message, /^web\.yaml: 1 problem$/);
        assert.match(err.describe(), /^web\.yaml:8:13: mode must be a quoted octal string .* \(file:\/etc\/motd spec\.resources\[0\]\.mode\) \[HS_BASELINE_INVALID\]$/);
      }
    });

    it('reports the same places when the full YAML parser reads the text', () => {
      const body = `${HEAD}    - file: /etc/motd\n      mode: 0644\n      ownr: root\n    - file: /etc/motd\n      content: "x"\n      content: "y"\n`;
      const quick = issuesOf(body);
      // a directive is beyond the quick reader: the same text, two lines lower, goes through the full parser
      const full = issuesOf(`%YAML 1.2\n---\n${body}`);
      assert.equal(readYaml(`%YAML 1.2\n---\n${body}`, 'b.yaml').reader, 'full');
      assert.equal(quick.length, 4);
      assert.deepEqual(
        full.map((f) => ({ ...f, at: f.at.replace(/^\d+/, (l) => String(Number(l) - 2)), message: f.message.replace(/line \d+/, 'line N') })),
        quick.map((f) => ({ ...f, message: f.message.replace(/line \d+/, 'line N') })),
      );
    });
  });

  describe('policy', () => {
    it('is DEFAULT_POLICY when the baseline sets none', () => {
      const b = valid('    - file: /etc/motd\n');
      assert.deepEqual(b.policy, DEFAULT_POLICY);
      assert.deepEqual(b.resources[0]?.policy, DEFAULT_POLICY);
    });

    it('takes spec.policy over the defaults, key by key, flap part by part', () => {
      const b = parseBaseline(
        'apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: t\nspec:\n  policy:\n    mode: monitor\n    flap: { window: 1h }\n  resources:\n    - file: /etc/motd\n',
        { file: 'b.yaml' },
      );
      const expected = { mode: 'monitor', risk: 'low', escalateAt: 'high', flap: { maxRepairs: 5, windowMs: 3_600_000 } };
      assert.deepEqual(b.policy, expected);
      assert.deepEqual(b.resources[0]?.policy, expected);
    });

    it("puts a resource's own keys on top, top-level or in its policy: map", () => {
      const b = parseBaseline(
        'apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: t\nspec:\n  policy:\n    mode: enforce\n    risk: medium\n    escalateAt: critical\n    flap: { maxRepairs: 3, window: 10m }\n  resources:\n' +
          '    - file: /etc/motd\n      mode: "0644"\n      risk: high\n      flap: { window: 30s }\n' +
          '    - file: /etc/issue\n      mode: "0600"\n      policy: { mode: monitor, escalateAt: high }\n' +
          '    - sysctl: net.ipv4.ip_forward\n      value: 0\n      mode: monitor\n' +
          '    - service: nginx\n      ensure: running\n      policy:\n        risk: low\n        flap: { maxRepairs: 1 }\n',
        { file: 'b.yaml' },
      );
      const [motd, issue, sysctl, nginx] = b.resources;
      assert.deepEqual(motd?.policy, { mode: 'enforce', risk: 'high', escalateAt: 'critical', flap: { maxRepairs: 3, windowMs: 30_000 } });
      assert.equal(motd?.fields.mode, '0644'); // permissions stay a field
      assert.deepEqual(issue?.policy, { mode: 'monitor', risk: 'medium', escalateAt: 'high', flap: { maxRepairs: 3, windowMs: 600_000 } });
      assert.equal(issue?.fields.mode, '0600');
      assert.deepEqual(sysctl?.policy, { mode: 'monitor', risk: 'medium', escalateAt: 'critical', flap: { maxRepairs: 3, windowMs: 600_000 } });
      assert.equal('mode' in (sysctl?.fields ?? {}), false);
      assert.deepEqual(nginx?.policy, { mode: 'enforce', risk: 'low', escalateAt: 'critical', flap: { maxRepairs: 1, windowMs: 600_000 } });
    });
  });

  describe('fields', () => {
    it("holds the type's own keys with documented defaults, without the type key or policy keys", () => {
      const b = valid(
        '    - file: /etc/motd\n      content: "hi\\n"\n      owner: 0\n      group: adm\n      risk: low\n' +
          '    - directory: /etc/app\n' +
          '    - sysctl: net.ipv4.ip_forward\n      value: 0\n' +
          '    - service: nginx\n      ensure: running\n      enabled: true\n      mode: monitor\n',
      );
      assert.deepEqual(
        b.resources.map((r) => r.fields),
        [
          { content: 'hi\n', owner: 0, group: 'adm', ensure: 'present' },
          { ensure: 'present' },
          { value: '0', persist: false },
          { ensure: 'running', enabled: true },
        ],
      );
    });

    it('locates each resource at its type key', () => {
      const b = valid('    - file: /etc/motd\n    - ensure: running\n      service: nginx\n', { file: 'web.yaml' });
      assert.deepEqual(b.resources[0]?.location, { file: 'web.yaml', line: 7, column: 7, field: 'spec.resources[0]', resource: 'file:/etc/motd' });
      assert.deepEqual(b.resources[1]?.location, { file: 'web.yaml', line: 9, column: 7, field: 'spec.resources[1]', resource: 'service:nginx.service' });
      assert.deepEqual(
        b.resources.map((r) => [r.index, r.type, r.name]),
        [
          [0, 'file', '/etc/motd'],
          [1, 'service', 'nginx.service'],
        ],
      );
    });
  });

  describe('ids', () => {
    it('writes sysctl keys dotted, swapping dots and slashes of the /proc/sys form', () => {
      const b = valid('    - sysctl: net/ipv4/ip_forward\n      value: 0\n    - sysctl: net/ipv4/conf/eth0.100/rp_filter\n      value: 1\n    - sysctl: kernel.pid_max\n      value: 65536\n');
      assert.deepEqual(
        b.resources.map((r) => r.id),
        ['sysctl:net.ipv4.ip_forward', 'sysctl:net.ipv4.conf.eth0/100.rp_filter', 'sysctl:kernel.pid_max'],
      );
    });

    it('gives unit names without a suffix .service, and keeps other unit types', () => {
      const b = valid('    - service: nginx\n      ensure: running\n    - service: php8.2-fpm\n      enabled: true\n    - service: docker.socket\n      ensure: running\n    - service: getty@tty1.service\n      ensure: running\n');
      assert.deepEqual(
        b.resources.map((r) => r.id),
        ['service:nginx.service', 'service:php8.2-fpm.service', 'service:docker.socket', 'service:getty@tty1.service'],
      );
    });
  });

  describe('sources', () => {
    let dir: string;
    before(() => {
      dir = join(tmp, 'sources');
      mkdirSync(join(dir, 'files'), { recursive: true });
      writeFileSync(join(dir, 'files/app.conf'), 'port = 1\n');
      writeFileSync(join(dir, 'b.yaml'), `${HEAD}    - file: /etc/app.conf\n      source: files/app.conf\n    - file: /etc/app2.conf\n      source: files/app.conf\n`);
    });

    it('resolves relative sources against the baseline file\'s folder, whatever the working directory', () => {
      assert.notEqual(process.cwd(), dir);
      const b = loadBaselineFile(join(dir, 'b.yaml'));
      assert.equal((b.resources[0]?.fields.content as Buffer).toString(), 'port = 1\n');
      assert.equal((b.resources[1]?.fields.content as Buffer).toString(), 'port = 1\n');
      assert.deepEqual(Object.keys(b.origin.sources), ['files/app.conf']);
    });

    it('changes the hash when a source changes, not otherwise', () => {
      const first = loadBaselineFile(join(dir, 'b.yaml')).origin.sha256;
      assert.equal(loadBaselineFile(join(dir, 'b.yaml')).origin.sha256, first);
      writeFileSync(join(dir, 'files/app.conf'), 'port = 2\n');
      try {
        assert.notEqual(loadBaselineFile(join(dir, 'b.yaml')).origin.sha256, first);
      } finally {
        writeFileSync(join(dir, 'files/app.conf'), 'port = 1\n');
      }
    });

    it('reads sources from readSource once each, as the controller and the cache do', () => {
      const asked: string[] = [];
      const b = valid('    - file: /a\n      source: s/x\n    - file: /b\n      source: s/x\n', {
        readSource: (rel) => {
          asked.push(rel);
          return Buffer.from([0, 1, 2, 255]);
        },
      });
      assert.deepEqual(asked, ['s/x']);
      assert.deepEqual(b.origin.sources, { 's/x': 'AAEC/w==' });
      assert.ok((b.resources[1]?.fields.content as Buffer).equals(Buffer.from([0, 1, 2, 255])));
    });

    it('reports a source it cannot get, with readSource failing or absent', () => {
      const failing = oneIssue(`${HEAD}    - file: /a\n      source: s/x\n`, {
        readSource: () => {
          throw new Error('not sent');
        },
      });
      assert.deepEqual([failing.code, failing.at], ['HS_BASELINE_SOURCE', '8:15']);
      assert.match(failing.message, /s\/x.*not sent/);
      const absent = oneIssue(`${HEAD}    - file: /a\n      source: s/x\n`);
      assert.deepEqual([absent.code, absent.at], ['HS_BASELINE_SOURCE', '8:15']);
    });
  });

  describe('several files', () => {
    it('loads them all', () => {
      const all = loadBaselineFiles(exampleFiles);
      assert.deepEqual(all.map((b) => b.name).sort(), ['cis-audit', 'orders-api', 'web-hardening']);
    });

    it('rejects two files with the same metadata.name, at the second', () => {
      const dir = join(tmp, 'same-name');
      mkdirSync(dir, { recursive: true });
      copyFileSync(join(EXAMPLES, 'app-config.yaml'), join(dir, 'a.yaml'));
      copyFileSync(join(EXAMPLES, 'app-config.yaml'), join(dir, 'b.yaml'));
      try {
        loadBaselineFiles([join(dir, 'a.yaml'), join(dir, 'b.yaml')]);
        assert.fail('expected an error');
      } catch (err) {
        assert.ok(err instanceof BaselineInvalidError);
        const i = err.issues[0] as HsError;
        assert.equal(err.issues.length, 1);
        assert.equal(i.code, 'HS_BASELINE_DUPLICATE');
        assert.deepEqual([i.location?.file, i.location?.line, i.location?.column, i.location?.field], [join(dir, 'b.yaml'), 6, 3, 'metadata.name']);
        assert.ok(i.message.includes(join(dir, 'a.yaml')));
      }
    });

    it('collects the problems of every file, and reports a file it cannot read', () => {
      const dir = join(tmp, 'several');
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'a.yaml'), `${HEAD}    - file: /etc/motd\n      mode: 0644\n`);
      writeFileSync(join(dir, 'b.yaml'), `${HEAD.replace('name: t', 'name: u')}    - file: relative\n`);
      try {
        loadBaselineFiles([join(dir, 'a.yaml'), join(dir, 'b.yaml'), join(dir, 'none.yaml'), ...exampleFiles]);
        assert.fail('expected an error');
      } catch (err) {
        assert.ok(err instanceof BaselineInvalidError);
        assert.deepEqual(
          err.issues.map((i) => [i.code, i.location?.file ?? null]),
          [
            ['HS_BASELINE_INVALID', join(dir, 'a.yaml')],
            ['HS_BASELINE_INVALID', join(dir, 'b.yaml')],
            ['HS_BASELINE_SOURCE', null],
          ],
        );
        assert.ok(err.issues[2]?.message.includes(join(dir, 'none.yaml')));
      }
    });
  });
});
