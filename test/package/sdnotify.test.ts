// sdnotify under plain node: silent outside systemd, the watchdog interval systemd asks for, and messages that reach a real manager.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { watchdogIntervalMs } from '../../agent/host/sdnotify.js';
import { ensureUserManager, systemctlUser } from '../helpers/systemd-user.js';

const SDNOTIFY = fileURLToPath(new URL('../../agent/host/sdnotify.js', import.meta.url));

describe('package: sdnotify', function () {
  this.timeout(60_000);

  it('pings at half of WATCHDOG_USEC, and only in the process systemd watches', () => {
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, 42), 15_000);
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42), 15_000);
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '7' }, 42), undefined);
    assert.equal(watchdogIntervalMs({}, 42), undefined);
    assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: 'x' }, 42), undefined);
  });

  it('does nothing and says so (false) without NOTIFY_SOCKET', () => {
    const code = `import('${SDNOTIFY}').then(async (n) => { const r = [await n.notifyReady('x'), await n.notifyStatus('y'), await n.notifyStopping()]; const stop = n.startWatchdog(); stop(); console.log(JSON.stringify(r)); })`;
    const env = { ...process.env };
    delete env.NOTIFY_SOCKET;
    const r = spawnSync(process.execPath, ['-e', code], { env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '[false,false,false]');
  });

  it('READY and STATUS reach a real manager, and the socket is kept from child processes', async () => {
    await ensureUserManager();
    const unit = `hs-test-${process.pid}-sdnotify.service`;
    const script = `import('${SDNOTIFY}').then(async (n) => { await n.notifyStatus('loading'); await n.notifyReady('ready, child sees ' + (process.env.NOTIFY_SOCKET ? 'socket' : 'none')); setInterval(() => {}, 1000); })`;
    try {
      // systemd-run returns once the Type=notify unit is ready, or fails after the start timeout.
      await systemctlUser(['reset-failed', unit], { allowFail: true });
      const r = spawnSync('systemd-run', ['--user', '--unit', unit, '-p', 'Type=notify', '-p', 'NotifyAccess=all', '-p', 'TimeoutStartSec=15', process.execPath, '-e', script], {
        env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/run/user/0' },
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
      const show = await systemctlUser(['show', '-p', 'ActiveState,StatusText', unit]);
      assert.match(show.stdout, /ActiveState=active/);
      assert.match(show.stdout, /StatusText=ready, child sees none/);
    } finally {
      await systemctlUser(['stop', unit], { allowFail: true });
      await systemctlUser(['reset-failed', unit], { allowFail: true });
    }
  });
});
