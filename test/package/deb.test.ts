// The Debian package: its metadata and files, and a real install, upgrade and purge with dpkg into a scratch root.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AGENT_BIN, DEB, VERSION, VERSION_LINE, cleanEnv, sh } from './artifacts.js';

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

/** An empty root with a dpkg database, for `dpkg --root`. */
function scratchRoot(): string {
  const root = mkdtempSync(path.join(tmpdir(), 'hs-pkg-root-'));
  for (const d of ['var/lib/dpkg/info', 'var/lib/dpkg/updates', 'etc/systemd/system']) mkdirSync(path.join(root, d), { recursive: true });
  writeFileSync(path.join(root, 'var/lib/dpkg/status'), '');
  return root;
}

/** dpkg into ROOT; its maintainer scripts run here with DPKG_ROOT set, as when building an image. */
function dpkg(root: string, args: string[]): ReturnType<typeof sh> {
  return sh('dpkg', [`--root=${root}`, '--force-script-chrootless', '--force-depends', '--force-confold', ...args], {
    env: cleanEnv({ DEBIAN_FRONTEND: 'noninteractive' }),
  });
}

describe('package: the Debian package', function () {
  this.timeout(180_000);
  const roots: string[] = [];
  after(() => {
    for (const r of roots) rmSync(r, { recursive: true, force: true });
  });

  it('is homeostat-agent VERSION amd64 and declares its libraries and its conffile', async () => {
    const field = async (f: string): Promise<string> => (await sh('dpkg-deb', ['-f', DEB, f])).stdout.trim();
    assert.equal(await field('Package'), 'homeostat-agent');
    assert.equal(await field('Version'), VERSION);
    assert.equal(await field('Architecture'), 'amd64');
    assert.match(await field('Depends'), /libc6 \(>= 2\.\d+\)/);
    const conffiles = await sh('dpkg-deb', ['-I', DEB, 'conffiles']);
    assert.equal(conffiles.stdout.trim(), '/etc/homeostat/agent.yaml');
  });

  it('unpacks (dpkg-deb -x) to the executable, the unit and the default config', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'hs-pkg-x-'));
    roots.push(root);
    const r = await sh('dpkg-deb', ['-x', DEB, root]);
    assert.equal(r.code, 0, r.stderr);
    const bin = path.join(root, 'usr/bin/homeostat-agent');
    assert.equal(statSync(bin).mode & 0o777, 0o755);
    assert.equal(sha256(bin), sha256(AGENT_BIN), 'the packaged executable is the built one');
    assert.match(readFileSync(path.join(root, 'lib/systemd/system/homeostat-agent.service'), 'utf8'), /^ExecStart=\/usr\/bin\/homeostat-agent run/m);
    assert.equal(statSync(path.join(root, 'etc/homeostat/agent.yaml')).mode & 0o777, 0o600);
    const v = await sh(bin, ['--version'], { env: cleanEnv({ HOMEOSTAT_CACHE_DIR: path.join(root, 'cache') }) });
    assert.equal(v.stdout.trim(), VERSION_LINE);
  });

  it('keeps an agent.yaml written before its first install (install.sh writes it first, so the agent starts once, with it)', async () => {
    const root = scratchRoot();
    roots.push(root);
    const config = path.join(root, 'etc/homeostat/agent.yaml');
    mkdirSync(path.dirname(config), { recursive: true });
    writeFileSync(config, "controller: 'wss://c.example:7400'\ntoken: 'first'\n", { mode: 0o600 });
    const install = await dpkg(root, ['-i', DEB]);
    assert.equal(install.code, 0, install.stderr);
    assert.equal(readFileSync(config, 'utf8'), "controller: 'wss://c.example:7400'\ntoken: 'first'\n");
    assert.equal(statSync(config).mode & 0o777, 0o600);
  });

  it('installs with dpkg --root (unit enabled), upgrades keeping a changed config and the state, and purges everything', async () => {
    const root = scratchRoot();
    roots.push(root);
    const install = await dpkg(root, ['-i', DEB]);
    assert.equal(install.code, 0, install.stderr);
    const status = await sh('dpkg', [`--root=${root}`, '-s', 'homeostat-agent']);
    assert.match(status.stdout, /^Status: install ok installed$/m);
    const wants = path.join(root, 'etc/systemd/system/multi-user.target.wants/homeostat-agent.service');
    assert.ok(lstatSync(wants).isSymbolicLink(), 'postinst enabled the unit inside the root');
    assert.match(readlinkSync(wants), /homeostat-agent\.service$/);

    // An operator's settings and the agent's state, then the same package again (an upgrade in dpkg's eyes).
    const config = path.join(root, 'etc/homeostat/agent.yaml');
    writeFileSync(config, "controller: 'wss://c.example:7400'\ntoken: 't'\n");
    mkdirSync(path.join(root, 'var/lib/homeostat'), { recursive: true });
    writeFileSync(path.join(root, 'var/lib/homeostat/agent.db'), 'state');
    const upgrade = await dpkg(root, ['-i', DEB]);
    assert.equal(upgrade.code, 0, upgrade.stderr);
    assert.match(readFileSync(config, 'utf8'), /wss:\/\/c\.example/);
    assert.equal(readFileSync(path.join(root, 'var/lib/homeostat/agent.db'), 'utf8'), 'state');

    const remove = await dpkg(root, ['--remove', 'homeostat-agent']);
    assert.equal(remove.code, 0, remove.stderr);
    assert.equal(existsSync(path.join(root, 'usr/bin/homeostat-agent')), false);
    assert.ok(existsSync(config), 'remove keeps the config');
    assert.ok(existsSync(path.join(root, 'var/lib/homeostat/agent.db')), 'remove keeps the state');

    const purge = await dpkg(root, ['--purge', 'homeostat-agent']);
    assert.equal(purge.code, 0, purge.stderr);
    assert.equal(existsSync(config), false);
    assert.equal(existsSync(path.join(root, 'var/lib/homeostat')), false);
    assert.throws(() => lstatSync(wants), /ENOENT/);
  });
});
