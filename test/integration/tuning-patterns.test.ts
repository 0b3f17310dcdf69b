// Proposals that need the structured fields agents will send with each drift (the actor): a person's hotfixes that
// operators approve after a while become a grace period, a named opponent the hosts keep fighting becomes a coordination
// proposal, and drift that comes on a schedule becomes a maintenance window; each with its backtest.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ManualClock } from '../../lib/clock.js';
import { createControllerCore, type ControllerCore } from '../../controller/core.js';
import { FleetHistory } from '../helpers/fleet-history.js';

const ADMIN = 'tuning-admin';
const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const START = Date.UTC(2026, 2, 2, 0, 0, 0);
const R = (name: string): string => `file:/srv/app/${name}`;
const ALICE = { source: 'audit', exe: '/usr/bin/vim.basic', uid: 0, user: 'root', loginUid: 1000, loginUser: 'alice', pid: 4242 };
const PUPPET = { source: 'audit', exe: '/usr/bin/ruby3.1', cmdline: '/usr/bin/ruby3.1 /usr/bin/puppet agent', uid: 0, user: 'root', unit: 'puppet.service', pid: 999 };

const BASELINE = `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: app
spec:
  resources:
    - file: /srv/app/hosts
      content: "hosts\\n"
      risk: high
    - file: /srv/app/ntp.conf
      content: "ntp\\n"
    - file: /srv/app/report.csv
      content: "report\\n"
`;

interface Proposal {
  id: number;
  kind: string;
  target: { resource: string; opponent?: string; schedule?: { cron: string; duration: string; description: string } };
  rationale: string;
  change: { rule: { match: Record<string, unknown>; action: unknown }; window: Record<string, unknown> | null };
  backtest: { transitions: Record<string, number>; autoRepairsAfter: number; deferralsAfter: number; escalationsAfter: number; change?: { transitions: Record<string, number> } };
  autotune: { eligible: boolean; reasons: string[] };
}

describe('tuning API: proposals from actors and schedules', function () {
  this.timeout(60_000);
  let core: ControllerCore;
  let dir: string;
  let clock: ManualClock;
  let list: Proposal[] = [];
  const call = async <T>(method: string, url: string, body?: unknown): Promise<T> => {
    const r = await core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}` }, ...(body === undefined ? {} : { body: body as object }) });
    assert.equal(r.status, 200, `${method} ${url}: ${r.text()}`);
    return r.json<T>();
  };

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-tuning-patterns-'));
    clock = new ManualClock(START);
    core = await createControllerCore({ dataDir: dir, adminToken: ADMIN, fingerprint: 'FP', clock });
    const { record } = await core.baselines.push({ yaml: BASELINE, file: 'app.yaml', sources: {} });
    const fleet = new FleetHistory(core, clock, { name: record.name, version: record.version });
    const h1 = await fleet.host('h1');
    const h2 = await fleet.host('h2');
    // Each day: the report job rewrites report.csv at about 03:00 on both hosts (the hosts repair it); alice hotfixes
    // /srv/app/hosts on one host and an operator approves its repair 40-50 minutes later; puppet and the agent fight over
    // ntp.conf on h1 for a few minutes.
    for (let day = 0; day < 5; day++) {
      clock.advance(DAY - (clock.now() % DAY) + 3 * HOUR + (day % 3) * MIN);
      await fleet.autoRepaired(h1, R('report.csv'));
      clock.advance(2 * MIN);
      await fleet.autoRepaired(h2, R('report.csv'));
      clock.advance(5 * HOUR);
      const id = await fleet.escalated(day % 2 === 0 ? h1 : h2, R('hosts'), { actor: ALICE });
      await fleet.approve(day % 2 === 0 ? h1 : h2, R('hosts'), id, (40 + 2 * day) * MIN, { actor: ALICE });
      clock.advance(3 * HOUR);
      if (day === 4) {
        for (let i = 0; i < 4; i++) {
          await fleet.autoRepaired(h1, R('ntp.conf'), { actor: PUPPET });
          clock.advance(MIN);
        }
      }
    }
    clock.advance(2 * HOUR);
    list = await call<Proposal[]>('POST', '/api/v1/proposals/refresh', {});
  });
  after(async () => {
    await core.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("proposes a grace period for a person's hotfixes that operators approve after a while", () => {
    const p = list.find((x) => x.target.resource === R('hosts'));
    assert.ok(p, JSON.stringify(list.map((x) => [x.kind, x.target.resource])));
    assert.equal(p.kind, 'defer');
    // Decisions after 40, 42, 44, 46 and 48 minutes: the grace period is the 75th percentile, 46 minutes.
    assert.deepEqual(p.change.rule.action, { defer: '46m' });
    assert.match(p.rationale, /a person's hotfix in 5 of 5 attributed drifts, approved 5 of 5 times on 2 hosts, median decision 44 min; let it stand 46m/);
    assert.equal(p.backtest.deferralsAfter, 5);
    assert.deepEqual(p.backtest.change?.transitions, { 'escalate->defer': 5 });
    // The grace period ends before the approvals at 48 minutes (and at 46, the same minute): those are repaired by themselves.
    assert.equal(p.backtest.autoRepairsAfter - 10 - 4, 2);
  });

  it('proposes coordination with the named opponent the host keeps fighting, never applied automatically', async () => {
    const p = list.find((x) => x.kind === 'coordination');
    assert.ok(p);
    assert.equal(p.target.resource, R('ntp.conf'));
    assert.equal(p.target.opponent, '/usr/bin/ruby3.1 /usr/bin/puppet (puppet.service)');
    assert.deepEqual(p.change.rule, { match: { baseline: 'app', resource: R('ntp.conf'), actor: { exe: '/usr/bin/ruby3.1', unit: 'puppet.service' } }, action: 'escalate' });
    assert.match(p.rationale, /^fighting \/usr\/bin\/ruby3.1 \/usr\/bin\/puppet \(puppet.service\): 4 changes in 3 min/);
    assert.deepEqual(p.backtest.transitions, { 'repair->escalate': 4 });
    assert.ok(p.autotune.reasons.includes('a coordination proposal is never applied automatically'));
    const byActor = await call<{ rows: { actor: string; drifts: number; fights: number; recurrences: number; held: number }[] }>('GET', '/api/v1/outcomes?groupBy=actor');
    const puppet = byActor.rows.find((r) => r.actor === '/usr/bin/ruby3.1 /usr/bin/puppet (puppet.service)');
    assert.deepEqual([puppet?.drifts, puppet?.fights, puppet?.recurrences, puppet?.held], [4, 1, 3, 1], 'three repairs undone within the hour; the last held');
  });

  it('proposes a maintenance window around drift that comes at the same time every day', () => {
    const p = list.find((x) => x.kind === 'maintenance-window');
    assert.ok(p);
    assert.equal(p.target.resource, R('report.csv'));
    // h1 drifts at 03:00-03:02, h2 two minutes later: phases 03:00:48 and 03:02:48, so the window opens 15 minutes before 03:01:48.
    assert.deepEqual(p.target.schedule, { cron: '46 2 * * *', duration: '30m', description: '02:46–03:16 UTC every day' });
    assert.deepEqual(p.change.window, { name: (p.change.rule.match as { window: string }).window, cron: '46 2 * * *', duration: '30m', timezone: 'UTC' });
    assert.deepEqual(p.change.rule.action, { defer: 'end-of-window' });
    // Each drift stands until the window ends, then is repaired as before.
    assert.deepEqual(p.backtest.change?.transitions, { 'repair->defer': 10 });
    assert.equal(p.backtest.deferralsAfter, 10);
  });
});
