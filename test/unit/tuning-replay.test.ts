// Backtest replays on hand-made host histories shaped as agents record them: counts checked by hand, deferrals that end in
// a repair before or after an operator answered, and candidate lanes (forked from the base on the hosts where they
// matter) giving exactly what a full replay of the same policy gives.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DEFAULT_POLICY, type Risk } from '../../lib/baseline/types.js';
import { parsePolicy, PolicySet } from '../../lib/policy/index.js';
import type { HistoryRecord, ResourceInfo } from '../../controller/tuning/history.js';
import { Replay, type BacktestResult, type Candidate } from '../../controller/tuning/replay.js';

const T0 = Date.UTC(2026, 0, 5, 9, 0, 0);
const MIN = 60_000;
const HOUR = 3_600_000;

interface Res {
  id: string;
  risk: Risk;
}
const MOTD: Res = { id: 'file:/etc/motd', risk: 'high' };
const ISSUE: Res = { id: 'file:/etc/issue', risk: 'high' };
const SHADOW: Res = { id: 'file:/etc/shadow', risk: 'critical' };
const APP: Res = { id: 'file:/etc/app.conf', risk: 'low' };

/** Records of one host, in the order the agent writes them. */
class Host {
  readonly records: HistoryRecord[] = [];
  private seq = 0;
  constructor(readonly id: string) {}

  rec(time: number, res: Res, event: string, trigger = 'watch'): void {
    this.records.push({
      id: 0,
      agentId: this.id,
      seq: ++this.seq,
      time,
      receivedAt: time,
      resource: res.id,
      event,
      trigger,
      baseline: 'web',
      version: 1,
      detail: null,
      changes: event === 'drift_detected' ? ['content'] : [],
      actor: undefined,
      decision: undefined,
      risk: res.risk,
    });
  }
  /** The host repairs it at once. */
  auto(t: number, r: Res): void {
    this.rec(t, r, 'drift_detected');
    this.rec(t + 5, r, 'repaired');
  }
  /** Escalated, then an operator approves after `after`: the agent records the approval, sees the drift again, repairs. */
  approved(t: number, r: Res, after: number): void {
    this.rec(t, r, 'drift_detected');
    this.rec(t + 1, r, 'escalated');
    this.rec(t + after, r, 'approved', 'controller');
    this.rec(t + after + 1, r, 'drift_detected', 'controller');
    this.rec(t + after + 2, r, 'repaired', 'controller');
  }
  rejected(t: number, r: Res, after: number): void {
    this.rec(t, r, 'drift_detected');
    this.rec(t + 1, r, 'escalated');
    this.rec(t + after, r, 'rejected', 'controller');
  }
}

function info(r: HistoryRecord): ResourceInfo {
  return { kind: 'file', policy: { ...DEFAULT_POLICY, risk: r.risk ?? 'low' } };
}

const policy = (rules: string, extra = ''): PolicySet =>
  new PolicySet([{ document: parsePolicy(`apiVersion: homeostat/v1\nkind: Policy\nmetadata:\n  name: test\nspec:\n${extra}  rules:\n${rules}`, { file: 'test.yaml' }), version: 1 }]);

function replay(hosts: Host[], base: PolicySet, candidates: Candidate[] = [], since = T0 - 1): BacktestResult[] {
  const r = new Replay({ base, candidates, since, until: T0 + 30 * 86_400_000 });
  let id = 0;
  for (const h of hosts) for (const rec of h.records) r.push({ ...rec, id: ++id }, rec.event === 'drift_detected' ? info(rec) : undefined);
  return r.finish();
}

/** Three motd drifts approved after 40 minutes, two issue drifts rejected after 10, one critical drift approved, two auto repairs. */
function fleet(): Host[] {
  const h1 = new Host('h1');
  const h2 = new Host('h2');
  h1.approved(T0, MOTD, 40 * MIN);
  h1.rejected(T0 + 2 * HOUR, ISSUE, 10 * MIN);
  h1.auto(T0 + 3 * HOUR, APP);
  h1.approved(T0 + 4 * HOUR, MOTD, 40 * MIN);
  h2.approved(T0 + HOUR, MOTD, 40 * MIN);
  h2.rejected(T0 + 5 * HOUR, ISSUE, 10 * MIN);
  h2.approved(T0 + 6 * HOUR, SHADOW, 20 * MIN);
  h2.auto(T0 + 7 * HOUR, APP);
  return [h1, h2];
}

describe('tuning: backtest replay', () => {
  it('replays what the hosts did under their own baseline policy: nothing changes', () => {
    const [r] = replay(fleet(), new PolicySet());
    assert.ok(r);
    assert.deepEqual(
      { drifts: r.drifts, eb: r.escalationsBefore, ea: r.escalationsAfter, rb: r.autoRepairsBefore, ra: r.autoRepairsAfter, affected: r.affected },
      { drifts: 8, eb: 6, ea: 6, rb: 2, ra: 2, affected: 0 },
    );
  });

  it('counts, by hand, a policy that repairs everything: it overrides both rejections and repairs the critical drift', () => {
    const [r] = replay(fleet(), policy('    - action: repair\n'));
    assert.ok(r);
    assert.equal(r.drifts, 8);
    assert.equal(r.escalationsBefore, 6);
    assert.equal(r.escalationsAfter, 0);
    assert.equal(r.autoRepairsBefore, 2);
    assert.equal(r.autoRepairsAfter, 8);
    assert.equal(r.overriddenRejections, 2);
    assert.equal(r.criticalAutoRepaired, 1);
    assert.deepEqual(r.transitions, { 'escalate->repair': 6 });
    assert.equal(r.events.length, 6);
    assert.deepEqual(r.events.filter((e) => e.overriddenRejection).map((e) => [e.agentId, e.resource]), [['h1', ISSUE.id], ['h2', ISSUE.id]]);
    assert.deepEqual(r.events.filter((e) => e.criticalAutoRepaired).map((e) => e.resource), [SHADOW.id]);
  });

  it('a rule for motd alone moves its three escalations to repairs and touches nothing else', () => {
    const [r] = replay(fleet(), policy('    - match: { resource: "file:/etc/motd", change: content }\n      action: repair\n'));
    assert.ok(r);
    assert.deepEqual(
      [r.escalationsAfter, r.autoRepairsAfter, r.overriddenRejections, r.criticalAutoRepaired, r.transitions],
      [3, 5, 0, 0, { 'escalate->repair': 3 }],
    );
    assert.deepEqual(new Set(r.events.map((e) => e.resource)), new Set([MOTD.id]));
    assert.ok(r.events.every((e) => e.human === 'approved' && e.rule === 'test v1 spec.rules[0]'));
  });

  it('a grace period ends in a repair unless an operator answered first', () => {
    const motd30 = replay(fleet(), policy('    - match: { resource: "file:/etc/motd" }\n      action: { defer: 30m }\n'))[0];
    assert.ok(motd30);
    // The approvals came after 40 minutes: the grace period had ended and the drift was repaired by itself.
    assert.deepEqual([motd30.deferralsAfter, motd30.autoRepairsAfter, motd30.escalationsAfter], [3, 5, 3]);
    assert.ok(motd30.events.every((e) => e.autoRepairedAt !== undefined && e.autoRepairedAt - e.time === 30 * MIN));
    const motd60 = replay(fleet(), policy('    - match: { resource: "file:/etc/motd" }\n      action: { defer: 60m }\n'))[0];
    assert.ok(motd60);
    assert.deepEqual([motd60.deferralsAfter, motd60.autoRepairsAfter], [3, 2], 'approved at 40 minutes, inside the grace period');
    const issue5 = replay(fleet(), policy('    - match: { resource: "file:/etc/issue" }\n      action: { defer: 5m }\n'))[0];
    assert.ok(issue5);
    assert.equal(issue5.overriddenRejections, 2, 'repaired at 5 minutes, rejected at 10');
    const issue30 = replay(fleet(), policy('    - match: { resource: "file:/etc/issue" }\n      action: { defer: 30m }\n'))[0];
    assert.ok(issue30);
    assert.equal(issue30.overriddenRejections, 0, 'rejected within the grace period: the operator is heard');
  });

  it('holds a repairing policy to its flap limit and a rule to its hourly limit', () => {
    const h = new Host('h1');
    for (let i = 0; i < 8; i++) h.rec(T0 + i * MIN, APP, 'drift_detected');
    const flap = replay([h], policy('    - action: repair\n'))[0];
    assert.ok(flap);
    // DEFAULT_POLICY: 5 repairs within 10 minutes, then suppressed (an escalation) and held until an operator approves.
    assert.equal(flap.autoRepairsAfter, 5);
    assert.equal(flap.escalationsAfter, 1);
    assert.deepEqual(flap.transitions, { 'monitor->repair': 5, 'monitor->escalate': 1, 'monitor->hold': 2 });
    const h2 = new Host('h2');
    for (let i = 0; i < 7; i++) h2.auto(T0 + i * 11 * MIN, APP);
    const limited = replay([h2], policy('    - action: repair\n      limits: { maxRepairsPerHour: 2 }\n'))[0];
    assert.ok(limited);
    // Repairs at 0 and 11 min; 22, 33, 44 and 55 are past the limit; at 66 the repair at 0 left the hour.
    assert.deepEqual([limited.autoRepairsAfter, limited.escalationsAfter], [3, 4]);
  });

  it('a drift after an approval that found nothing left to repair is a new drift, not the approved one seen again', () => {
    const host = new Host('h1');
    host.rec(T0, MOTD, 'drift_detected');
    host.rec(T0 + 1, MOTD, 'escalated');
    // Someone put the file back before the approval arrived: the agent records the approval and finds nothing to repair.
    host.rec(T0 + 10 * MIN, MOTD, 'approved', 'controller');
    host.rec(T0 + 2 * HOUR, MOTD, 'drift_detected');
    host.rec(T0 + 2 * HOUR + 1, MOTD, 'escalated');
    const [r] = replay([host], new PolicySet());
    assert.deepEqual([r?.drifts, r?.escalationsBefore], [2, 2]);
  });

  it('drifts before `since` build state but are not counted', () => {
    const [r] = replay(fleet(), new PolicySet(), [], T0 + 4 * HOUR);
    assert.ok(r);
    assert.equal(r.drifts, 4);
  });

  it('says what a candidate changes against the policies in force, apart from what they already change', () => {
    const inForce = '    - match: { resource: "file:/etc/motd" }\n      action: repair\n';
    const base = policy(inForce);
    const set = policy(`${inForce}    - match: { resource: "file:/etc/issue" }\n      action: monitor\n`);
    const [, c] = replay(fleet(), base, [{ set, resources: [ISSUE.id] }]);
    assert.ok(c);
    assert.deepEqual(c.transitions, { 'escalate->repair': 3, 'escalate->monitor': 2 }, 'against what the hosts did');
    assert.deepEqual(c.change, { transitions: { 'escalate->monitor': 2 }, overriddenRejections: 0, criticalAutoRepaired: 0, affected: 2 });
    const [, all] = replay(fleet(), base, [{ set: policy(`${inForce}    - action: repair\n`), resources: undefined }]);
    assert.deepEqual(all?.change, { transitions: { 'escalate->repair': 3 }, overriddenRejections: 2, criticalAutoRepaired: 1, affected: 3 });
  });

  it('a candidate lane forked on the hosts that drift on its resource equals a full replay of its policy', () => {
    const resources: Res[] = [MOTD, ISSUE, SHADOW, APP, { id: 'file:/etc/hosts', risk: 'medium' }];
    const step = fc.record({
      res: fc.integer({ min: 0, max: resources.length - 1 }),
      kind: fc.constantFrom('auto', 'approved', 'rejected', 'monitor', 'failed', 'suppressed'),
      gap: fc.integer({ min: 1, max: 90 * MIN }),
      after: fc.integer({ min: 1, max: 120 * MIN }),
    });
    const actions = ['repair', 'escalate', 'monitor', 'ignore', '{ defer: 10m }', '{ defer: 2h }'];
    const rule = fc.record({ res: fc.integer({ min: 0, max: resources.length - 1 }), action: fc.constantFrom(...actions), change: fc.boolean() });
    fc.assert(
      fc.property(
        fc.array(fc.array(step, { maxLength: 30 }), { minLength: 1, maxLength: 4 }),
        fc.array(rule, { maxLength: 3 }),
        rule,
        fc.integer({ min: 1, max: 4 }),
        (hostSteps, baseRules, added, limit) => {
          const hosts = hostSteps.map((steps, i) => {
            const h = new Host(`h${i}`);
            let t = T0;
            for (const s of steps) {
              const r = resources[s.res] as Res;
              t += s.gap;
              if (s.kind === 'auto') h.auto(t, r);
              else if (s.kind === 'approved') h.approved(t, r, s.after);
              else if (s.kind === 'rejected') h.rejected(t, r, s.after);
              else if (s.kind === 'monitor') h.rec(t, r, 'drift_detected');
              else if (s.kind === 'failed') {
                h.rec(t, r, 'drift_detected');
                h.rec(t + 1, r, 'repair_failed');
              } else {
                h.rec(t, r, 'drift_detected');
                h.rec(t + 1, r, 'suppressed_flapping');
                h.rec(t + 2, r, 'escalated');
              }
              t += s.kind === 'approved' || s.kind === 'rejected' ? s.after + 10 : 10;
            }
            return h;
          });
          const text = (rs: { res: number; action: string; change: boolean }[]): string =>
            rs.map((x) => `    - match: { resource: "${(resources[x.res] as Res).id}"${x.change ? ', change: content' : ''} }\n      action: ${x.action}\n`).join('');
          // The base has a limited catch-all, so a candidate taking drifts from it changes the hourly counts of the host.
          const base = policy(`${text(baseRules)}    - action: repair\n      limits: { maxRepairsPerHour: ${limit} }\n`);
          const doc = parsePolicy(`apiVersion: homeostat/v1\nkind: Policy\nmetadata:\n  name: aaa-tuning\nspec:\n  priority: 1000\n  rules:\n${text([added])}`, { file: 'c.yaml' });
          const set = new PolicySet([...base.policies, { document: doc, version: 1 }]);
          const [inForce, candidate] = replay(hosts, base, [{ set, resources: [(resources[added.res] as Res).id] }]);
          assert.ok(inForce && candidate);
          const { change, ...forked } = candidate;
          const full = replay(hosts, set)[0];
          assert.deepEqual(forked, full);
        },
      ),
      { numRuns: 200 },
    );
  });
});
