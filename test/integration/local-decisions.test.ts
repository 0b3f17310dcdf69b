// A host without a controller answers its own escalations (escalations, approve, reject), forgets baselines, and keeps a
// drift that waits for a human waiting across version changes — with the daemon running (over its control socket) and
// without one (on the cache). Every answer is audited with the local user as author.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AgentStore } from '../../agent/store/store.js';
import { runAgent, startAgentDaemon, tempDir, waitFor, writeBaseline, type AuditLine, type DaemonProcess } from '../helpers/agent.js';

interface Escalation {
  id: number;
  resource: string;
  baseline: string;
  version: number;
  repeats: number;
  observed: Record<string, unknown> | null;
  managedBy: string;
}

const AS_ALICE = { env: { SUDO_USER: 'alice' } };

describe('agent: local escalations, decisions and forget', function () {
  this.timeout(60_000);
  let t: { dir: string; cleanup: () => void };
  let stateDir: string;
  let daemon: DaemonProcess | undefined;
  beforeEach(() => {
    t = tempDir('hs-decide-');
    stateDir = path.join(t.dir, 'state');
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    t.cleanup();
  });

  const common = (): string[] => ['--state-dir', stateDir, '--config', '/dev/null'];
  const baseline = (name: string, risk: string, files: Record<string, string>): string =>
    writeBaseline(
      t.dir,
      name,
      `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: ${name}\nspec:\n  policy: { risk: ${risk} }\n  resources:\n${Object.entries(files)
        .map(([f, c]) => `    - file: ${f}\n      content: "${c}\\n"\n`)
        .join('')}`,
    );
  const audit = async (): Promise<AuditLine[]> => {
    const r = await runAgent(['audit', '--json', ...common()]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { entries: AuditLine[] }).entries;
  };
  const escalations = async (): Promise<Escalation[]> => {
    const r = await runAgent(['escalations', '--json', ...common()]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { escalations: Escalation[] }).escalations;
  };
  const start = async (args: string[]): Promise<DaemonProcess> => {
    daemon = startAgentDaemon([...common(), ...args]);
    await daemon.ready();
    return daemon;
  };

  it('apply on a fresh host escalates creating a high-risk file; escalations lists it; approve (no daemon) repairs it once, audited with the author', async () => {
    const f = path.join(t.dir, 'sshd_config');
    const b = baseline('ssh', 'high', { [f]: 'PermitRootLogin no' });
    const apply = await runAgent(['apply', '--baseline', b, ...common()]);
    assert.equal(apply.code, 2, apply.stderr);
    assert.equal(existsSync(f), false, 'creation of a high-risk file waits for a human');

    const [e, ...more] = await escalations();
    assert.equal(more.length, 0);
    assert.deepEqual([e?.resource, e?.baseline, e?.version, e?.repeats, e?.managedBy], [`file:${f}`, 'ssh', 1, 0, 'local']);
    assert.equal(e?.observed?.exists, false);
    const human = await runAgent(['escalations', ...common()]);
    assert.match(human.stdout, /^ID +RESOURCE +BASELINE +OPENED +REPEATS/m);
    assert.doesNotMatch(human.stdout, /[ \t]$/m, 'no trailing blanks');

    // A second apply does not sneak the repair in: the drift still waits.
    assert.equal((await runAgent(['apply', '--baseline', b, ...common()])).code, 2);
    assert.equal(existsSync(f), false);
    const again = await escalations();
    assert.deepEqual(again.map((x) => x.id), [e?.id], 'the same escalation, not a second one');

    const approve = await runAgent(['approve', String(e?.id), ...common()], AS_ALICE);
    assert.equal(approve.code, 0, approve.stderr);
    assert.match(approve.stdout, new RegExp(`escalation ${e?.id} approved by alice: file:${f} repaired`));
    assert.equal(readFileSync(f, 'utf8'), 'PermitRootLogin no\n');
    const records = (await audit()).filter((r) => r.resource === `file:${f}`).map((r) => `${r.event}/${r.trigger}`);
    assert.deepEqual(records.slice(-3), ['approved/manual', 'drift_detected/manual', 'repaired/manual']);
    const approved = (await audit()).find((r) => r.event === 'approved');
    assert.match(approved?.detail ?? '', /approved by alice on the host/);
    assert.deepEqual(await escalations(), []);
    const twice = await runAgent(['approve', String(e?.id), ...common()]);
    assert.equal(twice.code, 1);
    assert.match(twice.stderr, /no open escalation \d+ on this host \(homeostat-agent escalations lists them\)/);
  });

  it('with the daemon running: reject goes through its control socket and the drift is left alone; approve repairs', async () => {
    const a = path.join(t.dir, 'a.conf');
    const c = path.join(t.dir, 'c.conf');
    const b = baseline('risky', 'critical', { [a]: 'a', [c]: 'c' });
    writeFileSync(a, 'a\n');
    writeFileSync(c, 'c\n');
    const d = await start(['--baseline', b]);
    assert.equal(statSync(path.join(stateDir, 'control.sock')).mode & 0o777, 0o600, 'the control socket is root-only');
    writeFileSync(a, 'hand edit\n');
    writeFileSync(c, 'hand edit\n');
    await waitFor(async () => (await escalations()).length === 2, 10_000, 'two escalations');
    assert.match(d.stderr, new RegExp(`"level":40[^\\n]*"resource":"file:${a}"[^\\n]*"msg":"escalated"`), 'escalations are logged at warn');
    const [ea, ec] = await escalations();
    assert.equal(ea?.resource, `file:${a}`);

    const noReason = await runAgent(['reject', String(ea?.id), ...common()]);
    assert.equal(noReason.code, 1);
    assert.match(noReason.stderr, /required option '--reason <text>'/);
    const reject = await runAgent(['reject', String(ea?.id), '--reason', 'vendor hotfix', '--for', '1h', ...common()], AS_ALICE);
    assert.equal(reject.code, 0, reject.stderr);
    assert.match(d.stderr, /"op":"reject","by":"alice"[^\n]*"local control request"/, 'the daemon carried it out');
    const approve = await runAgent(['approve', String(ec?.id), ...common()], AS_ALICE);
    assert.equal(approve.code, 0, approve.stderr);
    assert.equal(readFileSync(c, 'utf8'), 'c\n');
    // A later known event: c tampered again is escalated again (approval answers one drift); a stays as accepted.
    writeFileSync(c, 'again\n');
    await waitFor(async () => (await escalations()).some((e) => e.resource === `file:${c}`), 10_000, 'c escalated again');
    assert.equal(readFileSync(a, 'utf8'), 'hand edit\n');
    const rejected = (await audit()).find((r) => r.event === 'rejected');
    assert.match(rejected?.detail ?? '', /drift accepted until .* by alice on the host: vendor hotfix \(escalation \d+\)/);
    assert.deepEqual((await escalations()).map((e) => e.resource), [`file:${c}`]);
  });

  it('a drift waiting for a human keeps waiting when a reload brings a version that would repair it; gone, its escalation is resolved', async () => {
    const f = path.join(t.dir, 'sshd_config');
    writeFileSync(f, 'v\n');
    const file = baseline('web', 'high', { [f]: 'v' });
    const d = await start(['--baseline', file]);
    writeFileSync(f, 'hand edit\n');
    await waitFor(async () => (await escalations()).length === 1, 10_000, 'escalated under v1');
    // v2 lowers the risk, as a rollback to an older version would: its own decision would be to repair.
    baseline('web', 'medium', { [f]: 'v' });
    d.child.kill('SIGHUP');
    await waitFor(async () => (await audit()).some((r) => r.event === 'escalated' && (r as AuditLine & { version: number }).version === 2), 10_000, 'the drift seen again under v2');
    assert.equal(readFileSync(f, 'utf8'), 'hand edit\n', 'not repaired without a human');
    const all = await audit();
    const activated = all.find((r) => r.event === 'baseline_activated' && r.detail?.startsWith('web v2'));
    assert.equal(activated?.trigger, 'reload', 'a SIGHUP reload is recorded as reload');
    const under2 = all.filter((r) => r.resource === `file:${f}` && (r.seq ?? 0) > (activated?.seq ?? 0));
    assert.deepEqual(under2.map((r) => `${r.event}/${r.trigger}`), ['drift_detected/reload', 'escalated/reload'], 'baseline_activated comes before the drift it causes');
    assert.match(under2[1]?.detail ?? '', /escalated under web v1 and not answered yet: it waits for an operator/);
    assert.equal(all.filter((r) => r.event === 'repaired').length, 0);
    const [e] = await escalations();
    assert.deepEqual([e?.version, e?.repeats], [2, 1], 'the escalation shows the latest version and counts the repeat');

    // Put back by hand: nothing is left to decide, and the record says why.
    writeFileSync(f, 'v\n');
    await waitFor(async () => (await audit()).some((r) => r.event === 'escalation_resolved'), 10_000, 'escalation resolved');
    const resolved = (await audit()).find((r) => r.event === 'escalation_resolved');
    assert.match(resolved?.detail ?? '', /the drift escalated under web v1 is gone: compliant under web v2/);
    assert.deepEqual(await escalations(), []);
  });

  it('an escalation from an earlier run keeps waiting after a restart with a version that would repair it', async () => {
    const f = path.join(t.dir, 'conf');
    const b = baseline('web', 'high', { [f]: 'x' });
    assert.equal((await runAgent(['apply', '--baseline', b, ...common()])).code, 2);
    baseline('web', 'low', { [f]: 'x' });
    const d = await start(['--baseline', b]);
    assert.equal(existsSync(f), false, 'the start-up pass left it for the human');
    assert.match(d.stderr, /escalated drifts wait for a human/);
    assert.equal((await escalations())[0]?.version, 2);
  });

  it('forget with the daemon running: the baseline is no longer enforced, its cache dropped, audited; a configured file is pointed out', async () => {
    const gone = path.join(t.dir, 'gone');
    const kept = path.join(t.dir, 'kept');
    const fa = baseline('alpha', 'low', { [gone]: 'a' });
    const fb = baseline('beta', 'low', { [kept]: 'b' });
    const d = await start(['--baseline', fa, '--baseline', fb]);
    const forget = await runAgent(['forget', 'alpha', ...common(), '--baseline', fa], AS_ALICE);
    assert.equal(forget.code, 0, forget.stderr);
    assert.match(forget.stdout, /alpha forgotten by alice from this host's own baselines: no longer enforced; cached version\(s\) 1 dropped/);
    assert.match(forget.stderr, /still defines alpha and is configured: it is enforced again at the next reload/);
    // A later known event: beta's file repaired after both are tampered with; alpha's is left as it is.
    writeFileSync(gone, 'tampered\n');
    writeFileSync(kept, 'tampered\n');
    await waitFor(() => readFileSync(kept, 'utf8') === 'b\n', 10_000, 'beta repaired');
    await waitFor(async () => (await audit()).some((r) => r.resource === `file:${kept}` && r.event === 'repaired' && r.trigger === 'watch'), 10_000, 'beta repair recorded');
    assert.equal(readFileSync(gone, 'utf8'), 'tampered\n');
    const all = await audit();
    const forgotten = all.find((r) => r.event === 'baseline_forgotten');
    assert.match(forgotten?.detail ?? '', /^alpha v1 \(local\) forgotten by alice on the host/);
    assert.equal(all.filter((r) => r.resource === `file:${gone}` && r.seq > (forgotten?.seq ?? 0)).length, 0, 'nothing recorded for the forgotten file');
    const status = JSON.parse((await runAgent(['status', '--json', ...common()])).stdout) as { baselines: { name: string }[] };
    assert.deepEqual(status.baselines.map((x) => x.name), ['beta']);
    assert.match(d.stderr, /"op":"forget"/);
  });

  it('forget refuses a name both this host and a controller hold, with a hint; --source says which (no daemon)', async () => {
    const f = path.join(t.dir, 'w');
    assert.equal((await runAgent(['apply', '--baseline', baseline('web', 'low', { [f]: 'w' }), ...common()])).code, 0);
    const store = AgentStore.open(stateDir);
    store.putBaseline({ name: 'web', sha256: 'f'.repeat(64), text: 'x', sources: {}, origin: 'controller', version: 3, signedBy: 'key1' });
    store.close();
    const both = await runAgent(['forget', 'web', ...common()]);
    assert.equal(both.code, 1);
    assert.match(both.stderr, /'web' is held from the controller \(signing key key1\) \(version 3; none active\) and locally \(version 1; v1 active\): pass --source local or --source controller/);
    const one = await runAgent(['forget', 'web', '--source', 'controller', ...common()], AS_ALICE);
    assert.equal(one.code, 0, one.stderr);
    const reopened = AgentStore.open(stateDir, { readonly: true });
    try {
      assert.deepEqual(reopened.storedVersions('web').map((h) => `${h.source}:${h.versions.join(',')}`), ['local:1']);
    } finally {
      reopened.close();
    }
    const missing = await runAgent(['forget', 'nope', ...common()]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no baseline 'nope' in this agent's cache/);
  });

  it('a failed repair is retried with trigger retry and logged at warn', async () => {
    const f = path.join(t.dir, 'v');
    writeFileSync(f, 'old\n');
    const b = writeBaseline(t.dir, 'val', `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: val\nspec:\n  resources:\n    - file: ${f}\n      content: "new\\n"\n      validate: "/bin/false %s"\n`);
    const d = await start(['--baseline', b]);
    await waitFor(async () => (await audit()).some((r) => r.event === 'repair_failed' && r.trigger === 'retry'), 15_000, 'a retry recorded as retry');
    assert.equal((await audit()).filter((r) => r.trigger === 'poll').length, 0);
    assert.match(d.stderr, new RegExp(`"level":40[^\\n]*"resource":"file:${f}"[^\\n]*"msg":"repair failed"`));
  });
});
