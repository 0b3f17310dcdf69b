// Reading audit records as auditd 3.0 writes them on Debian 12 (ENRICHED format): lines taken from a real log, grouped
// into events; hex-encoded fields, relative names, file-descriptor calls, execve arguments; unit names from cgroups.
import assert from 'node:assert/strict';
import { assembleEvent, auditDev, EventAssembler, eventPaths, parseAuditLine, type AuditEvent } from '../../agent/actor/audit-records.js';
import { unitFromCgroup } from '../../agent/actor/procinfo.js';
import { systemctlChanges, fromFacts, type UnitFacts } from '../../agent/actor/service-actors.js';

const GS = '\x1d';
const ENRICHED_IDS = `${GS}ARCH=x86_64 SYSCALL=@CALL@ AUID="unset" UID="root" GID="root" EUID="root" SUID="root" FSUID="root" EGID="root" SGID="root" FSGID="root"`;
const OWNERS = `${GS}OUID="root" OGID="root"`;

/** `bash -c 'echo hello > /tmp/hsp-exp/f'`: an openat that creates the file, named absolutely. */
const CREATE = [
  `type=SYSCALL msg=audit(1796009366.907:10): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=55bb9e9b6780 a2=241 a3=1b6 items=2 ppid=1347 pid=1348 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="bash" exe="/usr/bin/bash" key="hsp-exp"${ENRICHED_IDS.replace('@CALL@', 'openat')}`,
  'type=CWD msg=audit(1796009366.907:10): cwd="/tmp/hsp-exp"',
  `type=PATH msg=audit(1796009366.907:10): item=0 name="/tmp/hsp-exp/" inode=2146427 dev=fe:00 mode=040755 ouid=0 ogid=0 rdev=00:00 nametype=PARENT cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0${OWNERS}`,
  `type=PATH msg=audit(1796009366.907:10): item=1 name="/tmp/hsp-exp/f" inode=2146428 dev=fe:00 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=CREATE cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0${OWNERS}`,
  'type=PROCTITLE msg=audit(1796009366.907:10): proctitle=62617368002F6465762F66642F33',
];

/** `mv g f` in /tmp/hsp-exp: a rename over the watched f, with relative names. */
const RENAME = [
  `type=SYSCALL msg=audit(1796009366.907:12): arch=c000003e syscall=264 success=yes exit=0 a0=ffffff9c a1=7ffeab730a22 a2=ffffff9c a3=7ffeab730a24 items=5 ppid=1348 pid=1358 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="mv" exe="/usr/bin/mv" key="hsp-exp"${ENRICHED_IDS.replace('@CALL@', 'renameat')}`,
  'type=CWD msg=audit(1796009366.907:12): cwd="/tmp/hsp-exp"',
  `type=PATH msg=audit(1796009366.907:12): item=0 name="/tmp/hsp-exp" inode=2146427 dev=fe:00 mode=040755 ouid=0 ogid=0 rdev=00:00 nametype=PARENT cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0${OWNERS}`,
  `type=PATH msg=audit(1796009366.907:12): item=1 name="/tmp/hsp-exp" inode=2146427 dev=fe:00 mode=040755 ouid=0 ogid=0 rdev=00:00 nametype=PARENT cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0${OWNERS}`,
  `type=PATH msg=audit(1796009366.907:12): item=2 name="g" inode=2146429 dev=fe:00 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=DELETE cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0${OWNERS}`,
  `type=PATH msg=audit(1796009366.907:12): item=3 name="f" inode=2146428 dev=fe:00 mode=0100600 ouid=0 ogid=0 rdev=00:00 nametype=DELETE cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0${OWNERS}`,
  `type=PATH msg=audit(1796009366.907:12): item=4 name="f" inode=2146429 dev=fe:00 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=CREATE cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0${OWNERS}`,
  'type=PROCTITLE msg=audit(1796009366.907:12): proctitle=6D7600670066',
];

/** Python's os.fchmod(fd, 0o640): no name, only the inode. */
const FCHMOD = [
  `type=SYSCALL msg=audit(1796009395.899:21): arch=c000003e syscall=91 success=yes exit=0 a0=3 a1=1a0 a2=0 a3=7f97f6027608 items=1 ppid=2746 pid=2754 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4 comm="python3" exe="/root/.pyenv/versions/3.11.7/bin/python3.11" key="hsp-exp3"${GS}ARCH=x86_64 SYSCALL=fchmod AUID="alice" UID="root"`,
  'type=CWD msg=audit(1796009395.899:21): cwd="/tmp/hsp-exp"',
  `type=PATH msg=audit(1796009395.899:21): item=0 name=(null) inode=2147068 dev=fe:00 mode=0100640 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0${OWNERS}`,
  'type=PROCTITLE msg=audit(1796009395.899:21): proctitle=2F726F6F742F2E7079656E762F76657273696F6E732F332E31312E372F62696E2F707974686F6E33002D63',
];

/** os.chmod('h', dir_fd=d) with the working directory elsewhere: the relative name is not under the cwd. */
const DIRFD_CHMOD = [
  `type=SYSCALL msg=audit(1796009396.091:23): arch=c000003e syscall=268 success=yes exit=0 a0=3 a1=7f8245351c70 a2=180 a3=7f8244c31fb8 items=1 ppid=2746 pid=2803 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="python3" exe="/usr/bin/python3" key="hsp-exp3"${ENRICHED_IDS.replace('@CALL@', 'fchmodat')}`,
  'type=CWD msg=audit(1796009396.091:23): cwd="/tmp"',
  `type=PATH msg=audit(1796009396.091:23): item=0 name="h" inode=2147068 dev=fe:00 mode=0100640 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0${OWNERS}`,
  'type=PROCTITLE msg=audit(1796009396.091:23): proctitle="python3"',
];

/** `/usr/bin/true "hello world" --flag 'q"uote'` seen by an execute watch. */
const EXEC = [
  `type=SYSCALL msg=audit(1796010144.155:52): arch=c000003e syscall=59 success=yes exit=0 a0=55bb9e9d6630 a1=55bb9e9c1960 a2=55bb9e9c9340 a3=258b7dbcf786c34e items=2 ppid=5159 pid=5164 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="true" exe="/usr/bin/true" key="hsp-x"${ENRICHED_IDS.replace('@CALL@', 'execve')}`,
  'type=BPRM_FCAPS msg=audit(1796010144.155:52): fver=0 fp=0 fi=0 fe=0 old_pp=000001fffeffffff old_pi=0 old_pe=000001fffeffffff old_pa=0 pp=000001fffeffffff pi=0 pe=000001fffeffffff pa=0 frootid=0',
  'type=EXECVE msg=audit(1796010144.155:52): argc=4 a0="/usr/bin/true" a1=68656C6C6F20776F726C64 a2="--flag" a3=7122756F7465',
  'type=CWD msg=audit(1796010144.155:52): cwd="/work/main"',
  `type=PATH msg=audit(1796010144.155:52): item=0 name="/usr/bin/true" inode=260958 dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0${OWNERS}`,
  'type=PROCTITLE msg=audit(1796010144.155:52): proctitle=2F7573722F62696E2F747275650068656C6C6F20776F726C64002D2D666C6167007122756F7465',
];

function event(lines: string[]): AuditEvent {
  const records = lines.map((l) => parseAuditLine(l));
  assert.ok(records.every((r) => r !== undefined));
  const e = assembleEvent(records as NonNullable<(typeof records)[number]>[]);
  assert.ok(e);
  return e;
}

describe('audit records', () => {
  it('reads the header, quoted and hex-encoded fields, and the enriched names', () => {
    const r = parseAuditLine(CREATE[4] as string);
    assert.equal(r?.type, 'PROCTITLE');
    assert.equal(r?.time, 1796009366907);
    assert.equal(r?.serial, 10);
    assert.equal(r?.fields.get('proctitle'), 'bash\0/dev/fd/3');
    const sys = parseAuditLine(CREATE[0] as string);
    assert.equal(sys?.fields.get('exe'), '/usr/bin/bash');
    assert.equal(sys?.fields.get('a1'), '55bb9e9b6780', 'syscall arguments are numbers, never decoded');
    assert.equal(sys?.enriched.get('SYSCALL'), 'openat');
    assert.equal(parseAuditLine('not an audit line'), undefined);
    assert.equal(parseAuditLine(`type=PATH msg=audit(1.000:1): name="${'x'.repeat(70_000)}"`), undefined, 'over-long lines are not records');
  });

  it('an openat creating a file: process, ids, working directory, the absolute name', () => {
    const e = event(CREATE);
    assert.deepEqual(
      { pid: e.pid, ppid: e.ppid, uid: e.uid, user: e.user, auid: e.auid, exe: e.exe, key: e.key, syscall: e.syscall, argv: e.argv },
      { pid: 1348, ppid: 1347, uid: 0, user: 'root', auid: undefined, exe: '/usr/bin/bash', key: 'hsp-exp', syscall: 'openat', argv: ['bash', '/dev/fd/3'] },
    );
    assert.deepEqual(eventPaths(e), ['/tmp/hsp-exp/f']);
    assert.equal(e.paths[1]?.dev, 65024, 'fe:00 is st_dev 65024');
  });

  it('a rename over the path: relative names joined to the working directory and to the parents', () => {
    const e = event(RENAME);
    assert.deepEqual(eventPaths(e).sort(), ['/tmp/hsp-exp/f', '/tmp/hsp-exp/g']);
    assert.deepEqual(e.paths.filter((p) => p.nametype === 'DELETE').map((p) => p.inode), [2146429, 2146428]);
    assert.deepEqual(e.argv, ['mv', 'g', 'f']);
  });

  it('a call through a file descriptor names no path, only the inode; the login user comes from the enriched AUID', () => {
    const e = event(FCHMOD);
    assert.deepEqual(eventPaths(e), []);
    assert.equal(e.paths[0]?.inode, 2147068);
    assert.deepEqual([e.auid, e.loginUser], [1000, 'alice']);
  });

  it('a name relative to a directory descriptor is not joined to the unrelated working directory', () => {
    const e = event(DIRFD_CHMOD);
    assert.equal(e.cwdRelative, false);
    assert.deepEqual(eventPaths(e), []);
    assert.deepEqual(e.argv, ['python3']);
  });

  it('execve: the full argument list, hex-encoded arguments decoded', () => {
    assert.deepEqual(event(EXEC).argv, ['/usr/bin/true', 'hello world', '--flag', 'q"uote']);
  });

  it('RAW format: no enriched names; x86_64 syscall numbers are named', () => {
    const raw = (CREATE[0] as string).slice(0, (CREATE[0] as string).indexOf(GS));
    const e = event([raw, ...CREATE.slice(1)]);
    assert.equal(e.syscall, 'openat');
    assert.equal(e.user, undefined);
    assert.equal(e.cwdRelative, true);
  });

  it('groups interleaved records by serial, ends an event at PROCTITLE, and completes a stray one after a while', () => {
    const got: number[] = [];
    const a = new EventAssembler((e) => got.push(e.serial), 1024, 2000);
    const interleaved = [CREATE[0], RENAME[0], CREATE[1], RENAME[1], CREATE[2], CREATE[3], RENAME[2], CREATE[4], RENAME[3]];
    for (const l of interleaved) a.push(parseAuditLine(l as string) as NonNullable<ReturnType<typeof parseAuditLine>>);
    assert.deepEqual(got, [10]);
    a.expire(1796009366907 + 1999);
    assert.deepEqual(got, [10]);
    a.expire(1796009366907 + 2001);
    assert.deepEqual(got, [10, 12], 'the rename whose PROCTITLE never came');
    const bounded = new EventAssembler((e) => got.push(e.serial), 2, 60_000);
    for (let i = 0; i < 5; i++) bounded.push(parseAuditLine((CREATE[0] as string).replace(':10)', `:${100 + i})`)) as NonNullable<ReturnType<typeof parseAuditLine>>);
    assert.deepEqual(got.slice(2), [100, 101, 102], 'at most maxPending stay open');
  });

  it('st_dev of large device numbers matches glibc makedev', () => {
    assert.equal(auditDev('103:02'), 259 * 256 + 2);
    assert.equal(auditDev('08:12'), 8 * 256 + 18);
    assert.equal(auditDev('00:1a3'), (0x1a3 & 0xff) + (0x1a3 & ~0xff) * 4096);
    assert.equal(auditDev('zz'), undefined);
  });
});

describe('units and services', () => {
  it('the unit of a process from its cgroup: the innermost service or scope', () => {
    assert.equal(unitFromCgroup('0::/system.slice/nginx.service\n'), 'nginx.service');
    assert.equal(unitFromCgroup('0::/user.slice/user-1000.slice/session-3.scope\n'), 'session-3.scope');
    assert.equal(unitFromCgroup('0::/system.slice/docker.service/payload\n'), 'docker.service');
    assert.equal(unitFromCgroup('9:name=systemd:/app.slice/run-u21.service\n1:cpu:/app.slice\n0::/app.slice/run-u21.service\n'), 'run-u21.service');
    assert.equal(unitFromCgroup('9:name=systemd:/app.slice/x.service\n0::/\n'), 'x.service', 'hybrid hierarchy: the named one');
    assert.equal(unitFromCgroup('0::/\n'), undefined);
    assert.equal(unitFromCgroup('0::/user.slice\n'), undefined, 'slices hold no processes of their own');
  });

  it('a systemctl run changes a unit when its verb makes that change and it names the unit', () => {
    assert.equal(systemctlChanges(['systemctl', 'stop', 'nginx'], 'nginx.service', 'active'), true);
    assert.equal(systemctlChanges(['systemctl', '--user', 'stop', 'nginx.service'], 'nginx.service', 'active'), true);
    assert.equal(systemctlChanges(['systemctl', 'stop', 'nginx-extra'], 'nginx.service', 'active'), false);
    assert.equal(systemctlChanges(['systemctl', 'disable', 'nginx'], 'nginx.service', 'active'), false);
    assert.equal(systemctlChanges(['systemctl', 'disable', '--now', 'nginx'], 'nginx.service', 'active'), true);
    assert.equal(systemctlChanges(['systemctl', 'disable', 'nginx'], 'nginx.service', 'enabled'), true);
    assert.equal(systemctlChanges(['systemctl', 'mask', 'nginx.service'], 'nginx.service', 'masked'), true);
    assert.equal(systemctlChanges(['systemctl', 'status', 'nginx.service'], 'nginx.service', 'active'), false);
  });

  it('what systemd records, in plain words, including what it does not record', () => {
    const f = (o: Partial<UnitFacts>): UnitFacts => ({
      loadState: 'loaded',
      activeState: 'failed',
      subState: 'failed',
      result: 'success',
      execMainCode: 0,
      execMainStatus: 0,
      execMainPid: 0,
      unitFileState: 'enabled',
      ...o,
    });
    assert.deepEqual(fromFacts('a.service', 'active', f({ result: 'signal', execMainCode: 2, execMainStatus: 9, execMainPid: 42 })), {
      source: 'journal',
      detail: 'the main process (pid 42) was killed by signal KILL; the kernel and systemd do not record who sent it',
    });
    assert.deepEqual(fromFacts('a.service', 'active', f({ result: 'exit-code', execMainCode: 1, execMainStatus: 3, execMainPid: 42 })), {
      source: 'journal',
      unit: 'a.service',
      pid: 42,
      detail: 'the main process (pid 42) exited by itself with status 3',
    });
    assert.match(fromFacts('a.service', 'active', f({ activeState: 'inactive' })).detail ?? '', /stopped through systemd .* does not record who asked/);
    assert.match(fromFacts('a.service', 'enabled', f({ unitFileState: 'disabled' })).detail ?? '', /now disabled; systemd does not record who/);
  });
});
