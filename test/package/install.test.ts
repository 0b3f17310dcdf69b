// install.sh: shellcheck-clean with the other packaging scripts, and a real install into an image root: checked before anything is written, with a controller or standalone, idempotent, keeping what it does not manage, readable by the agent, and uninstalling as asked.
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
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

  it('refuses to run with nothing to enforce, a controller without a token, or malformed labels', async () => {
    const none = await install(['--package', AGENT_BIN]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /nothing to enforce: give --controller URL --token TOKEN, or --baseline FILE/);
    const half = await install(['--controller', 'wss://c:7400', '--package', AGENT_BIN]);
    assert.equal(half.code, 1);
    assert.match(half.stderr, /--controller needs --token/);
    const bad = await install(['--controller', 'wss://c:7400', '--token', 't', '--labels', 'role', '--package', AGENT_BIN]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--labels takes k=v/);
    assert.equal(existsSync(path.join(root, 'etc/homeostat')), false, 'nothing written');
  });

  it('installs nothing when the bare executable has no unit beside the script (no half install)', async () => {
    const alone = mkdtempSync(path.join(tmpdir(), 'hs-pkg-alone-'));
    try {
      copyFileSync(INSTALL, path.join(alone, 'install.sh'));
      const r = await sh('sh', [path.join(alone, 'install.sh'), '--root', root, '--package', AGENT_BIN, '--controller', 'wss://c:7400', '--token', 't'], { env: cleanEnv() });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no homeostat-agent\.service beside/);
      assert.equal(present(path.join(root, 'usr/local/bin/homeostat-agent')), false, 'the executable was not copied');
      assert.equal(existsSync(path.join(root, 'etc/homeostat')), false, 'no config written');
    } finally {
      rmSync(alone, { recursive: true, force: true });
    }
  });

  it('refuses a baseline that does not validate, before writing anything', async () => {
    const file = path.join(root, 'broken.yaml');
    writeFileSync(file, 'apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: broken\nspec:\n  resources:\n    - file: /etc/x\n      mode: 644\n');
    const r = await install(['--package', AGENT_BIN, '--baseline', '/broken.yaml']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /broken\.yaml:8:13: .*mode/);
    assert.match(r.stderr, /is not a valid baseline \(above\); nothing was changed/);
    assert.equal(existsSync(path.join(root, 'etc/homeostat')), false);
    assert.equal(present(path.join(root, 'usr/local/bin/homeostat-agent')), false);
    rmSync(file);
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

  it('installs standalone with --baseline (no controller); running it again keeps the baselines and every line it does not manage', async () => {
    mkdirSync(path.join(root, 'etc/homeostat/baselines'), { recursive: true });
    writeFileSync(path.join(root, 'etc/homeostat/baselines/local.yaml'), 'apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: local\nspec:\n  resources:\n    - file: /etc/motd\n      content: "local\\n"\n');
    const config = path.join(root, 'etc/homeostat/agent.yaml');
    const standalone = await install(['--package', AGENT_BIN, '--no-controller', '--labels', '', '--baseline', '/etc/homeostat/baselines/local.yaml']);
    assert.equal(standalone.code, 0, standalone.stderr);
    let text = readFileSync(config, 'utf8');
    assert.match(text, /^baselines: \['\/etc\/homeostat\/baselines\/local\.yaml'\]$/m);
    assert.doesNotMatch(text, /^(controller|token|labels):/m);

    // An admin's own settings, then runs that change other things.
    writeFileSync(config, `${text}logLevel: debug\nmetricsListen: 127.0.0.1:9464\n`);
    const labelled = await install(['--package', AGENT_BIN, '--labels', 'role=edge']);
    assert.equal(labelled.code, 0, labelled.stderr);
    const managed = await install(['--package', AGENT_BIN, '--controller', 'wss://controller.example:7400', '--token', 'tok']);
    assert.equal(managed.code, 0, managed.stderr);
    text = readFileSync(config, 'utf8');
    assert.match(text, /^baselines: \['\/etc\/homeostat\/baselines\/local\.yaml'\]$/m, 'baselines kept');
    assert.match(text, /^logLevel: debug$/m);
    assert.match(text, /^metricsListen: 127\.0\.0\.1:9464$/m);
    assert.match(text, /^labels: 'role=edge'$/m);
    assert.match(text, /^controller: 'wss:\/\/controller\.example:7400'$/m);
    assert.equal(text.match(/^(baselines|labels|controller|token|logLevel):/gm)?.length, 5, `each setting once:\n${text}`);

    // The agent reads what was written, baselines and all (its paths are the image's, so it is pointed at a copy here).
    const copy = path.join(root, 'agent-copy.yaml');
    writeFileSync(copy, text.replace('/etc/homeostat/baselines/local.yaml', path.join(root, 'etc/homeostat/baselines/local.yaml')).replace(/^metricsListen:.*\n/m, ''));
    const check = await sh(path.join(root, 'usr/local/bin/homeostat-agent'), ['check', '--json', '--config', copy, '--state-dir', path.join(root, 'state2')], {
      env: cleanEnv({ HOMEOSTAT_CACHE_DIR: path.join(root, 'cache') }),
    });
    assert.ok(check.code === 0 || check.code === 2, check.stderr);
    assert.match(check.stdout, /file:\/etc\/motd/);

    const alone = await install(['--package', AGENT_BIN, '--no-controller', '--baseline', '/etc/homeostat/baselines/local.yaml']);
    assert.equal(alone.code, 0, alone.stderr);
    assert.doesNotMatch(readFileSync(config, 'utf8'), /^(controller|token):/m);
    const nothing = await install(['--package', AGENT_BIN, '--no-controller']);
    assert.equal(nothing.code, 0, 'baselines are still configured');
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
