// The built artifacts: both single executables run, report the product version, need the glibc they claim, and run on Debian 11.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, existsSync, cpSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AGENT_BIN, BUILD, BULLSEYE_ROOT, CONTROLLER_BIN, DEB, OUT, PINNED_NODE, REPO, RUNTIME_BIN, SQLITE_VERSION, VERSION_LINE, buildInfo, cleanEnv, glibcFloor, sh, versionAtMost } from './artifacts.js';

describe('package: artifacts', function () {
  this.timeout(120_000);

  it('writes both executables, the .deb, install.sh and the units beside them, and their checksums', () => {
    for (const f of [AGENT_BIN, CONTROLLER_BIN]) {
      const st = statSync(f);
      assert.ok(st.isFile() && (st.mode & 0o111) === 0o111, `${f} is an executable file`);
      assert.ok(st.size > 50e6, `${f} holds a runtime (${st.size} bytes)`);
    }
    assert.ok(statSync(DEB).size > 10e6);
    // A host without dpkg is installed from this folder alone: install.sh finds the executable and the unit next to it.
    const shipped = ['install.sh', 'systemd/homeostat-agent.service', 'systemd/homeostat-controller.service'];
    for (const f of shipped) assert.equal(readFileSync(path.join(OUT, path.basename(f)), 'utf8'), readFileSync(path.join(REPO, 'packaging', f), 'utf8'), f);
    assert.equal(statSync(path.join(OUT, 'install.sh')).mode & 0o777, 0o755);
    const sums = readFileSync(path.join(OUT, 'SHA256SUMS'), 'utf8');
    for (const f of [AGENT_BIN, CONTROLLER_BIN, DEB, ...shipped.map((s) => path.join(OUT, path.basename(s)))]) {
      const digest = createHash('sha256').update(readFileSync(f)).digest('hex');
      assert.ok(sums.includes(`${digest}  ${path.basename(f)}`), `SHA256SUMS lists ${path.basename(f)}`);
    }
  });

  it('embeds the runtime the tests run on: the pinned Node.js from node_modules, and the repo\'s better-sqlite3', () => {
    const info = buildInfo();
    assert.equal(info.node, process.version, 'the runtime of `npm test` is the runtime shipped');
    assert.equal(info.node, `v${PINNED_NODE}`);
    assert.equal(info.node_abi, process.versions.modules);
    assert.equal(info.better_sqlite3, SQLITE_VERSION);
  });

  it('both executables print the product version with their runtime, and the controller is homeostatctl by name or by `ctl`', async () => {
    for (const bin of [AGENT_BIN, CONTROLLER_BIN]) {
      const r = await sh(bin, ['--version'], { env: cleanEnv() });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), VERSION_LINE);
    }
    const dir = mkdtempSync(path.join(tmpdir(), 'hs-pkg-ctl-'));
    try {
      const link = path.join(dir, 'homeostatctl');
      symlinkSync(CONTROLLER_BIN, link);
      for (const [cmd, args] of [[link, ['--help']], [CONTROLLER_BIN, ['ctl', '--help']]] as const) {
        const r = await sh(cmd, [...args], { env: cleanEnv() });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /Usage: homeostatctl/);
      }
      const r = await sh(CONTROLLER_BIN, ['--help'], { env: cleanEnv() });
      assert.match(r.stdout, /Usage: homeostat-controller/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('needs the glibc that BUILDINFO and the .deb state, at most 2.31 when the addon is built in the Debian 11 root', async () => {
    const info = buildInfo();
    const addonFloor = await glibcFloor(path.join(BUILD, 'sea/better_sqlite3.node'));
    const nodeFloor = await glibcFloor(RUNTIME_BIN);
    const floor = versionAtMost(addonFloor, nodeFloor) ? nodeFloor : addonFloor;
    assert.equal(info.addon_glibc, addonFloor);
    assert.equal(info.node_glibc, nodeFloor);
    assert.equal(info.glibc_floor, floor);
    if (info.addon_root === 'bullseye') assert.ok(versionAtMost(floor, '2.31'), `glibc floor ${floor} runs on Debian 11`);
    const depends = (await sh('dpkg-deb', ['-f', DEB, 'Depends'])).stdout;
    assert.ok(depends.includes(`libc6 (>= ${floor})`), depends);
  });

  it('runs --version and a check with its SQLite cache in a Debian 11 root (glibc 2.31)', async function () {
    if (buildInfo().addon_root !== 'bullseye' || !existsSync(path.join(BULLSEYE_ROOT, 'usr/bin/ldd'))) this.skip();
    const ldd = await sh('chroot', [BULLSEYE_ROOT, 'ldd', '--version']);
    assert.match(ldd.stdout, /2\.31/);
    const jail = mkdtempSync(path.join(BULLSEYE_ROOT, 'opt/hs-pkg-'));
    const inside = `/opt/${path.basename(jail)}`;
    try {
      cpSync(AGENT_BIN, path.join(jail, 'homeostat-agent'));
      mkdirSync(path.join(jail, 'etc'));
      writeFileSync(
        path.join(jail, 'b.yaml'),
        `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: old-glibc\nspec:\n  resources:\n    - file: ${inside}/etc/motd\n      content: "hi\\n"\n`,
      );
      const script = `mount -t proc proc "$1/proc" && exec chroot "$@"`;
      const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
        sh('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, '_', BULLSEYE_ROOT, `${inside}/homeostat-agent`, ...args], {
          env: cleanEnv({ HOMEOSTAT_CACHE_DIR: `${inside}/cache` }),
        });
      const v = await run(['--version']);
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.stdout.trim(), VERSION_LINE);
      const check = await run(['check', '--baseline', `${inside}/b.yaml`, '--state-dir', `${inside}/state`]);
      assert.equal(check.code, 2, check.stderr);
      const apply = await run(['apply', '--baseline', `${inside}/b.yaml`, '--state-dir', `${inside}/state`]);
      assert.equal(apply.code, 0, apply.stderr);
      assert.ok(existsSync(path.join(jail, 'state/agent.db')), 'the SQLite cache was written');
      assert.equal(readFileSync(path.join(jail, 'etc/motd'), 'utf8'), 'hi\n');
      const again = await run(['check', '--baseline', `${inside}/b.yaml`, '--state-dir', `${inside}/state`]);
      assert.equal(again.code, 0, again.stderr);
    } finally {
      rmSync(jail, { recursive: true, force: true });
    }
  });
});
