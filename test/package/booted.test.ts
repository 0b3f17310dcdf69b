// The Debian package on a booted Debian 12 host (systemd as PID 1): install.sh installs it with a controller configured, the unit starts on the first try and 20 times in a row after, never aborting, and enforces what the controller rolls out.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CONTROLLER_BIN, DEB, REPO, cleanEnv, sh } from './artifacts.js';
import { BootedHost } from './booted-host.js';
import { CONTENT, Daemon, aborted } from './workload.js';

const ADMIN = 'booted-test-admin-token';
const UNIT = 'homeostat-agent.service';
const FILES = 1000;
const RESTARTS = 20;

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('package: installed on a booted Debian 12 host', function () {
  this.timeout(300_000);
  let host: BootedHost | undefined;
  let controller: Daemon | undefined;
  let dir: string;
  let server = '';
  const ctl = async <T>(args: string[]): Promise<T> => {
    const r = await sh(CONTROLLER_BIN, ['ctl', '--server', server, '--token', ADMIN, '--json', ...args], { env: cleanEnv({ HOMEOSTAT_CACHE_DIR: path.join(dir, 'cache') }) });
    assert.equal(r.code, 0, `homeostatctl ${args.join(' ')}: ${r.stderr}${controller?.running ? '' : `\nthe controller is gone:\n${controller?.log().slice(-3000)}`}`);
    return JSON.parse(r.stdout) as T;
  };
  const journal = async (): Promise<string> => (await host?.exec(['journalctl', '--no-pager', '-o', 'cat', '-u', UNIT]))?.stdout ?? '';

  before(async function () {
    this.timeout(20 * 60_000);
    dir = mkdtempSync(path.join(tmpdir(), 'hs-pkg-booted-'));
    host = await BootedHost.boot();
    controller = new Daemon(
      CONTROLLER_BIN,
      ['--insecure-http', '--listen', `${host.outsideAddress}:0`, '--data-dir', path.join(dir, 'controller'), '--admin-token', ADMIN],
      path.join(dir, 'controller.log'),
      cleanEnv({ HOMEOSTAT_CACHE_DIR: path.join(dir, 'cache') }),
    );
    server = await waitFor('controller listening', 30_000, () => {
      if (!controller?.running) throw new Error(`controller exited:\n${controller?.log()}`);
      return /"url":"(http:\/\/[^"]+)"/.exec(controller.log())?.[1];
    });
  });

  after(async () => {
    await controller?.stop();
    await host?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is systemd as PID 1 in a Debian 12 root', async () => {
    assert.equal((await host?.exec(['cat', '/proc/1/comm']))?.stdout.trim(), 'systemd');
    assert.match((await host?.exec(['cat', '/etc/os-release']))?.stdout ?? '', /VERSION_ID="12"/);
  });

  it('install.sh installs the .deb with a controller configured; the unit starts on the first try and enrolls', async () => {
    const { token } = await ctl<{ token: string }>(['token', 'create', '--ttl', '10m', '--labels', 'role=booted']);
    const pkg = host?.path('/root/pkg') ?? '';
    mkdirSync(pkg, { recursive: true });
    copyFileSync(DEB, path.join(pkg, path.basename(DEB)));
    copyFileSync(path.join(REPO, 'packaging/install.sh'), path.join(pkg, 'install.sh'));
    const r = await host?.exec(['sh', '/root/pkg/install.sh', '--package', `/root/pkg/${path.basename(DEB)}`, '--controller', server.replace(/^http/, 'ws'), '--token', token, '--insecure-http'], { timeoutMs: 120_000 });
    assert.equal(r?.code, 0, `${r?.stdout}\n${r?.stderr}\n${await journal()}`);
    const unit = await host?.show(UNIT, ['ActiveState', 'SubState', 'NRestarts', 'Result', 'UnitFileState']);
    assert.deepEqual(unit, { ActiveState: 'active', SubState: 'running', NRestarts: '0', Result: 'success', UnitFileState: 'enabled' }, await journal());
    await waitFor('the agent connected to the controller', 30_000, async () => (await ctl<{ connected: boolean }[]>(['agents'])).find((a) => a.connected));
  });

  it(`enforces what the controller rolls out (${FILES} files), and starts ${RESTARTS} times in a row, each on the first try, without an abort`, async () => {
    const files = Array.from({ length: FILES }, (_, i) => `/srv/homeostat-test/f${i}.conf`);
    const file = path.join(dir, 'booted.yaml');
    const yaml = `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: booted\nspec:\n  selector: { matchLabels: { role: booted } }\n  resources:\n${files.map((f) => `    - file: ${f}\n      content: ${JSON.stringify(CONTENT)}\n`).join('')}`;
    writeFileSync(file, yaml);
    const pushed = await ctl<{ version: number }>(['baseline', 'push', file]);
    const rollout = await ctl<{ id: number }>(['rollout', 'start', 'booted', String(pushed.version), '--all-at-once']);
    await waitFor('the rollout completed', 60_000, async () => {
      const s = await ctl<{ state: string }>(['rollout', 'status', String(rollout.id)]);
      return s.state === 'completed' ? s : undefined;
    });
    assert.equal(readFileSync(host?.path(files[FILES - 1] ?? '') ?? '', 'utf8'), CONTENT);

    const pids = new Set<string>();
    for (let i = 0; i < RESTARTS; i++) {
      // Type=notify: start returns once the new process said READY=1, i.e. its baselines are loaded and enforced.
      // reset-failed clears systemd's start rate limit (5 starts in 10 s by default), which guards against loops, not tests.
      const r = await host?.shell(`systemctl stop ${UNIT} && systemctl reset-failed ${UNIT} && systemctl start ${UNIT}`, { timeoutMs: 120_000 });
      assert.equal(r?.code, 0, `restart ${i + 1}: ${r?.stderr}\n${(await journal()).slice(-3000)}`);
      const s = await host?.show(UNIT, ['ActiveState', 'MainPID', 'NRestarts', 'StatusText']);
      assert.equal(s?.ActiveState, 'active', `restart ${i + 1}`);
      assert.equal(s?.NRestarts, '0', `restart ${i + 1}: systemd had to start it again`);
      assert.match(s?.StatusText ?? '', new RegExp(`enforcing ${FILES} resources`));
      pids.add(s?.MainPID ?? '');
    }
    assert.equal(pids.size, RESTARTS, 'a new process each time');
    const log = await journal();
    assert.doesNotMatch(log, /Assertion failed|core-dump|dumped core|SIGABRT|SIGSEGV|status=6\/ABRT|Failed with result/, log.slice(-3000));
    // Still the controller's agent, with the baseline it was given.
    const agents = await waitFor('the agent reconnected', 30_000, async () => (await ctl<{ connected: boolean; baselines: { name: string; version: number }[] }[]>(['agents'])).find((a) => a.connected));
    assert.deepEqual(agents.baselines.map((b) => `${b.name}@${b.version}`), ['booted@1']);

    const ended = await controller?.stop();
    assert.ok(ended && !aborted(ended) && ended.code === 0, JSON.stringify(ended));
  });
});
