// The engine's one question, "who caused this drift", through the Actors facade against real parts: a sysctl set with
// the sysctl program inside a network namespace, a file written by a script, a service stopped with systemctl.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Actors, sysctlRunSets } from '../../agent/actor/actors.js';
import { auditdState } from '../../agent/host/auditd.js';
import { silentLogger } from '../../lib/log.js';
import { waitFor } from '../helpers/agent.js';
import { Netns, run } from '../helpers/netns.js';
import { ensureUserManager, systemctlUser, TestUnits, unitView, userManagerEnv } from '../helpers/systemd-user.js';

function exec(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: 'ignore', env: userManagerEnv() });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(child.pid ?? -1) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`))));
  });
}

describe('actors of drift, one question for every kind', function () {
  this.timeout(60_000);
  const key = `hs-a${process.pid}`;
  const units = new TestUnits();
  let actors: Actors;
  let dir: string;
  let ns: Netns | undefined;

  before(async () => {
    const s = await auditdState();
    assert.ok(s.running, `these tests need auditd running (${s.reason ?? ''}); test/integration/actor-audit.test.ts starts it`);
    await ensureUserManager();
    dir = mkdtempSync(path.join(tmpdir(), 'hs-actors-'));
    actors = new Actors({ log: silentLogger, key, scope: 'user' });
    assert.equal((await actors.start()).state, 'active');
  });
  after(async () => {
    await actors?.stop();
    await run('auditctl', ['-D', '-k', key], { allowFail: true });
    await ns?.destroy();
    await units.removeAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a sysctl set with the sysctl program: that run, its arguments, the shell above it', async () => {
    ns = await Netns.create('actors');
    await actors.watch([{ kind: 'sysctl', name: 'net.ipv4.ip_forward' }]);
    const since = Date.now();
    // The shell stays until the question is answered: /proc names a parent only while it lives, and on a loaded machine the
    // audit record may be read after a shell that ended at once was gone.
    const shell = spawn('ip', ['netns', 'exec', ns.name, '/bin/sh', '-c', 'sysctl -q -w net.ipv4.ip_forward=1; read done'], { stdio: ['pipe', 'ignore', 'inherit'] });
    const shellExited = new Promise((resolve) => shell.once('exit', resolve));
    let a: Awaited<ReturnType<Actors['actorFor']>>;
    try {
      await waitFor(async () => (await (ns as Netns).sysctl('net.ipv4.ip_forward')) === '1', 10_000, 'the sysctl set');
      a = await actors.actorFor({ kind: 'sysctl', name: 'net.ipv4.ip_forward', changes: ['value'], time: Date.now(), since, waitMs: 2000 });
    } finally {
      shell.stdin?.end();
      await shellExited;
    }
    assert.equal(a.source, 'audit');
    assert.equal(a.exe, realpathSync('/usr/sbin/sysctl'));
    assert.equal(a.cmdline, 'sysctl -q -w net.ipv4.ip_forward=1');
    assert.match(a.parents?.[0] ?? '', /^\/usr\/bin\/dash$|^sh \(pid \d+, exited\)$/, 'the shell that ran it, by its command name once it has exited');
    const other = await actors.actorFor({ kind: 'sysctl', name: 'net.ipv4.conf.all.rp_filter', changes: ['value'], time: Date.now(), since, waitMs: 20 });
    assert.equal(other.source, 'unknown', 'a run setting another key is not taken');
    assert.match(other.detail ?? '', /straight to \/proc\/sys cannot be attributed/);
  });

  it('a file, a directory and a service: paths and programs watched together', async () => {
    const file = path.join(dir, 'motd');
    const unit = await units.long('facade');
    await systemctlUser(['start', unit]);
    await actors.watch([
      { kind: 'file', name: file },
      { kind: 'directory', name: dir },
      { kind: 'service', name: unit },
    ]);
    const since = Date.now();
    // The script lives on a moment after its last change, as real ones do: /proc can still name it as the parent.
    writeFileSync(path.join(dir, 'writer.sh'), `#!/bin/sh\necho hi > ${file}\nchmod 700 ${dir}\nsystemctl --user stop ${unit}\nsleep 0.3\n`, { mode: 0o755 });
    const pid = await exec('/bin/sh', [path.join(dir, 'writer.sh')]);
    assert.equal((await unitView(unit)).activeState, 'inactive');
    const f = await actors.actorFor({ kind: 'file', name: file, changes: ['content'], time: Date.now(), since, waitMs: 2000 });
    assert.deepEqual([f.source, f.pid, f.exe], ['audit', pid, '/usr/bin/dash']);
    const d = await actors.actorFor({ kind: 'directory', name: dir, changes: ['mode'], time: Date.now(), since, waitMs: 2000 });
    assert.equal(d.exe, '/usr/bin/chmod');
    const s = await actors.actorFor({ kind: 'service', name: unit, changes: ['active'], time: Date.now(), since, waitMs: 2000 });
    assert.deepEqual([s.source, s.cmdline, s.parents?.[0]], ['audit', `systemctl --user stop ${unit}`, '/usr/bin/dash']);
  });

  it('reads sysctl arguments as sysctl does', () => {
    assert.equal(sysctlRunSets(['sysctl', '-w', 'net.ipv4.ip_forward=1'], 'net.ipv4.ip_forward'), true);
    assert.equal(sysctlRunSets(['sysctl', 'net/ipv4/ip_forward=1'], 'net.ipv4.ip_forward'), true);
    assert.equal(sysctlRunSets(['sysctl', 'net/ipv4/conf/eth0.100/forwarding=1'], 'net.ipv4.conf.eth0/100.forwarding'), true);
    assert.equal(sysctlRunSets(['sysctl', '-p', '/etc/sysctl.d/x.conf'], 'vm.swappiness'), true);
    assert.equal(sysctlRunSets(['sysctl', 'net.ipv4.ip_forward'], 'net.ipv4.ip_forward'), false, 'a read');
    assert.equal(sysctlRunSets(['sysctl', '-w', 'net.ipv4.ip_forward_update_priority=1'], 'net.ipv4.ip_forward'), false);
  });
});
