// The agent heals files: every drift kind repaired and verified by the real daemon on real files, with the audit to prove it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, openSync, writeSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync, lstatSync } from 'node:fs';
import path from 'node:path';
import { AgentStore } from '../../agent/store/store.js';
import type { AuditEntry } from '../../agent/store/types.js';
import { runAgent, startAgentDaemon, tempDir, waitFor, writeBaseline, type DaemonProcess } from '../helpers/agent.js';

function audit(stateDir: string): AuditEntry[] {
  const store = AgentStore.open(stateDir, { readonly: true });
  try {
    return store.queryAudit({});
  } finally {
    store.close();
  }
}

function events(stateDir: string, resource: string): string[] {
  return audit(stateDir)
    .filter((e) => e.resource === resource)
    .map((e) => e.event);
}

const read = (p: string): string => readFileSync(p, 'utf8');

/** Rewrites a file in place with one write(2) of as many bytes as it has: one event, and never a half-written state. */
function tamperInPlace(p: string, text: string): void {
  assert.equal(Buffer.byteLength(text), statSync(p).size, 'an in-place tampering keeps the size');
  const fd = openSync(p, 'r+');
  try {
    writeSync(fd, text, 0);
  } finally {
    closeSync(fd);
  }
}

/** Replaces a file's content in one step (a sibling renamed over it), so no reader ever sees a state in between. */
function replaceContent(p: string, text: string): void {
  const tmp = `${p}.tamper`;
  writeFileSync(tmp, text);
  renameSync(tmp, p);
}
const modeOf = (p: string): number => statSync(p).mode & 0o7777;

describe('file healing (daemon)', function () {
  this.timeout(60_000);
  let t: { dir: string; cleanup: () => void };
  let root: string;
  let stateDir: string;
  let daemon: DaemonProcess | undefined;

  const motd = (): string => path.join(root, 'etc/motd');
  const app = (): string => path.join(root, 'etc/app/app.conf');

  function baseline(extra = ''): string {
    return writeBaseline(
      t.dir,
      'files',
      `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: files
spec:
  policy:
    flap: { maxRepairs: 20, window: 10m }
  resources:
    - file: ${motd()}
      content: "Authorized use only\\n"
      mode: "0644"
      owner: root
      group: root
    - directory: ${path.join(root, 'etc/app')}
      mode: "0755"
    - file: ${app()}
      content: "listen = 8080\\n"
      mode: "0600"
    - file: ${path.join(root, 'etc/cron.d/legacy-job')}
      ensure: absent
${extra}`,
    );
  }

  beforeEach(() => {
    t = tempDir();
    root = path.join(t.dir, 'root');
    stateDir = path.join(t.dir, 'state');
    mkdirSync(path.join(root, 'etc/cron.d'), { recursive: true });
  });

  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    t.cleanup();
  });

  async function start(file = baseline()): Promise<DaemonProcess> {
    daemon = startAgentDaemon(['--baseline', file, '--state-dir', stateDir]);
    await daemon.ready();
    await waitFor(() => existsSync(motd()) && existsSync(app()), 10_000, 'initial convergence');
    return daemon;
  }

  /** Waits until `check` holds and the resource has `count` repairs beyond the one that created it at start-up. */
  async function expectRepaired(resource: string, check: () => boolean, count = 1): Promise<void> {
    try {
      await waitFor(() => check() && events(stateDir, resource).filter((e) => e === 'repaired').length >= count + 1, 10_000, `${resource} repaired`);
    } catch (err) {
      throw new Error(`${String(err)}; audit: ${events(stateDir, resource).join(', ')}`);
    }
  }

  it('converges at start-up, recording the missing files as drift found at start-up', async () => {
    await start();
    assert.equal(read(motd()), 'Authorized use only\n');
    assert.equal(modeOf(motd()), 0o644);
    assert.equal(modeOf(app()), 0o600);
    const first = audit(stateDir).find((e) => e.resource === `file:${motd()}` && e.event === 'drift_detected');
    assert.equal(first?.trigger, 'startup');
  });

  it('repairs changed content, mode, owner, deletion, replacement by rename and a planted symlink', async () => {
    await start();
    const id = `file:${motd()}`;
    // Each tampering is one change the kernel reports as one event, so each is exactly one drift.
    tamperInPlace(motd(), 'Unauthorised use ok\n');
    await expectRepaired(id, () => read(motd()) === 'Authorized use only\n', 1);

    chmodSync(motd(), 0o666);
    await expectRepaired(id, () => modeOf(motd()) === 0o644, 2);

    chownSync(motd(), 65534, 65534);
    await expectRepaired(id, () => statSync(motd()).uid === 0 && statSync(motd()).gid === 0, 3);

    unlinkSync(motd());
    await expectRepaired(id, () => existsSync(motd()) && read(motd()) === 'Authorized use only\n', 4);

    const other = path.join(root, 'etc/motd.new');
    writeFileSync(other, 'replaced by rename\n');
    renameSync(other, motd());
    await expectRepaired(id, () => read(motd()) === 'Authorized use only\n', 5);

    // A symlink made beside it and renamed over it: planted in one step, as an attacker would.
    const secret = path.join(t.dir, 'secret');
    writeFileSync(secret, 'do not touch\n');
    const link = path.join(root, 'etc/motd.link');
    symlinkSync(secret, link);
    renameSync(link, motd());
    await expectRepaired(id, () => !lstatSync(motd()).isSymbolicLink() && read(motd()) === 'Authorized use only\n', 6);
    assert.equal(read(secret), 'do not touch\n', 'the symlink target must never be written');

    const ev = events(stateDir, id);
    assert.equal(ev.filter((e) => e === 'drift_detected').length, 7, 'each drift detected once');
    assert.equal(ev.filter((e) => e === 'repaired').length, 7, 'each drift repaired once');
    assert.ok(!ev.includes('repair_failed'));
    // The agent's own writes do not come back as drift. A last drift, made after all of them, is repaired after anything
    // they could have caused: then the count is exact.
    chmodSync(motd(), 0o600);
    await expectRepaired(id, () => modeOf(motd()) === 0o644, 7);
    assert.equal(events(stateDir, id).filter((e) => e === 'repaired').length, 8, 'the start-up creation, six repairs and the last one');
  });

  it('repairs a file whose parent directory was deleted, and a directory re-created with the wrong mode', async () => {
    await start();
    const dir = path.join(root, 'etc/app');
    // `rm -r` would race with the agent re-creating the file inside; moving the folder away removes it in one step.
    const remove = (n: number): void => {
      const trash = path.join(t.dir, `trash-${n}`);
      renameSync(dir, trash);
      rmSync(trash, { recursive: true });
    };
    remove(1);
    await expectRepaired(`file:${app()}`, () => existsSync(app()) && read(app()) === 'listen = 8080\n');
    await waitFor(() => modeOf(dir) === 0o755, 10_000, 'directory mode');
    // deleted again and re-created empty by someone else: the file comes back too
    remove(2);
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch {
      // The agent was faster and re-created it already: give it the wrong mode instead.
      chmodSync(dir, 0o700);
    }
    await waitFor(() => existsSync(app()) && modeOf(dir) === 0o755, 10_000, 'file under re-created directory');
  });

  it('watches a file whose parent folders did not exist at start-up, once the agent has created them', async () => {
    const deep = path.join(root, 'srv/new/deeper/app.env');
    const file = baseline(`    - file: ${deep}
      content: "MODE=prod\\n"
      mode: "0644"
`);
    await start(file);
    await waitFor(() => existsSync(deep), 10_000, 'deep file created');
    writeFileSync(deep, 'MODE=debug\n');
    await expectRepaired(`file:${deep}`, () => read(deep) === 'MODE=prod\n', 1);
    chmodSync(deep, 0o600);
    await waitFor(() => events(stateDir, `file:${deep}`).filter((e) => e === 'repaired').length >= 3, 10_000, 'mode drift seen');
  });

  it('serves Prometheus metrics with --metrics-listen', async () => {
    const port = 19_000 + Math.floor(Math.random() * 1000);
    daemon = startAgentDaemon(['--baseline', baseline(), '--state-dir', stateDir, '--metrics-listen', `127.0.0.1:${port}`]);
    await daemon.ready();
    writeFileSync(motd(), 'drift\n');
    await expectRepaired(`file:${motd()}`, () => read(motd()) === 'Authorized use only\n', 1);
    const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(body, /^homeostat_agent_resources 4$/m);
    assert.match(body, /^homeostat_agent_events_total\{event="repaired"\} [1-9]/m);
    assert.match(body, /^homeostat_agent_engine_count\{counter="repairs"\} [1-9]/m);
  });

  it('removes a file that must be absent when it appears', async () => {
    await start();
    const legacy = path.join(root, 'etc/cron.d/legacy-job');
    writeFileSync(legacy, '* * * * * root /bin/true\n');
    await waitFor(() => !existsSync(legacy) && events(stateDir, `file:${legacy}`).includes('repaired'), 10_000, 'legacy job removed');
  });

  it('records drift that happened while the agent was not running, with trigger startup', async () => {
    const d = await start();
    assert.equal(await d.stop(), 0, 'SIGTERM exits 0');
    daemon = undefined;
    writeFileSync(motd(), 'edited while the agent was down\n');
    await start();
    await waitFor(() => read(motd()) === 'Authorized use only\n', 10_000, 'startup repair');
    const drifts = audit(stateDir).filter((e) => e.resource === `file:${motd()}` && e.event === 'drift_detected');
    const last = drifts[drifts.length - 1];
    assert.equal(last?.trigger, 'startup');
    assert.match(last?.diff ?? '', /-edited while the agent was down/);
  });

  it('monitor mode detects and records drift but changes nothing', async () => {
    const file = writeBaseline(
      t.dir,
      'monitor',
      `apiVersion: homeostat/v1
kind: Baseline
metadata: { name: monitor }
spec:
  policy: { mode: monitor }
  resources:
    - file: ${motd()}
      content: "Authorized use only\\n"
`,
    );
    writeFileSync(motd(), 'Authorized use only\n');
    daemon = startAgentDaemon(['--baseline', file, '--state-dir', stateDir]);
    await daemon.ready();
    const id = `file:${motd()}`;
    replaceContent(motd(), 'changed\n');
    await waitFor(() => events(stateDir, id).includes('drift_detected'), 10_000, 'drift recorded');
    // A second drift is recorded only once the first has been dealt with: had it been repaired, that would show by now.
    replaceContent(motd(), 'changed again\n');
    await waitFor(() => events(stateDir, id).filter((e) => e === 'drift_detected').length === 2, 10_000, 'second drift recorded');
    assert.equal(read(motd()), 'changed again\n');
    assert.ok(!events(stateDir, id).includes('repaired'));
  });

  it('escalates high-risk drift instead of repairing it', async () => {
    const file = writeBaseline(
      t.dir,
      'risky',
      `apiVersion: homeostat/v1
kind: Baseline
metadata: { name: risky }
spec:
  resources:
    - file: ${motd()}
      content: "Authorized use only\\n"
      risk: high
`,
    );
    writeFileSync(motd(), 'Authorized use only\n');
    daemon = startAgentDaemon(['--baseline', file, '--state-dir', stateDir]);
    await daemon.ready();
    replaceContent(motd(), 'changed by a human\n');
    await waitFor(() => events(stateDir, `file:${motd()}`).includes('escalated'), 10_000, 'escalated');
    assert.equal(read(motd()), 'changed by a human\n');
    // One standing drift is escalated once, however many events it causes; a different drift after them is escalated
    // in its turn, after whatever those events did.
    replaceContent(motd(), 'changed by a human\n');
    replaceContent(motd(), 'changed by a human\n');
    replaceContent(motd(), 'changed by another human\n');
    await waitFor(() => events(stateDir, `file:${motd()}`).filter((e) => e === 'escalated').length >= 2, 10_000, 'the second drift escalated');
    assert.deepEqual(events(stateDir, `file:${motd()}`), ['drift_detected', 'escalated', 'drift_detected', 'escalated']);
    assert.equal(read(motd()), 'changed by another human\n');
  });

  it('stops fighting a flapping file: suppressed_flapping and escalated after maxRepairs', async () => {
    const file = writeBaseline(
      t.dir,
      'flappy',
      `apiVersion: homeostat/v1
kind: Baseline
metadata: { name: flappy }
spec:
  resources:
    - file: ${motd()}
      content: "Authorized use only\\n"
      flap: { maxRepairs: 3, window: 1h }
`,
    );
    const port = 19_000 + Math.floor(Math.random() * 1000);
    daemon = startAgentDaemon(['--baseline', file, '--state-dir', stateDir, '--metrics-listen', `127.0.0.1:${port}`]);
    await daemon.ready();
    const id = `file:${motd()}`;
    await waitFor(() => existsSync(motd()), 10_000, 'created');
    for (let i = 1; i <= 2; i++) {
      replaceContent(motd(), `fight number ${i}   \n`);
      await waitFor(() => read(motd()) === 'Authorized use only\n' && events(stateDir, id).filter((e) => e === 'repaired').length >= i + 1, 10_000, `repair ${i}`);
    }
    replaceContent(motd(), 'fight number 3   \n');
    await waitFor(() => events(stateDir, id).includes('suppressed_flapping') && events(stateDir, id).includes('escalated'), 10_000, 'suppressed');
    assert.equal(read(motd()), 'fight number 3   \n');
    // Suppressed: another drift is looked at (the engine's count of finished reconciles moves) and left alone.
    const reconciles = async (): Promise<number> => Number(/^homeostat_agent_engine_count\{counter="reconciles"\} (\d+)$/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1]);
    const before = await reconciles();
    replaceContent(motd(), 'fight number 4   \n');
    await waitFor(async () => (await reconciles()) > before, 10_000, 'the next drift looked at');
    assert.equal(read(motd()), 'fight number 4   \n');
    assert.equal(events(stateDir, id).filter((e) => e === 'repaired').length, 3, 'the creation and two repairs, no more');
  });

  it('rejects an invalid baseline on SIGHUP and keeps enforcing the last good one; a good one replaces it', async () => {
    const file = baseline();
    await start(file);
    writeFileSync(file, `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: files }\nspec:\n  resources:\n    - file: relative/path\n      content: x\n`);
    daemon?.child.kill('SIGHUP');
    await waitFor(() => audit(stateDir).some((e) => e.event === 'baseline_rejected'), 10_000, 'baseline_rejected');
    const rejected = audit(stateDir).find((e) => e.event === 'baseline_rejected');
    assert.match(rejected?.detail ?? '', /files\.yaml:6:\d+/);
    writeFileSync(motd(), 'drift after a bad reload\n');
    await waitFor(() => read(motd()) === 'Authorized use only\n', 10_000, 'old baseline still enforced');

    writeFileSync(file, `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: files }\nspec:\n  resources:\n    - file: ${motd()}\n      content: "version two\\n"\n`);
    daemon?.child.kill('SIGHUP');
    await waitFor(() => existsSync(motd()) && read(motd()) === 'version two\n', 10_000, 'new baseline enforced');
    const activations = audit(stateDir).filter((e) => e.event === 'baseline_activated');
    assert.equal(activations.length, 2);
    assert.equal(activations[1]?.version, 2);
  });

  it('records a failed repair with its cause, keeps running, and keeps enforcing everything else', async () => {
    const file = baseline(`    - file: ${path.join(root, 'etc/owned')}
      content: "x\\n"
      owner: no-such-user-hs
`);
    await start(file);
    const owned = `file:${path.join(root, 'etc/owned')}`;
    await waitFor(() => audit(stateDir).some((e) => e.resource === owned && e.event === 'repair_failed'), 10_000, 'repair_failed');
    const failed = audit(stateDir).find((e) => e.resource === owned && e.event === 'repair_failed');
    assert.match(failed?.detail ?? '', /HS_HOST_NO_SUCH_USER.*no-such-user-hs/);
    writeFileSync(motd(), 'still enforced?\n');
    await expectRepaired(`file:${motd()}`, () => read(motd()) === 'Authorized use only\n', 1);
    assert.equal(daemon?.child.exitCode, null, 'daemon still running');
  });

  it('after a kill -9 in the middle of a repair, the next start removes the temporary file it left, and records it', async () => {
    const dir = path.join(root, 'etc');
    mkdirSync(dir, { recursive: true });
    writeFileSync(motd(), 'old\n');
    const pidFile = path.join(t.dir, 'validator.pid');
    // A validator that blocks: the repair stops after writing the new content to its temporary file.
    const slow = writeBaseline(
      t.dir,
      'slow',
      `apiVersion: homeostat/v1
kind: Baseline
metadata: { name: files }
spec:
  resources:
    - file: ${motd()}
      content: "Authorized use only\\n"
      validate: "/bin/sh -c 'echo $$ > ${pidFile}; exec sleep 600' sh %s"
`,
    );
    daemon = startAgentDaemon(['--baseline', slow, '--state-dir', stateDir]);
    await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '', 10_000, 'validator running');
    const temps = readdirSync(dir).filter((n) => /^\.motd\.homeostat-[0-9a-f]{12}$/.test(n));
    assert.equal(temps.length, 1, `one temporary file mid-write: ${readdirSync(dir).join(', ')}`);
    const leftover = path.join(dir, temps[0] as string);
    assert.equal(read(leftover), 'Authorized use only\n', 'the new content is written, not yet installed');
    assert.equal(read(motd()), 'old\n');
    await daemon.kill9();
    daemon = undefined;
    process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 'SIGKILL');
    assert.ok(existsSync(leftover), 'the kill left it behind');
    // What only looks like a leftover stays: another pattern, another owner, another link to it.
    const decoys = [path.join(dir, '.motd.homeostat-notours'), path.join(dir, '.motd.homeostat-0123456789ab'), path.join(dir, '.motd.homeostat-abcdefabcdef'), path.join(dir, '.other.homeostat-0123456789ab')];
    for (const d of decoys) writeFileSync(d, 'not the agent\'s\n');
    chownSync(decoys[1] as string, 65534, 65534);
    linkSync(decoys[2] as string, path.join(t.dir, 'second-link'));

    await start();
    await waitFor(() => !existsSync(leftover), 10_000, 'leftover removed');
    for (const d of decoys) assert.ok(existsSync(d), `${d} was removed`);
    const entries = audit(stateDir).filter((e) => e.resource === `file:${motd()}` && e.trigger === 'startup');
    const drift = entries.find((e) => e.event === 'drift_detected' && (e.detail ?? '').includes(temps[0] as string));
    assert.ok(drift, `the sweep is recorded: ${entries.map((e) => `${e.event} ${e.detail ?? ''}`).join(' | ')}`);
    assert.match(drift.detail ?? '', /leftovers: /);
    assert.ok(entries.some((e) => e.event === 'repaired' && e.seq > drift.seq));
    assert.equal(read(motd()), 'Authorized use only\n');
  });

  it('resolves owners and groups through NSS: a user and a group only a directory service knows (nss_wrapper)', async () => {
    // nss_wrapper stands in for LDAP or sssd: for the agent and what it runs, NSS answers from these files instead.
    const wrapper = '/usr/lib/x86_64-linux-gnu/libnss_wrapper.so';
    assert.ok(existsSync(wrapper), `${wrapper} is missing: install Debian's libnss-wrapper (.ci/run does)`);
    const passwd = path.join(t.dir, 'nss-passwd');
    const group = path.join(t.dir, 'nss-group');
    writeFileSync(passwd, `${readFileSync('/etc/passwd', 'utf8')}hs-ldap-user:x:4242:4343:directory user:/nonexistent:/usr/sbin/nologin\n`);
    writeFileSync(group, `${readFileSync('/etc/group', 'utf8')}hs-ldap-group:x:4343:\n`);
    assert.ok(!readFileSync('/etc/passwd', 'utf8').includes('hs-ldap-user'), 'the user is not a local one');
    const owned = path.join(root, 'etc/owned-by-ldap');
    const file = baseline(`    - file: ${owned}
      content: "x\\n"
      owner: hs-ldap-user
      group: hs-ldap-group
      mode: "0640"
`);
    daemon = startAgentDaemon(['--baseline', file, '--state-dir', stateDir], { env: { LD_PRELOAD: wrapper, NSS_WRAPPER_PASSWD: passwd, NSS_WRAPPER_GROUP: group } });
    await daemon.ready();
    const id = `file:${owned}`;
    await waitFor(() => existsSync(owned) && statSync(owned).uid === 4242, 10_000, 'created with the directory user as owner');
    assert.deepEqual([statSync(owned).uid, statSync(owned).gid], [4242, 4343]);
    chownSync(owned, 0, 0);
    await expectRepaired(id, () => statSync(owned).uid === 4242 && statSync(owned).gid === 4343, 1);
    const drift = audit(stateDir).filter((e) => e.resource === id && e.event === 'drift_detected').pop();
    assert.deepEqual([drift?.observed?.owner, drift?.desired?.owner, drift?.desired?.group], ['root', 'hs-ldap-user', 'hs-ldap-group']);
    const repaired = audit(stateDir).filter((e) => e.resource === id && e.event === 'repaired').pop();
    assert.deepEqual([repaired?.observed?.owner, repaired?.observed?.group], ['hs-ldap-user', 'hs-ldap-group'], 'ids read back are named through NSS too');
    assert.ok(!events(stateDir, id).includes('repair_failed'));
  });

  it('a validate command that refuses the content leaves the live file alone', async () => {
    const target = path.join(root, 'etc/ssh/sshd_config');
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, 'PermitRootLogin yes\n');
    const file = writeBaseline(
      t.dir,
      'validated',
      `apiVersion: homeostat/v1
kind: Baseline
metadata: { name: validated }
spec:
  resources:
    - file: ${target}
      content: "PermitRootLogin no\\n"
      validate: "grep -q '^Port ' %s"
`,
    );
    const res = await runAgent(['apply', '--baseline', file, '--state-dir', stateDir, '--json']);
    assert.equal(res.code, 2, res.stderr);
    const doc = JSON.parse(res.stdout) as { resources: { id: string; outcome: string; error?: { code: string } }[] };
    assert.equal(doc.resources[0]?.outcome, 'failed');
    assert.equal(doc.resources[0]?.error?.code, 'HS_VALIDATE_REJECTED');
    assert.equal(read(target), 'PermitRootLogin yes\n');
    assert.deepEqual(execFileSync('sh', ['-c', `ls -a ${path.dirname(target)}`]).toString().split('\n').filter((n) => n.includes('homeostat')), [], 'no temporary file left behind');
  });
});
