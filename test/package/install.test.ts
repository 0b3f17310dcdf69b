// install.sh: shellcheck-clean with the other packaging scripts, and a real install into an image root that is idempotent, readable by the agent, and uninstalls as asked.
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AGENT_BIN, REPO, cleanEnv, sh } from './artifacts.js';

const INSTALL = path.join(REPO, 'packaging/install.sh');

/** Whether a path exists as itself: enable links point at /etc/... of the image, which does not exist here. */
function present(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

describe('package: install.sh', function () {
  this.timeout(120_000);
  let root: string;
  before(() => {
    root = mkdtempSync(path.join(tmpdir(), 'hs-pkg-install-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const install = (args: string[]): ReturnType<typeof sh> => sh(INSTALL, ['--root', root, ...args], { env: cleanEnv() });

  it('passes shellcheck, as do the build and maintainer scripts', async () => {
    const scripts = ['install.sh', 'build.sh', 'debian/build-deb.sh', 'debian/postinst', 'debian/prerm', 'debian/postrm'].map((s) => path.join(REPO, 'packaging', s));
    const r = await sh('shellcheck', ['--severity=style', ...scripts]);
    assert.equal(r.code, 0, r.stdout);
  });

  it('refuses to run without a controller and a token, and rejects malformed labels', async () => {
    const none = await install([]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /--controller URL is required/);
    const bad = await install(['--controller', 'wss://c:7400', '--token', 't', '--labels', 'role', '--package', AGENT_BIN]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--labels takes k=v/);
    assert.equal(existsSync(path.join(root, 'etc/homeostat')), false, 'nothing written');
  });

  it('installs the executable, its unit (enabled) and a config the agent accepts; a second run changes nothing', async () => {
    const args = ['--package', AGENT_BIN, '--controller', 'wss://controller.example:7400', '--token', "tok'en", '--labels', 'role=web,env=prod'];
    const first = await install(args);
    assert.equal(first.code, 0, first.stderr);
    const bin = path.join(root, 'usr/local/bin/homeostat-agent');
    const unit = path.join(root, 'etc/systemd/system/homeostat-agent.service');
    const config = path.join(root, 'etc/homeostat/agent.yaml');
    assert.equal(statSync(bin).mode & 0o777, 0o755);
    assert.match(readFileSync(unit, 'utf8'), /^ExecStart=\/usr\/local\/bin\/homeostat-agent run /m);
    assert.ok(present(path.join(root, 'etc/systemd/system/multi-user.target.wants/homeostat-agent.service')), 'enabled');
    assert.equal(statSync(config).mode & 0o777, 0o600, 'the token is not world-readable');

    // The agent itself reads the file (it rejects unknown or mistyped settings with HS_CONFIG).
    const baseline = path.join(root, 'b.yaml');
    writeFileSync(baseline, `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: cfg\nspec:\n  resources:\n    - file: ${root}/motd\n      content: "x\\n"\n`);
    const agentEnv = cleanEnv({ HOMEOSTAT_CACHE_DIR: path.join(root, 'cache') });
    const check = await sh(bin, ['check', '--config', config, '--baseline', baseline, '--state-dir', path.join(root, 'state')], { env: agentEnv });
    assert.equal(check.code, 2, check.stderr);
    writeFileSync(path.join(root, 'bad.yaml'), 'controler: x\n');
    const bad = await sh(bin, ['check', '--config', path.join(root, 'bad.yaml'), '--baseline', baseline, '--state-dir', path.join(root, 'state')], { env: agentEnv });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /unknown setting 'controler'/);

    const mtimes = [bin, unit, config].map((f) => statSync(f).mtimeMs);
    const again = await install(args);
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /installed|wrote/, 'nothing to do the second time');
    assert.deepEqual([bin, unit, config].map((f) => statSync(f).mtimeMs), mtimes);

    const relabel = await install([...args.slice(0, -1), 'role=db']);
    assert.match(relabel.stderr, /wrote \/etc\/homeostat\/agent\.yaml/);
    assert.match(readFileSync(config, 'utf8'), /labels: 'role=db'/);
  });

  it('--uninstall keeps state and config; --uninstall --purge removes them', async () => {
    mkdirSync(path.join(root, 'var/lib/homeostat'), { recursive: true });
    writeFileSync(path.join(root, 'var/lib/homeostat/agent.db'), 'state');
    const keep = await install(['--uninstall']);
    assert.equal(keep.code, 0, keep.stderr);
    assert.equal(existsSync(path.join(root, 'usr/local/bin/homeostat-agent')), false);
    assert.equal(present(path.join(root, 'etc/systemd/system/multi-user.target.wants/homeostat-agent.service')), false);
    assert.ok(existsSync(path.join(root, 'var/lib/homeostat/agent.db')));
    assert.ok(existsSync(path.join(root, 'etc/homeostat/agent.yaml')));
    const purge = await install(['--uninstall', '--purge']);
    assert.equal(purge.code, 0, purge.stderr);
    assert.equal(existsSync(path.join(root, 'var/lib/homeostat')), false);
    assert.equal(existsSync(path.join(root, 'etc/homeostat')), false);
  });
});
