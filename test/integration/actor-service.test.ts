// Who changed a service, against the real systemd user manager: a `systemctl` run named through the audit subsystem when
// auditd watches the program, otherwise what the manager itself records — how the main process ended, or plainly that
// it does not record who asked for a stop or a disable.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuditAttribution } from '../../agent/actor/audit-actors.js';
import { actorForUnit, SERVICE_PROGRAMS, systemctlFacts } from '../../agent/actor/service-actors.js';
import { auditdState } from '../../agent/host/auditd.js';
import { silentLogger } from '../../lib/log.js';
import { run } from '../helpers/netns.js';
import { ensureUserManager, systemctlUser, TestUnits, unitView, userManagerEnv } from '../helpers/systemd-user.js';

const KEY = `hs-s${process.pid}`;

function exec(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: 'ignore', env: userManagerEnv() });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(child.pid ?? -1) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`))));
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('actors of service changes', function () {
  this.timeout(60_000);
  const units = new TestUnits();
  const facts = systemctlFacts('user', userManagerEnv());
  let dir: string;

  before(async () => {
    await ensureUserManager();
    dir = mkdtempSync(path.join(tmpdir(), 'hs-actor-svc-'));
  });
  after(async () => {
    await units.removeAll();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('what systemd records, without auditd', () => {
    it('a main process killed by a signal: the signal, and that the sender is not recorded', async () => {
      const unit = await units.long('killed');
      await systemctlUser(['start', unit]);
      const pid = Number((await systemctlUser(['show', '-p', 'MainPID', '--value', unit])).stdout.trim());
      process.kill(pid, 'SIGKILL');
      await waitFor('the unit to fail', async () => (await unitView(unit)).activeState === 'failed');
      const a = await actorForUnit(unit, 'active', { time: Date.now() }, { facts });
      assert.deepEqual(a, {
        source: 'journal',
        detail: `the main process (pid ${pid}) was killed by signal KILL; the kernel and systemd do not record who sent it`,
      });
    });

    it('a main process that exited by itself: the service is its own actor', async () => {
      const unit = await units.write('exits', "[Service]\nExecStart=/bin/sh -c 'sleep 0.2; exit 3'\n");
      await systemctlUser(['start', unit]);
      await waitFor('the unit to fail', async () => (await unitView(unit)).activeState === 'failed');
      const a = await actorForUnit(unit, 'active', { time: Date.now() }, { facts });
      assert.equal(a.source, 'journal');
      assert.equal(a.unit, unit);
      assert.match(a.detail ?? '', /^the main process \(pid \d+\) exited by itself with status 3$/);
    });

    it('a stop or a disable through systemd: said plainly that systemd does not record who asked', async () => {
      const unit = await units.long('stopped');
      await systemctlUser(['enable', '--now', unit]);
      await systemctlUser(['stop', unit]);
      const stopped = await actorForUnit(unit, 'active', { time: Date.now() }, { facts });
      assert.equal(stopped.source, 'journal');
      assert.match(stopped.detail ?? '', /stopped through systemd \(a stop job\); systemd does not record who asked for it/);
      await systemctlUser(['disable', unit]);
      const disabled = await actorForUnit(unit, 'enabled', { time: Date.now() }, { facts });
      assert.equal(disabled.detail, 'the unit file state is now disabled; systemd does not record who changed it');
    });
  });

  describe('with auditd watching systemctl', () => {
    let audit: AuditAttribution;

    before(async function () {
      const s = await auditdState();
      assert.ok(s.running, `these tests need auditd running (${s.reason ?? ''}); test/integration/actor-audit.test.ts starts it`);
      audit = new AuditAttribution({ key: KEY, log: silentLogger });
      assert.equal((await audit.start()).state, 'active');
      const report = await audit.watch([], SERVICE_PROGRAMS.map((p) => realpathSync(p)));
      assert.deepEqual(report?.failed, []);
    });
    after(async () => {
      await audit?.stop();
      await run('auditctl', ['-D', '-k', KEY], { allowFail: true });
    });

    it('a script stopping the unit with systemctl is named: the systemctl run, its arguments and the script above it', async () => {
      const unit = await units.long('scripted');
      await systemctlUser(['start', unit]);
      const script = path.join(dir, 'stop-it.sh');
      writeFileSync(script, `#!/bin/bash\nsystemctl --user stop ${unit}\nsleep 0.3\n`, { mode: 0o755 });
      const since = Date.now();
      await exec('/bin/bash', [script]);
      await waitFor('the unit to stop', async () => (await unitView(unit)).activeState === 'inactive');
      const a = await actorForUnit(unit, 'active', { time: Date.now(), since, waitMs: 2000 }, { audit, facts });
      assert.equal(a.source, 'audit');
      assert.equal(a.exe, realpathSync('/usr/bin/systemctl'));
      assert.equal(a.cmdline, `systemctl --user stop ${unit}`);
      assert.equal(a.parents?.[0], '/usr/bin/bash', 'the script that ran it');
      assert.deepEqual([a.uid, a.user], [0, 'root']);
    });

    it('a disable is told apart from a stop; a run about another unit is not taken', async () => {
      const unit = await units.long('masked');
      const other = await units.long('other');
      await systemctlUser(['enable', unit]);
      const since = Date.now();
      await exec('systemctl', ['--user', 'disable', unit]);
      await exec('systemctl', ['--user', 'stop', other]);
      const disabled = await actorForUnit(unit, 'enabled', { time: Date.now(), since, waitMs: 2000 }, { audit, facts });
      assert.deepEqual([disabled.source, disabled.cmdline], ['audit', `systemctl --user disable ${unit}`]);
      const notStopped = await actorForUnit(unit, 'active', { time: Date.now(), since, waitMs: 100 }, { audit, facts });
      assert.equal(notStopped.source, 'journal', 'no systemctl run stopped this unit: what systemd records');
    });
  });
});
