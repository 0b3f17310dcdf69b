// The `validate:` command runs as words without a shell: hostile file names and quoted `%s` cannot inject commands, the
// candidate is always one argument, and "cannot run" is told apart from "refused" and "too slow".
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runValidator } from '../../agent/host/validator.js';
import { HsError } from '../../lib/errors.js';
import { runAgent, tempDir, writeBaseline } from '../helpers/agent.js';

interface ApplyDoc {
  resources: { id: string; outcome: string; error?: { code: string; message: string } }[];
}

describe('validate commands run without a shell', function () {
  this.timeout(60_000);
  let t: { dir: string; cleanup: () => void };
  let root: string;
  let stateDir: string;
  beforeEach(() => {
    t = tempDir('hs-validate-');
    root = path.join(t.dir, 'etc');
    mkdirSync(root);
    stateDir = path.join(t.dir, 'state');
  });
  afterEach(() => t.cleanup());

  async function apply(target: string, validate: string, env: NodeJS.ProcessEnv = {}): Promise<ApplyDoc['resources'][number]> {
    const b = writeBaseline(t.dir, 'v', `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: v }\nspec:\n  resources:\n    - file: ${JSON.stringify(target)}\n      content: "Port 22\\n"\n      validate: ${validate}\n`);
    const res = await runAgent(['apply', '--baseline', b, '--state-dir', stateDir, '--json'], { env });
    assert.ok(res.code === 0 || res.code === 2, res.stderr);
    const r = (JSON.parse(res.stdout) as ApplyDoc).resources[0];
    assert.ok(r);
    return r;
  }

  it("a quoted '%s' next to a hostile file name injects nothing", async () => {
    // The name holds no "/": the marker's path comes from the environment once a shell expands it.
    const marker = path.join(t.dir, 'PWNED');
    const target = path.join(root, 'x $(touch $HS_MARKER)');
    const r = await apply(target, `"test -f '%s'"`, { HS_MARKER: marker });
    assert.equal(existsSync(marker), false, 'the file name was run as a command');
    assert.equal(r.outcome, 'repaired', JSON.stringify(r));
    assert.equal(readFileSync(target, 'utf8'), 'Port 22\n');
  });

  it('passes the candidate as exactly one argument, whatever its name holds, in the string and the list form', async () => {
    const argc = `/bin/sh -c 'test "$#" -eq 1 && test -f "$1" && grep -q "^Port " "$1"' sh %s`;
    for (const name of [`it's "quoted" \\ and $HOME *`, 'spaces  and\ttab', '-rf --help']) {
      const target = path.join(root, name);
      const r = await apply(target, JSON.stringify(argc));
      assert.equal(r.outcome, 'repaired', `${name}: ${JSON.stringify(r)}`);
      const listed = path.join(root, `${name}.list`);
      const l = await apply(listed, `["/bin/sh", "-c", "test \\"$#\\" -eq 1 && test -f \\"$1\\"", "sh", "%s"]`);
      assert.equal(l.outcome, 'repaired', `${name} (list form): ${JSON.stringify(l)}`);
    }
    assert.deepEqual(readdirSync(root).filter((n) => n.includes('homeostat')), [], 'no temporary file left behind');
  });

  it('a validator that cannot run is HS_VALIDATE_UNAVAILABLE, one that says no is HS_VALIDATE_REJECTED; neither installs anything', async () => {
    const target = path.join(root, 'sshd_config');
    writeFileSync(target, 'old\n');
    const missing = await apply(target, '["/nonexistent/validator", "-t", "%s"]');
    assert.equal(missing.error?.code, 'HS_VALIDATE_UNAVAILABLE', JSON.stringify(missing));
    assert.match(missing.error?.message ?? '', /not found/);
    const wrapped = await apply(target, '"env no-such-validator-hs %s"');
    assert.equal(wrapped.error?.code, 'HS_VALIDATE_UNAVAILABLE', JSON.stringify(wrapped));
    const refused = await apply(target, `"grep -q '^Port 2222' %s"`);
    assert.equal(refused.error?.code, 'HS_VALIDATE_REJECTED', JSON.stringify(refused));
    assert.equal(readFileSync(target, 'utf8'), 'old\n');
  });

  it('a validator that does not finish is stopped with everything it started, as a timeout', async () => {
    const f = path.join(t.dir, 'candidate');
    writeFileSync(f, 'x\n');
    const t0 = Date.now();
    const err = await runValidator(['/bin/sh', '-c', 'sleep 30 & wait', 'sh', '%s'], f, 'file:/x', 300).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof HsError);
    assert.equal(err.code, 'HS_HOST_TIMEOUT');
    assert.ok(Date.now() - t0 < 10_000, 'the grandchild holding the pipes was stopped too');
  });
});
