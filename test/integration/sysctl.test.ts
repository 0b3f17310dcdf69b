// The sysctl resource on real `net.*` keys inside network namespaces: drift by `sysctl -w` found and repaired from inside the
// namespace, missing, read-only and refused keys named in clear errors, odd whitespace in multi-value keys, and the drop-in.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { DEFAULT_POLICY, type Baseline } from '../../lib/baseline/types.js';
import { ManualClock } from '../../lib/clock.js';
import { silentLogger } from '../../lib/log.js';
import { Engine } from '../../agent/engine/engine.js';
import { HsError } from '../../lib/errors.js';
import { sysctlKind, DEFAULT_SYSCTL_POLL_MS } from '../../agent/resources/sysctl.js';
import { DEFAULT_SETTINGS } from '../../agent/settings.js';
import { sysctlRelativePath } from '../../agent/host/procfs.js';
import { Netns, cleanupLeftoverNetns } from '../helpers/netns.js';
import { createResource, testDecl, testHost, type RunnerResult, type RunnerSpec } from '../helpers/resource-runner.js';
import { auditOf, runAgent, startAgentDaemon, tempDir, waitFor, writeBaseline, type AuditLine, type DaemonProcess } from '../helpers/agent.js';

const RUNNER = fileURLToPath(new URL('../helpers/resource-runner.js', import.meta.url));

type Decl = RunnerSpec['resources'][number];
const sysctl = (key: string, value: string, extra: Record<string, unknown> = {}): Decl => ({ type: 'sysctl', name: key, fields: { value, ...extra } });

/** Runs the resource kinds inside the namespace and returns their results. */
async function inside(ns: Netns, mode: 'check' | 'converge', resources: Decl[]): Promise<RunnerResult[]> {
  const spec: RunnerSpec = { mode, resources };
  const r = await ns.exec(process.execPath, [RUNNER, JSON.stringify(spec)]);
  return JSON.parse(r.stdout) as RunnerResult[];
}

function only(results: RunnerResult[]): RunnerResult {
  assert.equal(results.length, 1);
  const r = results[0];
  assert.ok(r);
  return r;
}

describe('sysctl resource (real net.* keys in a network namespace)', function () {
  this.timeout(60_000);
  let ns: Netns;
  let hostForward: string;

  before(async () => {
    await cleanupLeftoverNetns();
    hostForward = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
  });

  beforeEach(async () => {
    ns = await Netns.create('sysctl');
  });

  afterEach(async () => {
    await ns.destroy();
    // The machine's own value never moves: everything happened in the namespace.
    assert.equal(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim(), hostForward);
  });

  it('reports drift, repairs it inside the namespace, then finds it compliant', async () => {
    assert.equal(await ns.sysctl('net.ipv4.ip_forward'), '0');
    const checked = only(await inside(ns, 'check', [sysctl('net.ipv4.ip_forward', '1')]));
    assert.deepEqual(checked.observed, { value: '0' });
    assert.deepEqual(checked.changes, [{ field: 'value', observed: '0', desired: '1' }]);
    assert.equal(await ns.sysctl('net.ipv4.ip_forward'), '0', 'check changes nothing');

    const converged = only(await inside(ns, 'converge', [sysctl('net.ipv4.ip_forward', '1')]));
    assert.equal(converged.error, undefined);
    assert.deepEqual(converged.remaining, []);
    assert.equal(await ns.sysctl('net.ipv4.ip_forward'), '1');
    assert.deepEqual(only(await inside(ns, 'check', [sysctl('net.ipv4.ip_forward', '1')])).changes, []);
  });

  it('finds `sysctl -w` drift by polling inside the namespace and repairs it', async () => {
    const spec: RunnerSpec = { mode: 'loop', resources: [sysctl('net.ipv4.ip_forward', '1'), sysctl('net.ipv4.conf.all.rp_filter', '2')] };
    const child: ChildProcess = ns.spawn(process.execPath, [RUNNER, JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines: Record<string, unknown>[] = [];
    assert.ok(child.stdout);
    createInterface({ input: child.stdout }).on('line', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
    try {
      await waitFor(() => lines.some((l) => l.ready === true), 10_000, 'runner ready');
      await waitFor(async () => (await ns.sysctl('net.ipv4.ip_forward')) === '1' && (await ns.sysctl('net.ipv4.conf.all.rp_filter')) === '2', 10_000, 'first convergence');
      lines.splice(0);

      await ns.sysctlWrite('net.ipv4.ip_forward', '0');
      await waitFor(() => lines.some((l) => l.id === 'sysctl:net.ipv4.ip_forward'), 10_000, 'the drift to be found');
      assert.equal(await ns.sysctl('net.ipv4.ip_forward'), '1');
      const repair = lines.find((l) => l.id === 'sysctl:net.ipv4.ip_forward') as RunnerResult | undefined;
      assert.deepEqual(repair?.changes, [{ field: 'value', observed: '0', desired: '1' }]);
      assert.deepEqual(repair?.remaining, []);

      await ns.sysctlWrite('net.ipv4.conf.all.rp_filter', '0');
      await waitFor(async () => (await ns.sysctl('net.ipv4.conf.all.rp_filter')) === '2', 10_000, 'rp_filter repaired');
    } finally {
      child.stdin?.end();
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
    }
  });

  it('normalises whitespace in multi-value keys', async () => {
    const key = 'net.ipv4.ip_local_port_range';
    const r = only(await inside(ns, 'converge', [sysctl(key, '  40000 \t\t 50000 ')]));
    assert.deepEqual(r.changes?.[0]?.desired, '40000 50000');
    assert.deepEqual(r.after, { value: '40000 50000' });
    assert.deepEqual(r.remaining, []);
    // The kernel prints the range with a tab; either spelling is compliant.
    assert.equal(await ns.sysctl(key), '40000\t50000');
    assert.deepEqual(only(await inside(ns, 'check', [sysctl(key, '40000 50000')])).changes, []);
  });

  it('reports a key the kernel does not have, and fails its repair with HS_HOST_NOT_FOUND naming the key', async () => {
    const key = 'net.ipv4.hs_no_such_key';
    const checked = only(await inside(ns, 'check', [sysctl(key, '1')]));
    assert.deepEqual(checked.observed, { exists: false });
    assert.deepEqual(checked.changes, [{ field: 'exists', observed: false, desired: true }]);
    const r = only(await inside(ns, 'converge', [sysctl(key, '1')]));
    assert.equal(r.error?.code, 'HS_HOST_NOT_FOUND');
    assert.match(r.error?.message ?? '', /net\.ipv4\.hs_no_such_key/);
  });

  it('names key and value when the kernel refuses a value or the key is read-only', async () => {
    const refused = only(await inside(ns, 'converge', [sysctl('net.ipv4.ip_local_port_range', '50000 40000')]));
    assert.equal(refused.error?.code, 'HS_HOST_IO');
    assert.match(refused.error?.message ?? '', /refused '50000 40000' for sysctl net\.ipv4\.ip_local_port_range/);

    const readOnly = only(await inside(ns, 'converge', [sysctl('net.ipv4.conf.all.mc_forwarding', '1')]));
    assert.equal(readOnly.error?.code, 'HS_HOST_PERMISSION');
    assert.match(readOnly.error?.message ?? '', /net\.ipv4\.conf\.all\.mc_forwarding is read-only/);
    assert.equal(await ns.sysctl('net.ipv4.conf.all.mc_forwarding'), '0');

    // Written but kept otherwise: the kernel stores 01 as 1. The kind only writes; what it reads back still differs, which
    // is what the engine's one verification judges (see the agent test below).
    const kept = only(await inside(ns, 'converge', [sysctl('net.ipv4.ip_forward', '01')]));
    assert.equal(kept.error, undefined);
    assert.deepEqual(kept.remaining, [{ field: 'value', observed: '1', desired: '01' }]);

    // A write-only key cannot be observed at all.
    const writeOnly = only(await inside(ns, 'check', [sysctl('net.ipv4.route.flush', '1')]));
    assert.equal(writeOnly.error?.code, 'HS_HOST_PERMISSION');
  });
});

describe('sysctl resource (in process)', () => {
  it('reads and writes under procSysRoot, and the engine polls it at the configured interval', async () => {
    const t = tempDir();
    const clock = new ManualClock(Date.now());
    const engine = new Engine({ host: testHost({ procSysRoot: t.dir, sysctlPollIntervalMs: 100 }), clock, log: silentLogger });
    try {
      const file = path.join(t.dir, 'net/core/somaxconn');
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, '4096\n');
      const r = createResource(testDecl('sysctl', 'net.core.somaxconn', { value: '1024' }), testHost({ procSysRoot: t.dir }));
      assert.equal(r.pollIntervalMs, DEFAULT_SYSCTL_POLL_MS);
      assert.ok(r.watch === undefined, 'procfs cannot be watched: the engine polls');
      assert.deepEqual(r.summarize(await r.observe()), { value: '4096' });
      await r.close?.();

      const events: string[] = [];
      engine.onAudit((e) => events.push(`${e.event}/${e.trigger}`));
      await engine.setResources([{ decl: testDecl('sysctl', 'net.core.somaxconn', { value: '1024' }), baseline: { name: 'k', version: 1 } }]);
      await engine.start(3_600_000);
      assert.equal(readFileSync(file, 'utf8'), '1024');
      assert.deepEqual(events, ['drift_detected/startup', 'repaired/startup']);
      writeFileSync(file, '4096');
      clock.advance(99);
      await engine.idle();
      assert.equal(readFileSync(file, 'utf8'), '4096', 'not read again before its interval');
      clock.advance(1);
      await engine.idle();
      assert.equal(readFileSync(file, 'utf8'), '1024');
      assert.deepEqual(events.slice(2), ['drift_detected/poll', 'repaired/poll']);
    } finally {
      await engine.stop();
      t.cleanup();
    }
  });

  it('accepts the slash form and refuses keys that could leave the sysctl tree', () => {
    const host = testHost();
    // sysctl(8)'s two spellings of a key whose part has a dot (a VLAN interface) name the same file.
    assert.equal(sysctlRelativePath('net/ipv4/conf/eth0.100/forwarding'), 'net/ipv4/conf/eth0.100/forwarding');
    assert.equal(sysctlRelativePath('net.ipv4.conf.eth0/100.forwarding'), 'net/ipv4/conf/eth0.100/forwarding');
    assert.equal(sysctlRelativePath('net.ipv4.ip_forward'), 'net/ipv4/ip_forward');
    createResource(testDecl('sysctl', 'net.ipv4.conf.eth0/100.forwarding', { value: '1' }), host);
    for (const key of ['../../etc/passwd', 'net..ipv4', 'net/../../etc/shadow', 'net.ipv4.ip forward', '', 'net.//.x', '/net/ipv4/ip_forward']) {
      assert.throws(
        () => createResource(testDecl('sysctl', key, { value: '1' }), host),
        (e: unknown) => e instanceof HsError && e.code === 'HS_BASELINE_INVALID',
        key,
      );
    }
    assert.throws(() => createResource(testDecl('sysctl', 'net.ipv4.ip_forward', { value: '1\nkernel.panic = 1' }), host), /one line/);
  });

  it('derives one sorted drop-in file resource for the persisted sysctls of a baseline', () => {
    const settings = { ...DEFAULT_SETTINGS, sysctlDropInDir: '/tmp/hs-sysctl.d' };
    const policy = { ...DEFAULT_POLICY, risk: 'medium' as const };
    const baseline = (resources: Baseline['resources']): Baseline => ({
      apiVersion: 'homeostat/v1',
      name: 'kernel-hardening',
      policy,
      resources,
      origin: { file: '/etc/homeostat/kernel.yaml', sha256: 'x', text: '', sources: {} },
    });
    const d = (key: string, fields: Record<string, unknown>, index: number): Baseline['resources'][number] => ({
      ...testDecl('sysctl', key, fields),
      index,
      location: { file: '/etc/homeostat/kernel.yaml', line: 10 + index, column: 7 },
    });
    const derived = sysctlKind.derive?.(
      baseline([
        d('net.ipv4.tcp_syncookies', { value: '1', persist: true }, 0),
        d('net.ipv4.ip_forward', { value: '0' }, 1),
        d('net.ipv4.ip_local_port_range', { value: '32768\t60999', persist: true }, 2),
        { ...testDecl('file', '/etc/motd', { content: 'x' }), index: 3 },
      ]),
      settings,
    );
    assert.ok(derived);
    assert.equal(derived.length, 1);
    const f = derived[0];
    assert.ok(f);
    assert.equal(f.id, 'file:/tmp/hs-sysctl.d/90-homeostat-kernel-hardening.conf');
    assert.equal(f.type, 'file');
    assert.equal(f.name, '/tmp/hs-sysctl.d/90-homeostat-kernel-hardening.conf');
    assert.deepEqual(f.policy, policy);
    assert.deepEqual(
      { ...f.fields, content: undefined },
      { content: undefined, mode: '0644', owner: 'root', group: 'root', ensure: 'present' },
    );
    assert.equal(
      f.fields.content,
      "# Generated by homeostat from baseline 'kernel-hardening': the sysctls it persists.\n" +
        '# systemd-sysctl applies this at boot; the agent keeps it in step and reverts local edits.\n' +
        'net.ipv4.ip_local_port_range = 32768 60999\n' +
        'net.ipv4.tcp_syncookies = 1\n',
    );
    assert.equal(f.location.line, 10);
    assert.deepEqual(sysctlKind.derive?.(baseline([d('net.ipv4.ip_forward', { value: '0' }, 0)]), settings), []);
  });
});


describe('sysctl healing through the agent (CLI and daemon in a network namespace)', function () {
  this.timeout(60_000);
  let t: { dir: string; cleanup: () => void };
  let stateDir: string;
  let ns: Netns;
  let daemon: DaemonProcess | undefined;

  beforeEach(async () => {
    t = tempDir();
    stateDir = path.join(t.dir, 'state');
    ns = await Netns.create('sysagt');
  });

  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    await ns.destroy();
    t.cleanup();
  });

  function baseline(name: string, resources: string): string {
    return writeBaseline(t.dir, name, `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: ${name}\nspec:\n  resources:\n${resources}`);
  }
  const args = (file: string): string[] => ['--baseline', file, '--state-dir', stateDir];

  it('run repairs `sysctl -w` drift inside the namespace; the audit says drift_detected then repaired', async () => {
    const file = baseline('sys-run', '    - sysctl: net.ipv4.ip_forward\n      value: "1"\n    - sysctl: net.ipv4.ip_local_port_range\n      value: "40000 50000"\n');
    daemon = startAgentDaemon(args(file), { prefix: ns.prefix() });
    await daemon.ready();
    await waitFor(async () => (await ns.sysctl('net.ipv4.ip_forward')) === '1', 10_000, 'startup repair');

    await ns.sysctlWrite('net.ipv4.ip_forward', '0');
    await ns.sysctlWrite('net.ipv4.ip_local_port_range', '32768 60999');
    await waitFor(async () => (await ns.sysctl('net.ipv4.ip_forward')) === '1' && (await ns.sysctl('net.ipv4.ip_local_port_range')) === '40000\t50000', 10_000, 'both repaired');

    await waitFor(async () => (await auditOf(stateDir, 'sysctl:net.ipv4.ip_forward')).length === 4, 10_000, 'the records');
    const log = await auditOf(stateDir, 'sysctl:net.ipv4.ip_forward');
    assert.deepEqual(log.map((e) => [e.event, e.trigger]), [
      ['drift_detected', 'startup'],
      ['repaired', 'startup'],
      ['drift_detected', 'poll'],
      ['repaired', 'poll'],
    ]);
    assert.deepEqual([log[2]?.observed, log[2]?.desired], [{ value: '0' }, { value: '1' }]);
    assert.deepEqual(log[3]?.observed, { value: '1' });
  });

  it('a policy decides sysctl drift by its rules: the first match monitors one key, the next repairs the rest, each record names its rule', async () => {
    const file = baseline('sys-policy', '    - sysctl: net.ipv4.ip_forward\n      value: "1"\n    - sysctl: net.ipv4.ip_local_port_range\n      value: "40000 50000"\n');
    const policy = path.join(t.dir, 'sysctls.yaml');
    writeFileSync(
      policy,
      `apiVersion: homeostat/v1
kind: Policy
metadata: { name: sysctls }
spec:
  rules:
    - match: { resource: "sysctl:net.ipv4.ip_forward" }
      action: monitor
    - match: { kind: sysctl, change: [value] }
      action: repair
`,
    );
    daemon = startAgentDaemon([...args(file), '--policy', policy], { prefix: ns.prefix() });
    await daemon.ready();
    // The start-up pass already finds both keys as the kernel has them: ip_forward 0 stays (monitored), the range is set.
    await waitFor(async () => (await ns.sysctl('net.ipv4.ip_local_port_range')) === '40000\t50000', 10_000, 'the range repaired at start');
    assert.equal(await ns.sysctl('net.ipv4.ip_forward'), '0', 'monitored: left as it is');

    await ns.sysctlWrite('net.ipv4.ip_local_port_range', '32768 60999');
    await waitFor(async () => (await ns.sysctl('net.ipv4.ip_local_port_range')) === '40000\t50000', 10_000, 'the range repaired again');
    type Decided = AuditLine & { decision?: { action: string; rule: { document?: string; index?: number } }; changes?: string[] };
    const range = (await auditOf(stateDir, 'sysctl:net.ipv4.ip_local_port_range')) as Decided[];
    const repairs = range.filter((e) => e.event === 'repaired');
    assert.equal(repairs.length, 2, range.map((e) => `${e.event}/${e.trigger}`).join());
    for (const e of repairs) assert.deepEqual([e.decision?.action, e.decision?.rule], ['repair', { document: 'sysctls', version: 1, index: 1 }]);
    const forward = (await auditOf(stateDir, 'sysctl:net.ipv4.ip_forward')) as Decided[];
    assert.deepEqual(forward.map((e) => e.event), ['drift_detected'], 'recorded once, never repaired');
    assert.deepEqual([forward[0]?.decision?.action, forward[0]?.decision?.rule, forward[0]?.changes], ['monitor', { document: 'sysctls', version: 1, index: 0 }, ['value']]);
    assert.equal(await ns.sysctl('net.ipv4.ip_forward'), '0');
  });

  it('monitor mode reports sysctl drift and changes nothing', async () => {
    const file = baseline('sys-monitor', '    - sysctl: net.ipv4.ip_forward\n      value: "1"\n      mode: monitor\n');
    const r = await runAgent(['apply', '--json', ...args(file)], { prefix: ns.prefix() });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(await ns.sysctl('net.ipv4.ip_forward'), '0');
    assert.deepEqual((await auditOf(stateDir, 'sysctl:net.ipv4.ip_forward')).map((e) => e.event), ['drift_detected']);
  });

  it('a high-risk sysctl is escalated and left alone', async () => {
    const file = baseline('sys-risk', '    - sysctl: net.ipv4.ip_forward\n      value: "1"\n      risk: critical\n');
    const r = await runAgent(['apply', '--json', ...args(file)], { prefix: ns.prefix() });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(await ns.sysctl('net.ipv4.ip_forward'), '0');
    assert.deepEqual((await auditOf(stateDir, 'sysctl:net.ipv4.ip_forward')).map((e) => e.event), ['drift_detected', 'escalated']);
  });

  it('takes the poll interval from the agent config file, and refuses a bad one', async () => {
    const file = baseline('sys-config', '    - sysctl: net.ipv4.ip_forward\n      value: "1"\n');
    const good = path.join(t.dir, 'agent.yaml');
    writeFileSync(good, 'sysctlPollInterval: 100ms\n');
    const ok = await runAgent(['apply', '--config', good, ...args(file)], { prefix: ns.prefix() });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(await ns.sysctl('net.ipv4.ip_forward'), '1');
    const bad = path.join(t.dir, 'bad.yaml');
    writeFileSync(bad, 'sysctlPollInterval: 2h\n');
    const refused = await runAgent(['apply', '--config', bad, ...args(file)], { prefix: ns.prefix() });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /sysctlPollInterval '2h'/);
  });

  it('a value the kernel keeps otherwise fails the verification: HS_VERIFY_FAILED naming what was read back', async () => {
    const file = baseline('sys-kept', '    - sysctl: net.ipv4.ip_forward\n      value: "01"\n');
    const r = await runAgent(['apply', '--json', ...args(file)], { prefix: ns.prefix() });
    assert.equal(r.code, 2, r.stderr);
    const res = (JSON.parse(r.stdout) as { resources: { outcome: string; error?: { code: string; message: string } }[] }).resources[0];
    assert.deepEqual([res?.outcome, res?.error?.code], ['failed', 'HS_VERIFY_FAILED']);
    assert.match(res?.error?.message ?? '', /read back value: 1 -> 01/);
    assert.equal(await ns.sysctl('net.ipv4.ip_forward'), '1');
  });

  it('a key the kernel does not have is a repair_failed naming the key', async () => {
    const file = baseline('sys-missing', '    - sysctl: net.ipv4.hs_no_such_key\n      value: "1"\n');
    const r = await runAgent(['apply', '--json', ...args(file)], { prefix: ns.prefix() });
    assert.equal(r.code, 2, r.stderr);
    const res = (JSON.parse(r.stdout) as { resources: { id: string; outcome: string; error?: { code: string; message: string } }[] }).resources[0];
    assert.deepEqual([res?.outcome, res?.error?.code], ['failed', 'HS_HOST_NOT_FOUND']);
    assert.match(res?.error?.message ?? '', /net\.ipv4\.hs_no_such_key/);
    const log = await auditOf(stateDir, 'sysctl:net.ipv4.hs_no_such_key');
    assert.deepEqual(log.map((e) => e.event).slice(0, 2), ['drift_detected', 'repair_failed']);
  });
});
