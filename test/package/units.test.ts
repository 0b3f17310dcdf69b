// The systemd units: they verify, their hardening holds, and the agent's unit runs the executable for real (readiness, status, repair, watchdog restart).
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureUserManager, systemctlUser, TestUnits } from '../helpers/systemd-user.js';
import { AGENT_BIN, CONTROLLER_BIN, REPO, sh } from './artifacts.js';

const UNITS = path.join(REPO, 'packaging/systemd');
const AGENT_UNIT = path.join(UNITS, 'homeostat-agent.service');
const CONTROLLER_UNIT = path.join(UNITS, 'homeostat-controller.service');

async function waitFor(pred: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function show(unit: string, props: string[]): Promise<Record<string, string>> {
  const r = await systemctlUser(['show', '-p', props.join(','), unit]);
  return Object.fromEntries(r.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

describe('package: systemd units', function () {
  this.timeout(120_000);

  it('pass systemd-analyze verify (with the executables at their ExecStart paths, in a private mount namespace)', async () => {
    const bins = mkdtempSync(path.join(tmpdir(), 'hs-pkg-verify-'));
    try {
      symlinkSync(AGENT_BIN, path.join(bins, 'homeostat-agent'));
      symlinkSync(CONTROLLER_BIN, path.join(bins, 'homeostat-controller'));
      // An overlay adds the two files to /usr/bin for this one process, without touching the machine.
      const script = 'mount -t overlay overlay -o "lowerdir=$1:/usr/bin" /usr/bin && shift && exec systemd-analyze verify --man=no "$@"';
      const r = await sh('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, '_', bins, AGENT_UNIT, CONTROLLER_UNIT]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr.trim(), '', 'no warnings');
    } finally {
      rmSync(bins, { recursive: true, force: true });
    }
  });

  it('say what the issue asks: notify, watchdog, restart without a start limit, reload, state and cache dirs, a clean environment', () => {
    const agent = readFileSync(AGENT_UNIT, 'utf8');
    // ExecReload: `systemctl reload` is SIGHUP, which reads the baseline files again. No start limit: crashes in a row
    // never leave the repairer failed for good (the booted-host test crashes it on purpose).
    for (const line of ['Type=notify', 'NotifyAccess=all', 'Restart=always', 'StartLimitIntervalSec=0', `ExecReload=/bin/sh -c 'kill -HUP "$MAINPID"'`, 'StateDirectory=homeostat', 'CacheDirectory=homeostat', 'NoNewPrivileges=yes']) {
      assert.ok(agent.split('\n').includes(line), line);
    }
    assert.match(agent, /^WatchdogSec=\d+s$/m);
    assert.match(agent, /^UnsetEnvironment=.*\bNODE_OPTIONS\b/m);
    assert.match(readFileSync(CONTROLLER_UNIT, 'utf8'), /^UnsetEnvironment=.*\bNODE_OPTIONS\b/m);
  });

  it('keep systemd-analyze security exposure low (agent < 5, controller < 2)', async () => {
    for (const [unit, max] of [[AGENT_UNIT, 5], [CONTROLLER_UNIT, 2]] as const) {
      const r = await sh('systemd-analyze', ['security', '--offline=yes', '--no-pager', unit]);
      const score = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout)?.[1]);
      assert.ok(score < max, `${path.basename(unit)} exposure ${score}`);
    }
  });

  describe('the agent unit under a real systemd (the user manager)', () => {
    const units = new TestUnits();
    let dir: string;

    before(async function () {
      this.timeout(60_000);
      await ensureUserManager();
      // Not under /tmp: the unit has PrivateTmp=yes, so the agent would see a /tmp of its own.
      mkdirSync('/var/lib/homeostat-pkgtest', { recursive: true });
      dir = mkdtempSync('/var/lib/homeostat-pkgtest/u-');
    });

    after(async () => {
      await units.removeAll();
      rmSync(dir, { recursive: true, force: true });
    });

    it('is ready once the baseline is enforced, shows a status, repairs drift, and is restarted by the watchdog when hung', async () => {
      const motd = path.join(dir, 'motd');
      const baseline = path.join(dir, 'b.yaml');
      writeFileSync(baseline, `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: pkg-unit\nspec:\n  resources:\n    - file: ${motd}\n      content: "from the unit\\n"\n`);
      // The shipped unit with only what a test needs changed. The user manager in this container cannot set up
      // ProtectKernelLogs (no /dev/kmsg access), and under ProtectControlGroups/ProtectProc its mount namespace
      // loses $XDG_RUNTIME_DIR, where the user manager's notify socket lives; the system manager's is /run/systemd.
      // The executable too must be outside /tmp (PrivateTmp=yes): the checkout, and so packaging/out, may live there.
      const bin = path.join(dir, 'homeostat-agent');
      copyFileSync(AGENT_BIN, bin);
      chmodSync(bin, 0o755);
      const body = readFileSync(AGENT_UNIT, 'utf8')
        .replace(/^ExecStart=.*$/m, `ExecStart=${bin} run --systemd-scope user --baseline ${baseline} --state-dir ${dir}/state`)
        .replace(/^WatchdogSec=.*$/m, 'WatchdogSec=2s')
        .replace(/^TimeoutStartSec=.*$/m, 'TimeoutStartSec=30s')
        .replace(/^RestartSec=.*$/m, 'RestartSec=100ms')
        // A stopped process cannot act on the watchdog's SIGABRT; SIGKILL follows after TimeoutAbortSec.
        .replace(/^TimeoutStopSec=.*$/m, 'TimeoutStopSec=5s\nTimeoutAbortSec=2s')
        // Keep root's home clean: the directories are tested by the real install, not here.
        .replace(/^(StateDirectory|CacheDirectory|ConfigurationDirectory)(Mode)?=.*\n/gm, '')
        .replace(/^Environment=.*$/m, `Environment=HOMEOSTAT_CACHE_DIR=${dir}/cache`)
        .replace(/^(ProtectKernelLogs|ProtectControlGroups|ProtectProc)=.*\n/gm, '')
        .replace(/^WantedBy=.*$/m, 'WantedBy=default.target');
      const unit = await units.write('agent', body);

      // `start` returns only once READY=1 arrived (Type=notify).
      await systemctlUser(['start', unit]);
      assert.equal(readFileSync(motd, 'utf8'), 'from the unit\n', 'enforced before ready');
      const up = await show(unit, ['ActiveState', 'StatusText', 'MainPID', 'NRestarts']);
      assert.equal(up.ActiveState, 'active');
      assert.match(up.StatusText ?? '', /enforcing 1 resource/);

      writeFileSync(motd, 'tampered\n');
      await waitFor(() => readFileSync(motd, 'utf8') === 'from the unit\n', 5_000, 'repair under the unit');

      // Alive but answering nothing: the watchdog pings stop, systemd kills it and starts it again.
      const pid = Number(up.MainPID);
      process.kill(pid, 'SIGSTOP');
      await waitFor(async () => {
        const s = await show(unit, ['MainPID', 'ActiveState', 'NRestarts']);
        return Number(s.NRestarts) >= 1 && s.ActiveState === 'active' && Number(s.MainPID) !== pid;
      }, 20_000, 'a watchdog restart');
      assert.equal(existsSync(`/proc/${pid}`), false, 'the hung process is gone');
      await systemctlUser(['stop', unit]);
      const down = await show(unit, ['ActiveState', 'Result']);
      assert.equal(down.ActiveState, 'inactive');
    });
  });
});
