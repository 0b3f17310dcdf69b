// The service resource against a real `systemd --user`: stop, kill, disable, mask and a dying unit are seen by the watch
// and repaired; a missing unit is a clear error; then the same through the real agent CLI and daemon.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { HsError } from '../../lib/errors.js';
import { SystemdClient } from '../../agent/host/systemd.js';
import type { Change, Disposer, HostContext, Resource } from '../../agent/resources/resource.js';
import { ServiceResource } from '../../agent/resources/service.js';
import { createResource, testDecl, testHost } from '../helpers/resource-runner.js';
import { TestUnits, ensureUserManager, systemctlUser, unitView } from '../helpers/systemd-user.js';
import { auditOf, runAgent, startAgentDaemon, tempDir, waitFor, writeBaseline, type DaemonProcess } from '../helpers/agent.js';
import { Netns } from '../helpers/netns.js';
import { silentLogger } from '../../lib/log.js';

/** A resource with its watch armed, recording every notification. */
class Watched {
  reasons: string[] = [];
  private dispose: Disposer | undefined;
  constructor(readonly r: Resource) {}

  async arm(): Promise<void> {
    this.dispose = await this.r.watch?.((reason) => this.reasons.push(reason));
    assert.ok(this.dispose, 'the service kind has a watch');
  }

  /** Waits until the watch has said something, then forgets what it said. */
  async notified(what: string): Promise<string[]> {
    await waitFor(() => this.reasons.length > 0, 10_000, `a watch event after ${what}`);
    return this.reasons.splice(0);
  }

  /** One reconcile as the engine does it: observe, diff, apply, observe again; returns the changes found. */
  async reconcile(): Promise<Change[]> {
    const observed = await this.r.observe();
    const changes = this.r.diff(observed);
    if (changes.length > 0) await this.r.apply(observed, changes);
    const after = this.r.diff(await this.r.observe());
    assert.deepEqual(after, [], `compliant after the repair of ${this.r.id}`);
    return changes;
  }

  async close(): Promise<void> {
    await this.dispose?.();
    await this.r.close?.();
  }
}

describe('service resource (real systemd --user)', function () {
  this.timeout(60_000);
  const units = new TestUnits();
  let host: HostContext;
  const open: Watched[] = [];

  before(async function () {
    await ensureUserManager();
  });

  beforeEach(() => {
    host = testHost({ systemdScope: 'user' });
  });

  afterEach(async () => {
    for (const w of open.splice(0)) await w.close();
    await units.removeAll();
  });

  function service(unit: string, fields: Record<string, unknown>): Watched {
    const w = new Watched(createResource(testDecl('service', unit, fields), host));
    open.push(w);
    return w;
  }

  it('starts and enables a stopped, disabled unit, then finds it compliant', async () => {
    const unit = await units.long('converge');
    const w = service(unit, { ensure: 'running', enabled: true });
    const before = await w.r.observe();
    assert.deepEqual(
      w.r.diff(before).map((c) => [c.field, c.observed, c.desired]),
      [
        ['enabled', false, true],
        ['active', 'inactive', 'running'],
      ],
    );
    assert.deepEqual(w.r.summarize(before), { loadState: 'loaded', activeState: 'inactive', subState: 'dead', unitFileState: 'disabled' });
    assert.deepEqual(w.r.desired(), { ensure: 'running', enabled: true, masked: false });
    await w.reconcile();
    const v = await unitView(unit);
    assert.equal(v.activeState, 'active');
    assert.equal(v.unitFileState, 'enabled');
  });

  for (const [what, tamper] of [
    ['stop', (u: string) => systemctlUser(['stop', u])],
    ['kill', (u: string) => systemctlUser(['kill', u])],
    ['disable', (u: string) => systemctlUser(['disable', u])],
    ['mask', (u: string) => systemctlUser(['mask', u])],
  ] as const) {
    it(`sees a ${what} through the watch and repairs it`, async () => {
      const unit = await units.long(what);
      const w = service(unit, { ensure: 'running', enabled: true });
      await w.reconcile();
      await w.arm();
      await waitFor(async () => (await unitView(unit)).activeState === 'active', 5000, 'unit running');
      w.reasons.splice(0);

      await tamper(unit);
      await w.notified(what);
      const changes = await w.reconcile();
      assert.ok(changes.length > 0, `the ${what} was drift`);
      const v = await unitView(unit);
      assert.deepEqual([v.loadState, v.activeState, v.unitFileState], ['loaded', 'active', 'enabled']);
    });
  }

  it('stops and masks a unit that must stay masked, and undoes an unmask', async () => {
    const unit = await units.long('masked');
    await systemctlUser(['start', unit]);
    const w = service(unit, { masked: true });
    assert.deepEqual(w.r.desired(), { ensure: 'stopped', masked: true });
    const changes = await w.reconcile();
    assert.deepEqual(changes.map((c) => c.field).sort(), ['active', 'masked']);
    let v = await unitView(unit);
    assert.deepEqual([v.loadState, v.activeState, v.unitFileState], ['masked', 'inactive', 'masked']);

    await w.arm();
    await systemctlUser(['unmask', unit]);
    await w.notified('unmask');
    await w.reconcile();
    v = await unitView(unit);
    assert.equal(v.unitFileState, 'masked');
  });

  it('stops a unit that must be stopped when someone starts it', async () => {
    const unit = await units.long('stopped');
    const w = service(unit, { ensure: 'stopped', enabled: false });
    assert.deepEqual(await w.reconcile(), []);
    await w.arm();
    await systemctlUser(['start', unit]);
    await w.notified('start');
    await waitFor(async () => w.r.diff(await w.r.observe()).length > 0, 5000, 'drift seen');
    await w.reconcile();
    assert.equal((await unitView(unit)).activeState, 'inactive');
  });

  it('restarts a unit that keeps dying, each death an event (the engine decides when it is flapping)', async () => {
    const unit = await units.dying('dying');
    const w = service(unit, { ensure: 'running' });
    await w.arm();
    for (let i = 0; i < 3; i++) {
      // Started, it dies 0.2 s later into `failed`; each time the watch says so and the repair resets and starts it.
      const observed = await w.r.observe();
      const changes = w.r.diff(observed);
      assert.deepEqual(changes.map((c) => c.field), ['active']);
      await w.r.apply(observed, changes);
      w.reasons.splice(0);
      await waitFor(async () => (await unitView(unit)).activeState === 'failed', 10_000, 'the unit to die');
      await w.notified('the unit died');
    }
  });

  it('reports a unit that does not exist as drift, and the repair as HS_HOST_NOT_FOUND naming it', async () => {
    const unit = units.name('missing');
    const w = service(unit, { ensure: 'running' });
    const observed = await w.r.observe();
    assert.deepEqual(w.r.summarize(observed), { exists: false, loadState: 'not-found' });
    const changes = w.r.diff(observed);
    assert.deepEqual(changes, [{ field: 'exists', observed: false, desired: true }]);
    await assert.rejects(w.r.apply(observed, changes), (err: unknown) => {
      assert.ok(err instanceof HsError);
      assert.equal(err.code, 'HS_HOST_NOT_FOUND');
      assert.match(err.message, new RegExp(unit.replace(/\./g, '\\.')));
      return true;
    });
    // Nothing to do when a missing unit only has to be stopped and disabled.
    const off = service(unit, { ensure: 'stopped', enabled: false });
    assert.deepEqual(off.r.diff(await off.r.observe()), []);
  });

  it('takes a bare name as a .service unit', async () => {
    const unit = await units.long('bare');
    const w = service(unit.replace(/\.service$/, ''), { ensure: 'running' });
    await w.reconcile();
    assert.equal((await unitView(unit)).activeState, 'active');
  });

  it('rejects bad declarations with the resource named', () => {
    assert.throws(() => createResource(testDecl('service', 'x.service', { ensure: 'sometimes' }), host), (e: unknown) => e instanceof HsError && e.code === 'HS_BASELINE_INVALID');
    assert.throws(() => createResource(testDecl('service', 'x.service', { masked: true, ensure: 'running' }), host), /masked/);
    assert.throws(() => createResource(testDecl('service', '../x.service', {}), host), /unit name/);
  });

  it('shares one D-Bus connection between resources and closes it with the last one', async () => {
    const unit = await units.long('shared');
    const a = new ServiceResource(testDecl('service', unit, { ensure: 'running' }), host);
    const b = new ServiceResource(testDecl('service', unit, { enabled: false }), host);
    await a.observe();
    await b.observe();
    const shared = host.adapters.get('systemd');
    assert.ok(shared, 'one adapter registered');
    assert.equal(host.adapters.size, 1);
    await a.close();
    assert.equal(host.adapters.get('systemd'), shared, 'still open for the other resource');
    await b.close();
    assert.equal(host.adapters.has('systemd'), false, 'closed with the last resource');
  });

  it('says a bus it cannot reach is a retryable HS_HOST_IO', async () => {
    const client = new SystemdClient({ scope: 'user', log: silentLogger, busAddress: 'unix:path=/run/hs-test-no-such-bus' });
    await assert.rejects(client.status('x.service'), (err: unknown) => err instanceof HsError && err.code === 'HS_HOST_IO' && err.retryable);
    await client.close();
  });

  it('says a bus without a systemd manager on it is a retryable HS_HOST_IO and keeps no connection', async () => {
    const t = tempDir();
    const socket = path.join(t.dir, 'bus');
    const daemon = spawn('dbus-daemon', ['--session', '--nofork', `--address=unix:path=${socket}`], { stdio: 'ignore' });
    try {
      await waitFor(() => existsSync(socket), 10_000, 'a private dbus-daemon');
      const client = new SystemdClient({ scope: 'user', log: silentLogger, busAddress: `unix:path=${socket}` });
      await assert.rejects(client.status('x.service'), (err: unknown) => err instanceof HsError && err.code === 'HS_HOST_IO' && err.retryable);
      assert.equal(client.connected, false);
      await client.close();
    } finally {
      daemon.kill();
      t.cleanup();
    }
  });
});


interface CheckDoc {
  resources: { id: string; outcome: string; observed?: Record<string, unknown>; desired?: Record<string, unknown>; error?: { code: string; message: string } }[];
}

describe('service healing through the agent (CLI and daemon, real systemd --user)', function () {
  this.timeout(90_000);
  const units = new TestUnits();
  let t: { dir: string; cleanup: () => void };
  let stateDir: string;
  let daemon: DaemonProcess | undefined;
  let ns: Netns | undefined;

  before(async () => {
    await ensureUserManager();
  });

  beforeEach(() => {
    t = tempDir();
    stateDir = path.join(t.dir, 'state');
  });

  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    await ns?.destroy();
    ns = undefined;
    await units.removeAll();
    t.cleanup();
  });

  const agentArgs = (file: string, ...more: string[]): string[] => ['--baseline', file, '--state-dir', stateDir, '--systemd-scope', 'user', ...more];

  function baseline(name: string, resources: string, policy = ''): string {
    return writeBaseline(t.dir, name, `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: ${name}\nspec:\n${policy}  resources:\n${resources}`);
  }

  it('check shows observed and desired state; apply converges a service and sysctls (with the drop-in); check is then clean', async () => {
    const unit = await units.long('apply');
    ns = await Netns.create('svcapp');
    const dropIns = path.join(t.dir, 'sysctl.d');
    mkdirSync(dropIns);
    // The agent runs in the namespace with a private /etc/sysctl.d, so neither the machine's sysctls nor its drop-ins move.
    const prefix = ns.prefix({ binds: [{ source: dropIns, target: '/etc/sysctl.d' }] });
    const file = baseline(
      'svc-apply',
      `    - service: ${unit}\n      ensure: running\n      enabled: true\n` +
        `    - sysctl: net.ipv4.ip_forward\n      value: "1"\n      persist: true\n` +
        `    - sysctl: net.ipv4.conf.all.rp_filter\n      value: "2"\n`,
    );

    const check = await runAgent(['check', '--json', ...agentArgs(file)], { prefix });
    assert.equal(check.code, 2, check.stderr);
    const doc = JSON.parse(check.stdout) as CheckDoc;
    const svc = doc.resources.find((r) => r.id === `service:${unit}`);
    assert.equal(svc?.outcome, 'drifted');
    assert.deepEqual(svc?.observed, { loadState: 'loaded', activeState: 'inactive', subState: 'dead', unitFileState: 'disabled' });
    assert.deepEqual(svc?.desired, { ensure: 'running', enabled: true, masked: false });
    const fwd = doc.resources.find((r) => r.id === 'sysctl:net.ipv4.ip_forward');
    assert.deepEqual([fwd?.outcome, fwd?.observed, fwd?.desired], ['drifted', { value: '0' }, { value: '1', persist: true }]);

    const apply = await runAgent(['apply', '--json', ...agentArgs(file)], { prefix });
    assert.equal(apply.code, 0, apply.stdout + apply.stderr);
    const v = await unitView(unit);
    assert.deepEqual([v.activeState, v.unitFileState], ['active', 'enabled']);
    assert.equal(await ns.sysctl('net.ipv4.ip_forward'), '1');
    assert.equal(await ns.sysctl('net.ipv4.conf.all.rp_filter'), '2');
    assert.equal(
      readFileSync(path.join(dropIns, '90-homeostat-svc-apply.conf'), 'utf8'),
      "# Generated by homeostat from baseline 'svc-apply': the sysctls it persists.\n" +
        '# systemd-sysctl applies this at boot; the agent keeps it in step and reverts local edits.\n' +
        'net.ipv4.ip_forward = 1\n',
    );
    assert.equal((await runAgent(['check', ...agentArgs(file)], { prefix })).code, 0);
    const events = (await auditOf(stateDir, `service:${unit}`)).map((e) => e.event);
    assert.deepEqual(events, ['drift_detected', 'repaired']);
  });

  it('run repairs a stop, a kill and a disable as events; the audit says drift_detected then repaired', async () => {
    const unit = await units.long('run');
    const id = `service:${unit}`;
    const file = baseline('svc-run', `    - service: ${unit}\n      ensure: running\n      enabled: true\n`);
    daemon = startAgentDaemon(agentArgs(file));
    await daemon.ready();
    await waitFor(async () => (await unitView(unit)).activeState === 'active', 10_000, 'startup repair');

    const repairs = async (): Promise<number> => (await auditOf(stateDir, id)).filter((e) => e.event === 'repaired').length;
    await waitFor(async () => (await repairs()) === 1, 10_000, 'startup repair recorded');
    for (const tamper of [['stop', unit], ['kill', unit], ['disable', unit]]) {
      const before = await repairs();
      await systemctlUser(tamper);
      await waitFor(async () => (await repairs()) > before, 10_000, `repair after ${tamper[0]}`);
      const v = await unitView(unit);
      assert.deepEqual([tamper[0], v.activeState, v.unitFileState], [tamper[0], 'active', 'enabled']);
    }
    const log = await auditOf(stateDir, id);
    assert.deepEqual(log.map((e) => e.event), ['drift_detected', 'repaired', 'drift_detected', 'repaired', 'drift_detected', 'repaired', 'drift_detected', 'repaired']);
    // After the start-up repair, each drift was seen through the D-Bus watch, not found by a poll.
    assert.deepEqual(log.slice(2).map((e) => e.trigger), Array(6).fill('watch'));
    const stopped = log[2];
    assert.equal(stopped?.observed?.activeState, 'inactive');
    assert.deepEqual(stopped?.desired, { ensure: 'running', enabled: true, masked: false });
  });

  it('monitor mode reports a stopped unit and changes nothing', async () => {
    const unit = await units.long('monitor');
    const file = baseline('svc-monitor', `    - service: ${unit}\n      ensure: running\n      mode: monitor\n`);
    const r = await runAgent(['apply', '--json', ...agentArgs(file)]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal((await unitView(unit)).activeState, 'inactive');
    assert.deepEqual((await auditOf(stateDir, `service:${unit}`)).map((e) => e.event), ['drift_detected']);
  });

  it('a high-risk unit is escalated and left alone', async () => {
    const unit = await units.long('risky');
    const file = baseline('svc-risk', `    - service: ${unit}\n      ensure: running\n      risk: high\n`);
    const r = await runAgent(['apply', '--json', ...agentArgs(file)]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal((await unitView(unit)).activeState, 'inactive');
    assert.deepEqual((await auditOf(stateDir, `service:${unit}`)).map((e) => e.event), ['drift_detected', 'escalated']);
  });

  it('a unit that keeps dying is escalated by the flap policy and no longer restarted', async () => {
    const unit = await units.dying('flap');
    const id = `service:${unit}`;
    const file = baseline('svc-flap', `    - service: ${unit}\n      ensure: running\n      flap: { maxRepairs: 3, window: 10m }\n`);
    daemon = startAgentDaemon(agentArgs(file));
    await daemon.ready();
    await waitFor(async () => (await auditOf(stateDir, id)).some((e) => e.event === 'escalated'), 30_000, 'flap escalation');
    await waitFor(async () => (await unitView(unit)).activeState === 'failed', 10_000, 'the unit left dead');
    const events = (await auditOf(stateDir, id)).map((e) => e.event);
    assert.equal(events.filter((e) => e === 'repaired').length, 3, events.join(' '));
    assert.deepEqual(events.slice(-2), ['suppressed_flapping', 'escalated']);
    // Left alone from now on: a further poll or event does not start it again.
    assert.equal((await unitView(unit)).activeState, 'failed');
  });

  it('a unit that does not exist is a repair_failed naming it', async () => {
    const unit = units.name('absent');
    const file = baseline('svc-absent', `    - service: ${unit}\n      ensure: running\n`);
    const r = await runAgent(['apply', '--json', ...agentArgs(file)]);
    assert.equal(r.code, 2, r.stderr);
    const res = (JSON.parse(r.stdout) as CheckDoc).resources.find((x) => x.id === `service:${unit}`);
    assert.equal(res?.outcome, 'failed');
    assert.equal(res?.error?.code, 'HS_HOST_NOT_FOUND');
    assert.match(res?.error?.message ?? '', new RegExp(unit.replace(/\./g, '\\.')));
    const log = await auditOf(stateDir, `service:${unit}`);
    assert.deepEqual(log.map((e) => e.event).slice(0, 2), ['drift_detected', 'repair_failed']);
    assert.match(log[1]?.detail ?? '', /HS_HOST_NOT_FOUND/);
  });
});
