// The Debian package on one booted Debian 12 host (systemd as PID 1), in the order an operator meets it: install.sh
// installs it with a controller (one start, on the first try), it enforces a rollout and starts 20 times in a row; the
// host reboots with the controller down and the agent enforces from its cache; crashes in a row do not leave it failed;
// `dpkg -r` then `dpkg -i` leaves it running; a failed start says where to look; then a standalone install with local
// baselines that `systemctl reload` reads again and a second run of install.sh keeps.
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
const PKG = '/root/pkg';

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface AuditEntry {
  event: string;
  resource: string | null;
  trigger: string | null;
  detail: string | null;
}

describe('package: installed on a booted Debian 12 host', function () {
  this.timeout(300_000);
  let host: BootedHost;
  let controller: Daemon | undefined;
  let dir: string;
  let server = '';
  const files = Array.from({ length: FILES }, (_, i) => `/srv/homeostat-test/f${i}.conf`);
  /** install.sh's controller flags, as first given (a later run may repeat them). */
  let managed: string[] = [];

  const ctl = async <T>(args: string[]): Promise<T> => {
    const r = await sh(CONTROLLER_BIN, ['ctl', '--server', server, '--token', ADMIN, '--json', ...args], { env: cleanEnv({ HOMEOSTAT_CACHE_DIR: path.join(dir, 'cache') }) });
    assert.equal(r.code, 0, `homeostatctl ${args.join(' ')}: ${r.stderr}${controller?.running ? '' : `\nthe controller is gone:\n${controller?.log().slice(-3000)}`}`);
    return JSON.parse(r.stdout) as T;
  };
  const journal = async (): Promise<string> => (await host.exec(['journalctl', '--no-pager', '-o', 'cat', '-u', UNIT])).stdout;
  const unit = (props: string[]): Promise<Record<string, string>> => host.show(UNIT, props);
  const installSh = (args: string[]): ReturnType<BootedHost['exec']> => host.exec(['sh', `${PKG}/install.sh`, '--package', `${PKG}/${path.basename(DEB)}`, ...args], { timeoutMs: 180_000 });
  const agent = async <T>(args: string[]): Promise<T> => {
    const r = await host.exec(['homeostat-agent', ...args, '--json']);
    assert.equal(r.code, 0, `homeostat-agent ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  const audit = async (event: string): Promise<AuditEntry[]> => (await agent<{ entries: AuditEntry[] }>(['audit', '--event', event])).entries;
  /** Waits until the unit is active with a main process other than `not`; returns that process. */
  const activeAgain = (not: string, timeoutMs = 60_000): Promise<string> =>
    waitFor(`${UNIT} active again`, timeoutMs, async () => {
      const s = await unit(['ActiveState', 'MainPID']);
      return s.ActiveState === 'active' && s.MainPID !== '0' && s.MainPID !== not ? s.MainPID : undefined;
    });

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
    mkdirSync(host.path(PKG), { recursive: true });
    copyFileSync(DEB, host.path(`${PKG}/${path.basename(DEB)}`));
    copyFileSync(path.join(REPO, 'packaging/install.sh'), host.path(`${PKG}/install.sh`));
  });

  after(async () => {
    await controller?.stop();
    await host?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is systemd as PID 1 in a Debian 12 root', async () => {
    assert.equal((await host.exec(['cat', '/proc/1/comm'])).stdout.trim(), 'systemd');
    assert.match((await host.exec(['cat', '/etc/os-release'])).stdout, /VERSION_ID="12"/);
  });

  it('install.sh installs the .deb with a controller: the agent starts once, on the first try, enrolls, and pgrep finds it', async () => {
    const { token } = await ctl<{ token: string }>(['token', 'create', '--ttl', '10m', '--labels', 'role=booted']);
    managed = ['--controller', server.replace(/^http/, 'ws'), '--token', token, '--insecure-http'];
    const r = await installSh(managed);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n${await journal()}`);
    const s = await unit(['ActiveState', 'SubState', 'NRestarts', 'Result', 'UnitFileState', 'MainPID']);
    assert.deepEqual({ ...s, MainPID: undefined }, { ActiveState: 'active', SubState: 'running', NRestarts: '0', Result: 'success', UnitFileState: 'enabled', MainPID: undefined }, await journal());
    // postinst started it with the configuration install.sh had written first; install.sh did not start it again.
    assert.equal((await audit('agent_started')).length, 1, 'one start on a fresh install');
    assert.equal((await journal()).match(/^Started homeostat-agent\.service|^Started Homeostat configuration agent/gm)?.length, 1, await journal());
    await waitFor('the agent connected to the controller', 30_000, async () => (await ctl<{ connected: boolean }[]>(['agents'])).find((a) => a.connected));
    // Node alone names the process MainThread; pgrep (on this machine, in the host's PID namespace) looks at that name.
    const pgrep = await sh('pgrep', ['--ns', String(host.leader), '--nslist', 'pid', '-x', 'homeostat-agent']);
    // pgrep gives this machine's process ids; NSpid's last field is the id inside the host.
    const inside = pgrep.stdout.trim().split('\n').filter(Boolean).map((pid) => /^NSpid:.*\s(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    assert.deepEqual(inside, [s.MainPID], `pgrep: ${pgrep.stdout} ${pgrep.stderr}`);
  });

  it(`enforces what the controller rolls out (${FILES} files), and starts ${RESTARTS} times in a row, each on the first try, without an abort`, async () => {
    const file = path.join(dir, 'booted.yaml');
    const yaml = `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: booted\nspec:\n  selector: { matchLabels: { role: booted } }\n  resources:\n${files.map((f) => `    - file: ${f}\n      content: ${JSON.stringify(CONTENT)}\n`).join('')}`;
    writeFileSync(file, yaml);
    const pushed = await ctl<{ version: number }>(['baseline', 'push', file]);
    const rollout = await ctl<{ id: number }>(['rollout', 'start', 'booted', String(pushed.version), '--all-at-once']);
    await waitFor('the rollout completed', 60_000, async () => {
      const s = await ctl<{ state: string }>(['rollout', 'status', String(rollout.id)]);
      return s.state === 'completed' ? s : undefined;
    });
    assert.equal(readFileSync(host.path(files[FILES - 1] ?? ''), 'utf8'), CONTENT);

    const pids = new Set<string>();
    for (let i = 0; i < RESTARTS; i++) {
      // Type=notify: start returns once the new process said READY=1, i.e. its baselines are loaded and enforced.
      const r = await host.shell(`systemctl stop ${UNIT} && systemctl start ${UNIT}`, { timeoutMs: 120_000 });
      assert.equal(r.code, 0, `restart ${i + 1}: ${r.stderr}\n${(await journal()).slice(-3000)}`);
      const s = await unit(['ActiveState', 'MainPID', 'NRestarts', 'StatusText']);
      assert.equal(s.ActiveState, 'active', `restart ${i + 1}`);
      assert.equal(s.NRestarts, '0', `restart ${i + 1}: systemd had to start it again`);
      assert.match(s.StatusText ?? '', new RegExp(`enforcing ${FILES} resources`));
      pids.add(s.MainPID ?? '');
    }
    assert.equal(pids.size, RESTARTS, 'a new process each time');
    const log = await journal();
    assert.doesNotMatch(log, /Assertion failed|core-dump|dumped core|SIGABRT|SIGSEGV|status=6\/ABRT|Failed with result/, log.slice(-3000));
    // Still the controller's agent, with the baseline it was given.
    const agents = await waitFor('the agent reconnected', 30_000, async () => (await ctl<{ connected: boolean; baselines: { name: string; version: number }[] }[]>(['agents'])).find((a) => a.connected));
    assert.deepEqual(agents.baselines.map((b) => `${b.name}@${b.version}`), ['booted@1']);
  });

  it('reboots with the controller down: the agent starts at boot and repairs drift from its cache', async () => {
    const ended = await controller?.stop();
    assert.ok(ended && !aborted(ended) && ended.code === 0, JSON.stringify(ended));
    await host.stop();
    await host.start();
    const s = await unit(['ActiveState', 'NRestarts', 'StatusText']);
    assert.deepEqual([s.ActiveState, s.NRestarts], ['active', '0'], await journal());
    assert.match(s.StatusText ?? '', new RegExp(`enforcing ${FILES} resources`));
    const status = await agent<{ baselines: { name: string; origin: string }[]; controller: { state: string } }>(['status']);
    assert.deepEqual(status.baselines.map((b) => `${b.name}:${b.origin}`), ['booted:controller']);
    assert.notEqual(status.controller.state, 'connected');

    const target = files[7] ?? '';
    writeFileSync(host.path(target), 'changed while the controller is away\n');
    await waitFor('the drift repaired after boot', 15_000, () => (readFileSync(host.path(target), 'utf8') === CONTENT ? true : undefined));
    const repaired = (await audit('repaired')).filter((e) => e.resource === `file:${target}`);
    // Made by the rollout (trigger controller), then repaired after boot, seen by its watch.
    assert.deepEqual(repaired.map((e) => e.trigger), ['controller', 'watch']);
  });

  it('crashes in quick succession do not leave the unit failed for good', async () => {
    // Quick crashes: restarted 100 ms after each (a drop-in), so 8 of them come within systemd's default start-limit
    // interval of 10 s. The shipped unit has no start limit, so the 9th start happens all the same.
    const dropIn = `/etc/systemd/system/${UNIT}.d`;
    await host.shell(`mkdir -p ${dropIn} && printf '[Service]\\nRestartSec=100ms\\n' > ${dropIn}/quick.conf && systemctl daemon-reload`);
    try {
      let pid = (await unit(['MainPID'])).MainPID ?? '';
      for (let i = 0; i < 8; i++) {
        const k = await host.shell(`kill -KILL ${pid}`); // the shell's kill: a minimal Debian has no /bin/kill
        assert.equal(k.code, 0, k.stderr);
        pid = await activeAgain(pid);
      }
      const s = await unit(['ActiveState', 'NRestarts', 'Result']);
      assert.deepEqual([s.ActiveState, s.NRestarts], ['active', '8'], await journal());
      assert.doesNotMatch(await journal(), /Start request repeated too quickly/);
    } finally {
      await host.shell(`rm -rf ${dropIn} && systemctl daemon-reload`);
    }
  });

  it('dpkg -r then dpkg -i leaves the agent running, with its state', async () => {
    const removed = await host.exec(['dpkg', '-r', 'homeostat-agent'], { timeoutMs: 120_000 });
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal((await unit(['ActiveState'])).ActiveState, 'inactive');
    const again = await host.exec(['dpkg', '-i', `${PKG}/${path.basename(DEB)}`], { timeoutMs: 180_000 });
    assert.equal(again.code, 0, again.stderr);
    const s = await unit(['ActiveState', 'NRestarts', 'StatusText', 'UnitFileState']);
    assert.deepEqual([s.ActiveState, s.UnitFileState], ['active', 'enabled'], await journal());
    assert.match(s.StatusText ?? '', new RegExp(`enforcing ${FILES} resources`), 'the cached baseline, state kept');
  });

  it('says where to look when the agent does not start after install.sh changed its settings', async () => {
    // Something on the host keeps the agent from starting (here a drop-in whose ExecStartPre fails): the restart after a
    // relabel fails, and install.sh says so, with the journal's last lines, rather than stopping mid-way without a word.
    const dropIn = `/etc/systemd/system/${UNIT}.d`;
    await host.shell(`mkdir -p ${dropIn} && printf '[Service]\\nExecStartPre=/bin/sh -c "echo blocked by the test; exit 3"\\n' > ${dropIn}/blocked.conf && systemctl daemon-reload`);
    try {
      const r = await installSh([...managed, '--labels', 'role=booted,zone=a']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /homeostat-agent\.service did not start; see: journalctl -u homeostat-agent\.service/);
      assert.match(r.stderr, /blocked by the test/, 'the journal lines come with it');
    } finally {
      await host.shell(`rm -rf ${dropIn} && systemctl daemon-reload`);
    }
    const fixed = await installSh(['--labels', 'role=booted']);
    assert.equal(fixed.code, 0, fixed.stderr);
    assert.equal((await unit(['ActiveState'])).ActiveState, 'active');
  });

  it('installs standalone with local baselines (no controller): one start, repairs, `systemctl reload` reads them again, and a second run keeps them', async () => {
    const purge = await host.exec(['sh', `${PKG}/install.sh`, '--uninstall', '--purge'], { timeoutMs: 120_000 });
    assert.equal(purge.code, 0, purge.stderr);
    const motd = '/etc/motd-homeostat';
    const baselineFile = '/etc/homeostat/baselines/local.yaml';
    const local = (text: string): string => `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: local\nspec:\n  resources:\n    - file: ${motd}\n      content: "${text}\\n"\n`;
    mkdirSync(path.dirname(host.path(baselineFile)), { recursive: true });
    writeFileSync(host.path(baselineFile), local('first'));

    const r = await installSh(['--baseline', baselineFile]);
    assert.equal(r.code, 0, `${r.stderr}\n${await journal()}`);
    const s = await unit(['ActiveState', 'NRestarts', 'MainPID']);
    assert.deepEqual([s.ActiveState, s.NRestarts], ['active', '0']);
    assert.equal((await audit('agent_started')).length, 1, 'one start');
    assert.equal(readFileSync(host.path(motd), 'utf8'), 'first\n');
    writeFileSync(host.path(motd), 'tampered\n');
    await waitFor('standalone repair', 15_000, () => (readFileSync(host.path(motd), 'utf8') === 'first\n' ? true : undefined));

    writeFileSync(host.path(baselineFile), local('second'));
    const reload = await host.exec(['systemctl', 'reload', UNIT]);
    assert.equal(reload.code, 0, reload.stderr);
    await waitFor('the reloaded baseline enforced', 15_000, () => (readFileSync(host.path(motd), 'utf8') === 'second\n' ? true : undefined));
    assert.equal((await unit(['MainPID'])).MainPID, s.MainPID, 'reloaded in place, not restarted');

    const rerun = await installSh(['--labels', 'role=edge']);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(readFileSync(host.path('/etc/homeostat/agent.yaml'), 'utf8'), /^baselines: \['\/etc\/homeostat\/baselines\/local\.yaml'\]$/m);
    const after = await agent<{ baselines: { name: string; origin: string }[] }>(['status']);
    assert.deepEqual(after.baselines.map((b) => `${b.name}:${b.origin}`), ['local:local'], 'still enforcing the local baseline after the restart');
    writeFileSync(host.path(motd), 'tampered again\n');
    await waitFor('repair after the second run', 15_000, () => (readFileSync(host.path(motd), 'utf8') === 'second\n' ? true : undefined));
  });
});
