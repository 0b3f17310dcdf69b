// What an untrusted baseline cannot make the machine that loads or pushes it do: read files outside its folder (absolute,
// `..`, symlinks on the way), reach inherited object properties through `source:` names or YAML keys, or hide shell
// syntax in `validate:`. Every refusal is located (file:line:column and field).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createControllerCore, type ControllerCore } from '../../controller/core.js';
import { BaselineInvalidError } from '../../lib/errors.js';
import { loadBaselineFile, parseBaseline, type Baseline } from '../../lib/baseline/index.js';
import { splitCommand } from '../../lib/baseline/command.js';
import { MAX_SOURCE_BYTES, sourcesFromMap } from '../../lib/baseline/sources.js';

const HEAD = 'apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: t\nspec:\n  resources:\n';
const CTL = fileURLToPath(new URL('../../controller/ctl/main.js', import.meta.url));

interface Found {
  code: string;
  at: string;
  field: string | undefined;
  message: string;
}

function issues(run: () => unknown): Found[] {
  try {
    run();
  } catch (err) {
    assert.ok(err instanceof BaselineInvalidError, `expected BaselineInvalidError, got ${String(err)}`);
    return err.issues.map((i) => ({ code: i.code, at: `${i.location?.line}:${i.location?.column}`, field: i.location?.field, message: i.message }));
  }
  assert.fail('expected the baseline to be rejected');
}

describe('baseline input from elsewhere', () => {
  let dir: string;
  let folder: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'hs-baseline-sec-'));
    folder = join(dir, 'repo');
    mkdirSync(join(folder, 'files'), { recursive: true });
    writeFileSync(join(folder, 'files/ok.conf'), 'ok\n');
    writeFileSync(join(dir, 'admin.token'), 'operator-secret-token\n');
    symlinkSync(join(dir, 'admin.token'), join(folder, 'files/token-link'));
    symlinkSync(dir, join(folder, 'up'));
    symlinkSync('ok.conf', join(folder, 'files/inner-link'));
    execFileSync('mkfifo', [join(folder, 'files/fifo')]);
    writeFileSync(join(folder, 'files/huge'), '');
    truncateSync(join(folder, 'files/huge'), MAX_SOURCE_BYTES + 1);
    for (const name of ['__proto__', 'toString', 'constructor', 'hasOwnProperty']) writeFileSync(join(folder, name), `file named ${name}\n`);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function load(source: string): Baseline {
    const file = join(folder, 'b.yaml');
    writeFileSync(file, `${HEAD}    - file: /etc/app.conf\n      source: ${JSON.stringify(source)}\n`);
    return loadBaselineFile(file);
  }

  describe('source: stays inside the baseline folder', () => {
    for (const [source, words] of [
      ['ABSOLUTE/admin.token', /is absolute/],
      ['/etc/shadow', /is absolute/],
      ['../admin.token', /leaves the baseline's folder/],
      ['files/../../admin.token', /leaves the baseline's folder/],
      ['./files/ok.conf', /not normalised.*write files\/ok\.conf/],
      ['files//ok.conf', /not normalised/],
    ] as const) {
      it(`refuses ${source}, at the value, before reading anything`, () => {
        const [found] = issues(() => load(source.replace('ABSOLUTE', dir)));
        assert.deepEqual([found?.code, found?.at, found?.field], ['HS_BASELINE_INVALID', '8:15', 'spec.resources[0].source']);
        assert.match(found?.message ?? '', words);
      });
    }

    for (const [source, words] of [
      ['files/token-link', /files\/token-link is a symlink; sources are read without following symlinks/],
      ['up/admin.token', /up is a symlink/],
      ['files/inner-link', /is a symlink/],
      ['files/fifo', /not a regular file/],
      ['files/huge', /a source may hold at most 16777216/],
      ['files', /is a directory/],
    ] as const) {
      it(`refuses ${source} when reading it, naming the path`, () => {
        const [found] = issues(() => load(source));
        assert.deepEqual([found?.code, found?.at], ['HS_BASELINE_SOURCE', '8:15']);
        assert.match(found?.message ?? '', words);
        assert.ok(!found?.message.includes('operator-secret-token'));
      });
    }

    it('reads a normal source and names files like __proto__ or toString as ordinary files', () => {
      assert.equal((load('files/ok.conf').resources[0]?.fields.content as Buffer).toString(), 'ok\n');
      for (const name of ['__proto__', 'toString', 'constructor', 'hasOwnProperty']) {
        const b = load(name);
        assert.equal((b.resources[0]?.fields.content as Buffer).toString(), `file named ${name}\n`);
        assert.ok(Object.hasOwn(b.origin.sources, name), `${name} is an own entry of origin.sources`);
        assert.equal(Object.getPrototypeOf(b.origin.sources), Object.prototype);
        // The same document read back from the sent files (controller, signed document, cache) is the same version.
        const again = parseBaseline(b.origin.text, { file: 'sent.yaml', readSource: sourcesFromMap(b.origin.sources, (rel) => `${rel} missing`) });
        assert.equal(again.origin.sha256, b.origin.sha256);
      }
    });

    it('a source map only answers its own entries', () => {
      const found = issues(() => parseBaseline(`${HEAD}    - file: /etc/a\n      source: toString\n    - file: /etc/b\n      source: __proto__\n`, { file: 'b.yaml', readSource: sourcesFromMap({}, (rel) => `source file ${rel} was not sent`) }));
      assert.deepEqual(found.map((f) => [f.code, f.at]), [['HS_BASELINE_SOURCE', '8:15'], ['HS_BASELINE_SOURCE', '10:15']]);
      // A reader that looks names up in a plain object gets inherited values back: those are refused too, not crashed on.
      const plain: Record<string, Uint8Array> = {};
      const loose = issues(() => parseBaseline(`${HEAD}    - file: /etc/a\n      source: toString\n`, { file: 'b.yaml', readSource: (rel) => plain[rel] as Uint8Array }));
      assert.deepEqual(loose.map((f) => f.code), ['HS_BASELINE_SOURCE']);
    });

    it('homeostatctl baseline push refuses an escaping source before contacting the controller', () => {
      const file = join(folder, 'push.yaml');
      writeFileSync(file, `${HEAD}    - file: /etc/app.conf\n      source: ../admin.token\n`);
      const r = spawnSync(process.execPath, [CTL, '--server', 'http://127.0.0.1:9', '--token', 'x', 'baseline', 'push', file]);
      assert.equal(r.status, 1);
      assert.match(r.stderr.toString(), /push\.yaml:8:15: source "\.\.\/admin\.token" leaves the baseline's folder/);
      assert.doesNotMatch(r.stderr.toString(), /ECONNREFUSED|connect/);
    });
  });

  describe('YAML keys are data', () => {
    for (const reader of ['quick', 'full'] as const) {
      it(`keeps constructor, toString and hasOwnProperty as label keys and values (${reader} reader)`, () => {
        const labels = reader === 'quick' ? '  labels:\n    constructor: a\n    toString: b\n' : '  labels: { constructor: a, toString: b }\n';
        const text = `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: t\n${labels}spec:\n  selector:\n    matchLabels:\n      hasOwnProperty: c\n  resources: []\n`;
        const b = parseBaseline(text, { file: 'b.yaml' });
        assert.deepEqual(Object.entries(b.labels ?? {}), [['constructor', 'a'], ['toString', 'b']]);
        assert.deepEqual(Object.entries(b.selector?.matchLabels ?? {}), [['hasOwnProperty', 'c']]);
      });
    }

    it('reports __proto__ and inherited names as unknown keys where they are not allowed, at the key', () => {
      const found = issues(() => parseBaseline(`${HEAD}    - file: /etc/a\n      __proto__: { content: x }\n      constructor: 1\n    - toString: /etc/b\n`, { file: 'b.yaml' }));
      assert.deepEqual(found.map((f) => [f.code, f.at, f.field]), [
        ['HS_BASELINE_UNKNOWN_KEY', '8:7', 'spec.resources[0].__proto__'],
        ['HS_BASELINE_UNKNOWN_KEY', '9:7', 'spec.resources[0].constructor'],
        ['HS_RESOURCE_UNKNOWN_TYPE', '10:7', 'spec.resources[1].toString'],
      ]);
    });
  });

  describe('validate: is words, never a shell line', () => {
    it('splits the string form: quotes group, backslash escapes, nothing else is special', () => {
      assert.deepEqual(splitCommand(`sshd -t -f %s`), { words: ['sshd', '-t', '-f', '%s'] });
      assert.deepEqual(splitCommand(`test -f '%s'`), { words: ['test', '-f', '%s'] });
      assert.deepEqual(splitCommand(`grep -q "^Port \\"22\\"" %s`), { words: ['grep', '-q', '^Port "22"', '%s'] });
      assert.deepEqual(splitCommand(`a\\ b  'c d'"e"   --x=%s`), { words: ['a b', 'c de', '--x=%s'] });
      assert.deepEqual(splitCommand(`sh -c 'x && y; $(z)' sh %s`), { words: ['sh', '-c', 'x && y; $(z)', 'sh', '%s'] });
      assert.deepEqual(splitCommand(`grep -q 'x$' *.conf 50% %s`), { words: ['grep', '-q', 'x$', '*.conf', '50%', '%s'] });
    });

    it('refuses unquoted shell syntax and unclosed quotes, at the value', () => {
      for (const [cmd, words] of [
        ['sshd -t -f %s && systemctl reload sshd', /without a shell, so the unquoted "&" at character 15/],
        ['nginx -t -c %s | grep ok', /the unquoted "\|"/],
        ['test -f %s; reboot', /the unquoted ";"/],
        ['check $(cat %s)', /the unquoted "\$"/],
        ['check --home $HOME %s', /no variable is expanded/],
        ['check %s > /dev/null', /the unquoted ">"/],
        ["test -f '%s", /never closed/],
      ] as const) {
        const [found] = issues(() => parseBaseline(`${HEAD}    - file: /etc/a\n      content: x\n      validate: ${JSON.stringify(cmd)}\n`, { file: 'b.yaml' }));
        assert.deepEqual([found?.code, found?.at, found?.field], ['HS_BASELINE_INVALID', '9:17', 'spec.resources[0].validate'], cmd);
        assert.match(found?.message ?? '', words);
      }
    });

    it('takes the list form as written, and needs %s in one of its words', () => {
      const b = parseBaseline(`${HEAD}    - file: /etc/a\n      content: x\n      validate: [sshd, -t, -f, "%s"]\n    - file: /etc/b\n      content: x\n      validate: "visudo -c -f '%s'"\n`, { file: 'b.yaml' });
      assert.deepEqual(b.resources[0]?.fields.validate, ['sshd', '-t', '-f', '%s']);
      assert.deepEqual(b.resources[1]?.fields.validate, ['visudo', '-c', '-f', '%s']);
      const found = issues(() => parseBaseline(`${HEAD}    - file: /etc/a\n      content: x\n      validate: [sshd, -t]\n    - file: /etc/b\n      content: x\n      validate: [1, "%s"]\n    - file: /etc/c\n      content: x\n      validate: []\n`, { file: 'b.yaml' }));
      assert.deepEqual(found.map((f) => [f.at, f.field]), [['9:17', 'spec.resources[0].validate'], ['12:18', 'spec.resources[1].validate[0]'], ['15:17', 'spec.resources[2].validate']]);
      assert.match(found[0]?.message ?? '', /must contain %s/);
    });
  });

  describe('bounded whatever the document', () => {
    it('refuses nesting thousands of levels deep with a located issue, not a stack overflow', () => {
      for (const depth of [100, 20_000]) {
        const [found] = issues(() => parseBaseline(`${HEAD.replace('spec:\n  resources:\n', '')}  labels: ${'['.repeat(depth)}${']'.repeat(depth)}\nspec:\n  resources: []\n`, { file: 'b.yaml' }));
        assert.deepEqual([found?.code, found?.at], ['HS_BASELINE_PARSE', '1:1'], `depth ${depth}`);
        assert.match(found?.message ?? '', /nest/);
      }
    });

    it('quotes at most a clip of a megabyte value or key in its messages', () => {
      const big = 'x'.repeat(1024 * 1024);
      const found = issues(() => parseBaseline(`${HEAD}    - file: /etc/a\n      mode: "${big}"\n    - file: /etc/b\n      ${'y'.repeat(900)}: 1\n`, { file: 'b.yaml' }));
      assert.equal(found.length, 2);
      for (const f of found) assert.ok(f.message.length < 1200, `a message of ${f.message.length} characters`);
      assert.match(found[0]?.message ?? '', /characters left out/);
    });

    it('refuses a baseline larger than 64 MiB before parsing it', () => {
      const [found] = issues(() => parseBaseline(`${HEAD}#${' '.repeat(64 * 1024 * 1024)}\n`, { file: 'b.yaml' }));
      assert.deepEqual([found?.code, found?.at], ['HS_BASELINE_PARSE', '1:1']);
    });
  });

  describe('the controller takes pushed sources as data', () => {
    let core: ControllerCore;
    let data: string;
    const ADMIN = 'test-admin-token';
    const push = (body: string) => core.app.inject({ method: 'POST', url: '/api/v1/baselines', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body });
    beforeEach(async () => {
      data = mkdtempSync(join(tmpdir(), 'hs-ctl-sec-'));
      core = await createControllerCore({ dataDir: data, adminToken: ADMIN, fingerprint: 'FP' });
    });
    afterEach(async () => {
      await core.close();
      rmSync(data, { recursive: true, force: true });
    });

    it('answers a source named toString or __proto__ that was not sent with 422, not 500', async () => {
      for (const name of ['toString', '__proto__', 'constructor']) {
        const res = await push(JSON.stringify({ yaml: `${HEAD.replace('name: t', `name: s${name.length}`)}    - file: /etc/x\n      source: ${name}\n` }));
        assert.equal(res.status, 422, `${name}: ${res.text()}`);
        assert.match(res.text(), new RegExp(`source file ${name} was not sent`));
      }
    });

    it('stores a source named __proto__ as an entry whose bytes match the version hash', async () => {
      const yaml = `${HEAD}    - file: /etc/x\n      source: __proto__\n`;
      // Written as JSON text: a JS object literal would turn the key into a prototype before it is even sent.
      const res = await push(`{"yaml": ${JSON.stringify(yaml)}, "sources": {"__proto__": "${Buffer.from('bytes\n').toString('base64')}"}}`);
      assert.equal(res.status, 201, res.text());
      const v = (await core.app.inject({ method: 'GET', url: '/api/v1/baselines/t/versions/1', headers: { authorization: `Bearer ${ADMIN}` } })).json<{ sha256: string; sources: Record<string, string> }>();
      assert.ok(Object.hasOwn(v.sources, '__proto__'), JSON.stringify(v));
      const again = parseBaseline(yaml, { file: 'b.yaml', readSource: sourcesFromMap(v.sources, (rel) => rel) });
      assert.equal(again.origin.sha256, v.sha256);
    });

    it('refuses sources sent along that the baseline does not read, or that escape its folder', async () => {
      const yaml = `${HEAD}    - file: /etc/x\n      content: x\n`;
      const res = await push(JSON.stringify({ yaml, sources: { '../../etc/passwd': 'eA==', 'extra.conf': 'eA==' } }));
      assert.equal(res.status, 422, res.text());
      assert.match(res.text(), /\.\.\/\.\.\/etc\/passwd.*leaves the baseline's folder/);
      assert.match(res.text(), /extra\.conf.*no resource of the baseline uses it/);
    });
  });
});
