// The pure decision: with no policy rule matching it reproduces the decision the engine made before policy documents
// (kept frozen below) for every input; otherwise the first matching rule decides, under the operator's answers and the
// guards on repairs, with a reason naming the rule.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DEFAULT_POLICY, RISKS, type Policy, type Risk } from '../../lib/baseline/types.js';
import {
  decide,
  parsePolicy,
  PolicySet,
  RepairLedger,
  ruleKey,
  describeRule,
  explanationLines,
  type ActivePolicy,
  type Actor,
  type Drift,
  type PolicyDecision,
  type ResourceState,
} from '../../lib/policy/index.js';

// --- The engine's own decision before it consulted lib/policy (agent/engine/policy.ts until then), frozen: the engine now
// calls lib/policy's decide with no policy documents, and must keep deciding exactly as this did.
type Decision =
  | { action: 'repair'; reason: 'enforce' | 'approved' }
  | { action: 'report'; reason: 'monitor' | 'paused' }
  | { action: 'escalate'; reason: 'risk' }
  | { action: 'suppress'; reason: 'flapping' }
  | { action: 'hold'; reason: 'suppressed' | 'excepted' | 'backoff' };

interface DecisionInput {
  policy: Policy;
  paused: boolean;
  approved: boolean;
  suppressed: boolean;
  excepted: boolean;
  recentRepairs: number;
  backingOff: boolean;
}

const riskRank = (r: Risk): number => RISKS.indexOf(r);

function engineDecide(i: DecisionInput): Decision {
  if (i.excepted) return { action: 'hold', reason: 'excepted' };
  if (i.policy.mode === 'monitor') return { action: 'report', reason: 'monitor' };
  if (i.paused) return { action: 'report', reason: 'paused' };
  if (i.approved) return { action: 'repair', reason: 'approved' };
  if (i.suppressed) return { action: 'hold', reason: 'suppressed' };
  if (riskRank(i.policy.risk) >= riskRank(i.policy.escalateAt)) return { action: 'escalate', reason: 'risk' };
  if (i.recentRepairs >= i.policy.flap.maxRepairs) return { action: 'suppress', reason: 'flapping' };
  if (i.backingOff) return { action: 'hold', reason: 'backoff' };
  return { action: 'repair', reason: 'enforce' };
}

const HEAD = 'apiVersion: homeostat/v1\nkind: Policy\nmetadata:\n  name: NAME\nspec:\n';

function policy(body: string, opts: { name?: string; version?: number; priority?: number } = {}): ActivePolicy {
  const head = HEAD.replace('NAME', opts.name ?? 'p') + (opts.priority === undefined ? '' : `  priority: ${opts.priority}\n`);
  return { document: parsePolicy(head + body, { file: 'p.yaml' }), version: opts.version ?? 1 };
}

function set(...active: ActivePolicy[]): PolicySet {
  return new PolicySet(active);
}

const T0 = Date.UTC(2025, 0, 6, 12, 0); // a Monday, 12:00 UTC

const drift = (over: Partial<Drift> = {}): Drift => ({
  resource: 'file:/etc/motd',
  kind: 'file',
  baseline: 'web',
  changes: ['content'],
  time: T0,
  ...over,
});

const state = (over: Partial<ResourceState> = {}): ResourceState => ({
  policy: DEFAULT_POLICY,
  paused: false,
  approved: false,
  suppressed: false,
  excepted: false,
  backingOff: false,
  recentRepairs: 0,
  ...over,
});

/** The engine's decision in the new vocabulary: `report` is `monitor`, reasons are causes. */
function asNew(d: Decision): Pick<PolicyDecision, 'action' | 'cause'> {
  switch (d.action) {
    case 'report':
      return { action: 'monitor', cause: d.reason === 'monitor' ? 'monitor-mode' : 'paused' };
    case 'repair':
      return { action: 'repair', cause: d.reason };
    case 'escalate':
      return { action: 'escalate', cause: 'risk' };
    case 'suppress':
      return { action: 'suppress', cause: 'flapping' };
    case 'hold':
      return { action: 'hold', cause: d.reason };
  }
}

function* engineInputs(): Generator<DecisionInput> {
  for (const mode of ['enforce', 'monitor'] as const)
    for (const risk of RISKS)
      for (const escalateAt of RISKS)
        for (const maxRepairs of [1, 2, 5])
          for (let recentRepairs = 0; recentRepairs <= maxRepairs + 1; recentRepairs++)
            for (let bits = 0; bits < 32; bits++) {
              const policy: Policy = { mode, risk, escalateAt, flap: { maxRepairs, windowMs: 600_000 } };
              yield {
                policy,
                paused: (bits & 1) !== 0,
                approved: (bits & 2) !== 0,
                suppressed: (bits & 4) !== 0,
                excepted: (bits & 8) !== 0,
                backingOff: (bits & 16) !== 0,
                recentRepairs,
              };
            }
}

function compare(policies: PolicySet, input: DecisionInput, d: Drift = drift()): void {
  const got = decide(policies, d, state(input));
  const want = asNew(engineDecide(input));
  assert.deepEqual({ action: got.action, cause: got.cause }, want, JSON.stringify(input));
  assert.deepEqual(got.rule, { baseline: d.baseline });
}

describe('policy decision', () => {
  describe('with no policy rule matching, exactly the engine decide() of today', () => {
    it('for every combination of its inputs, with no policy at all', () => {
      let n = 0;
      for (const input of engineInputs()) {
        compare(set(), input);
        n++;
      }
      assert.equal(n, 2 * 4 * 4 * (3 + 4 + 7) * 32);
    });

    it('for every combination, with policies whose rules do not match the drift', () => {
      const others = set(
        policy('  rules:\n    - { match: { kind: service }, action: ignore }\n    - { match: { resource: "file:/etc/ssh/*" }, action: repair }\n'),
        policy('  rules:\n    - { match: { change: mode, actor: { exe: /usr/bin/vim } }, action: { defer: 1h } }\n', { name: 'q' }),
      );
      for (const input of engineInputs()) compare(others, input);
    });

    it('as a property over random drifts, actors and times', () => {
      const others = set(policy('  rules:\n    - { match: { kind: sysctl, riskAtLeast: critical }, action: ignore }\n'));
      fc.assert(
        fc.property(
          fc.record({
            mode: fc.constantFrom('enforce' as const, 'monitor' as const),
            risk: fc.constantFrom(...RISKS),
            escalateAt: fc.constantFrom(...RISKS),
            maxRepairs: fc.integer({ min: 1, max: 20 }),
            recentRepairs: fc.integer({ min: 0, max: 25 }),
            flags: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
            kind: fc.constantFrom('file', 'directory', 'service'),
            time: fc.integer({ min: 0, max: 4_102_444_800_000 }),
            exe: fc.option(fc.string(), { nil: undefined }),
          }),
          (r) => {
            const input: DecisionInput = {
              policy: { mode: r.mode, risk: r.risk, escalateAt: r.escalateAt, flap: { maxRepairs: r.maxRepairs, windowMs: 60_000 } },
              paused: r.flags[0] === true,
              approved: r.flags[1] === true,
              suppressed: r.flags[2] === true,
              excepted: r.flags[3] === true,
              backingOff: r.flags[4] === true,
              recentRepairs: r.recentRepairs,
            };
            const actor: Actor | undefined = r.exe === undefined ? undefined : { source: 'audit', exe: r.exe };
            compare(others, input, drift({ kind: r.kind, time: r.time, ...(actor ? { actor } : {}) }));
          },
        ),
        { numRuns: 2000 },
      );
    });
  });

  describe('rules', () => {
    it('the first matching rule decides, and names itself', () => {
      const p = set(
        policy(
          '  rules:\n    - { match: { resource: "file:/etc/ssh/*" }, action: escalate }\n    - { match: { kind: file }, action: repair, description: files are put back }\n    - { match: { kind: file, change: mode }, action: monitor }\n',
          { name: 'fleet', version: 4 },
        ),
      );
      const ssh = decide(p, drift({ resource: 'file:/etc/ssh/sshd_config' }), state());
      assert.deepEqual([ssh.action, ssh.cause, ssh.rule], ['escalate', 'rule', { document: 'fleet', version: 4, index: 0 }]);
      assert.match(ssh.reason, /^fleet v4 spec.rules\[0\] matched \{ resource: file:\/etc\/ssh\/\* \}: escalate$/);
      const motd = decide(p, drift({ changes: ['mode'] }), state());
      assert.deepEqual([motd.action, motd.rule], ['repair', { document: 'fleet', version: 4, index: 1 }]);
      assert.match(motd.reason, /\(files are put back\)/);
      assert.deepEqual(decide(p, drift({ resource: 'file:/etc/ssh/x/y' }), state()).rule, { document: 'fleet', version: 4, index: 1 }, '* stays within one path segment');
    });

    it('documents are consulted from the highest priority, equal priorities by name', () => {
      const a = policy('  rules:\n    - { match: { kind: file }, action: monitor }\n', { name: 'a' });
      const b = policy('  rules:\n    - { match: { kind: file }, action: ignore }\n', { name: 'b' });
      const c = policy('  rules:\n    - { match: { kind: file }, action: escalate }\n', { name: 'c', priority: 10 });
      assert.equal(decide(set(b, a), drift(), state()).action, 'monitor');
      assert.equal(decide(set(a, b, c), drift(), state()).action, 'escalate');
      assert.deepEqual(new PolicySet([b, c, a]).policies.map((x) => x.document.name), ['c', 'a', 'b']);
    });

    it('a rule overrides the baseline risk: policy keys of the baseline are the last rules', () => {
      const p = set(policy('  rules:\n    - { match: { resource: "file:/etc/motd" }, action: repair }\n'));
      const high = state({ policy: { ...DEFAULT_POLICY, risk: 'critical' } });
      assert.equal(decide(set(), drift(), high).action, 'escalate');
      assert.deepEqual([decide(p, drift(), high).action, decide(p, drift(), high).cause], ['repair', 'rule']);
    });

    it('matches on change kind (services report state as active), risk, baseline and kind', () => {
      const p = set(
        policy(
          '  rules:\n    - { match: { kind: service, change: state }, action: escalate }\n    - { match: { riskAtLeast: high }, action: monitor }\n    - { match: { baseline: "cis-*" }, action: ignore }\n',
        ),
      );
      assert.equal(decide(p, drift({ kind: 'service', resource: 'service:nginx.service', changes: ['enabled', 'active'] }), state()).action, 'escalate');
      assert.equal(decide(p, drift({ kind: 'service', resource: 'service:nginx.service', changes: ['enabled'] }), state()).action, 'repair');
      assert.equal(decide(p, drift(), state({ policy: { ...DEFAULT_POLICY, risk: 'high' } })).action, 'monitor');
      assert.equal(decide(p, drift({ baseline: 'cis-audit' }), state()).action, 'ignore');
    });

    it('matches the actor: executable, user, login user, unit and source; an unknown actor matches no actor pattern', () => {
      const p = set(
        policy(
          '  rules:\n    - { match: { actor: { exe: "/usr/bin/vim*", loginUser: "ops-*" } }, action: { defer: 30m } }\n' +
            '    - { match: { actor: { unit: puppet.service } }, action: escalate }\n    - { match: { actor: { user: "0" } }, action: monitor }\n' +
            '    - { match: { actor: { source: unknown } }, action: ignore }\n',
        ),
      );
      const vim: Actor = { source: 'audit', exe: '/usr/bin/vim.basic', user: 'root', uid: 0, loginUser: 'ops-alice', loginUid: 1001 };
      assert.equal(decide(p, drift({ actor: vim }), state()).action, 'defer');
      assert.equal(decide(p, drift({ actor: { ...vim, loginUser: 'bob' } }), state()).action, 'monitor', 'falls to user 0 (uid as text)');
      assert.equal(decide(p, drift({ actor: { source: 'audit', exe: '/usr/bin/ruby', unit: 'puppet.service' } }), state()).action, 'escalate');
      assert.equal(decide(p, drift(), state()).action, 'ignore', 'no actor is source unknown');
      assert.equal(decide(p, drift({ actor: { source: 'journal', unit: 'x.service' } }), state()).action, 'repair');
    });
  });

  describe('actions', () => {
    const p = set(
      policy(
        '  rules:\n    - { match: { resource: "file:/etc/a" }, action: ignore }\n    - { match: { resource: "file:/etc/b" }, action: monitor }\n' +
          '    - { match: { resource: "file:/etc/c" }, action: { defer: 30m } }\n    - { match: { resource: "file:/etc/d" }, action: repair, limits: { maxRepairsPerHour: 2 } }\n',
      ),
    );

    it('ignore, monitor and escalate change nothing; ignore even under a pause', () => {
      assert.deepEqual(pick(decide(p, drift({ resource: 'file:/etc/a' }), state())), ['ignore', 'rule']);
      assert.deepEqual(pick(decide(p, drift({ resource: 'file:/etc/a' }), state({ paused: true }))), ['ignore', 'rule']);
      assert.deepEqual(pick(decide(p, drift({ resource: 'file:/etc/b' }), state())), ['monitor', 'rule']);
      assert.deepEqual(pick(decide(p, drift({ resource: 'file:/etc/b' }), state({ paused: true }))), ['monitor', 'paused']);
    });

    it('defer: the change stands for its grace period, then is repaired, unless approved or rejected meanwhile', () => {
      const c = drift({ resource: 'file:/etc/c' });
      const first = decide(p, c, state());
      assert.deepEqual([first.action, first.until, first.reconsiderAt], ['defer', T0 + 30 * 60_000, T0 + 30 * 60_000]);
      const later = decide(p, { ...c, time: T0 + 29 * 60_000 }, state({ deferredSince: T0 }));
      assert.deepEqual([later.action, later.until], ['defer', T0 + 30 * 60_000], 'the grace period runs from the first sighting');
      const over = decide(p, { ...c, time: T0 + 30 * 60_000 }, state({ deferredSince: T0 }));
      assert.deepEqual(pick(over), ['repair', 'grace-over']);
      assert.deepEqual(pick(decide(p, { ...c, time: T0 + 60_000 }, state({ deferredSince: T0, approved: true }))), ['repair', 'approved']);
      assert.deepEqual(pick(decide(p, { ...c, time: T0 + 31 * 60_000 }, state({ deferredSince: T0, excepted: true }))), ['hold', 'excepted']);
      assert.deepEqual(pick(decide(p, { ...c, time: T0 + 31 * 60_000 }, state({ deferredSince: T0, recentRepairs: 5 }))), ['suppress', 'flapping']);
    });

    it('maxRepairsPerHour: repairs up to the cap within any hour on the host, escalates beyond it', () => {
      const ledger = new RepairLedger();
      const d = drift({ resource: 'file:/etc/d' });
      const st = (time: number): ResourceState => state({ ruleRepairs: (k) => ledger.count(k, time) });
      const decisions: PolicyDecision[] = [];
      for (const minute of [0, 10, 20, 59, 61]) {
        const time = T0 + minute * 60_000;
        const r = decide(p, { ...d, time }, st(time));
        decisions.push(r);
        if (r.action === 'repair' && r.countsAgainst) ledger.record(r.countsAgainst, time);
        if (minute === 20) assert.deepEqual(pick(decide(p, { ...d, time }, { ...st(time), approved: true })), ['repair', 'approved'], 'a human is not capped');
      }
      assert.deepEqual(decisions.map(pick), [
        ['repair', 'rule'],
        ['repair', 'rule'],
        ['escalate', 'limit'],
        ['escalate', 'limit'],
        ['repair', 'rule'],
      ]);
      assert.equal(decisions[0]?.countsAgainst, 'p@1#3');
      assert.equal(ruleKey({ document: 'p', version: 1, index: 3 }), 'p@1#3');
      assert.match(decisions[2]?.reason ?? '', /allows 2 repairs per hour on this host and 2 were made in the last hour: escalated instead/);
    });

    it('a resource in monitor mode is never changed by a rule, but can still be escalated or ignored', () => {
      const monitor = state({ policy: { ...DEFAULT_POLICY, mode: 'monitor' } });
      assert.deepEqual(pick(decide(p, drift({ resource: 'file:/etc/d' }), monitor)), ['monitor', 'monitor-mode']);
      assert.deepEqual(pick(decide(p, drift({ resource: 'file:/etc/c' }), monitor)), ['monitor', 'monitor-mode']);
      assert.deepEqual(pick(decide(p, drift({ resource: 'file:/etc/a' }), monitor)), ['ignore', 'rule']);
      const esc = set(policy('  rules:\n    - { match: { kind: file }, action: escalate }\n'));
      assert.deepEqual(pick(decide(esc, drift(), monitor)), ['escalate', 'rule']);
    });
  });

  describe('maintenance windows', () => {
    const p = set(
      policy(
        '  maintenanceWindows:\n    - { name: sunday-night, cron: "0 2 * * 0", duration: 2h }\n  rules:\n' +
          '    - { match: { window: sunday-night }, action: { defer: end-of-window } }\n    - { match: { kind: sysctl, window: none }, action: escalate }\n    - { match: { kind: sysctl }, action: repair }\n',
      ),
    );
    const sunday0230 = Date.UTC(2025, 0, 5, 2, 30);

    it('drift inside the window is deferred to its end, and decided again then', () => {
      const d = decide(p, drift({ time: sunday0230 }), state());
      assert.deepEqual([d.action, d.until, d.reconsiderAt], ['defer', Date.UTC(2025, 0, 5, 4, 0), Date.UTC(2025, 0, 5, 4, 0)]);
      assert.deepEqual(pick(decide(p, drift({ time: Date.UTC(2025, 0, 5, 4, 0) }), state())), ['repair', 'enforce'], 'the end is outside');
    });

    it('window: none holds outside every window; the decision says when a window opens', () => {
      const d = decide(p, drift({ kind: 'sysctl', resource: 'sysctl:net.ipv4.ip_forward', time: T0 }), state());
      assert.deepEqual([d.action, d.reconsiderAt], ['escalate', Date.UTC(2025, 0, 12, 2, 0)]);
    });
  });
});

describe('explaining a decision', () => {
  it('names the resource state, the last drift with its actor, the rule with its place, and why', () => {
    const p = set(policy('  rules:\n    - match: { kind: file, actor: { loginUser: "*" } }\n      action: { defer: 30m }\n      description: hotfixes stand\n', { name: 'fleet', version: 3 }));
    const actor: Actor = { source: 'audit', pid: 77, exe: '/usr/bin/vim.basic', user: 'root', uid: 0, loginUser: 'alice', loginUid: 1000 };
    const d = decide(p, drift({ actor }), state());
    const rule = describeRule(p, d.rule);
    assert.deepEqual(rule, { label: 'fleet v3 spec.rules[0]', file: 'p.yaml', line: 7, match: '{ kind: file, actor: { loginUser: * } }', action: 'defer 30m', description: 'hotfixes stand' });
    const lines = explanationLines({ resource: 'file:/etc/motd', state: 'deferred', lastDrift: { time: T0, changes: ['content'], actor }, decision: d, ...(rule ? { rule } : {}) });
    assert.deepEqual(lines.slice(0, 3), [
      'file:/etc/motd: deferred',
      'last drift: 2025-01-06T12:00:00.000Z, content, by /usr/bin/vim.basic, pid 77, user root, logged in as alice [audit]',
      'decided: defer (rule) by fleet v3 spec.rules[0]',
    ]);
    assert.equal(lines[3], '  rule at p.yaml:7: match { kind: file, actor: { loginUser: * } }, action defer 30m (hotfixes stand)');
    assert.match(lines[4] ?? '', /^ {2}why: fleet v3 spec.rules\[0\] \(hotfixes stand\) matched/);
    assert.equal(lines[5], '  until: 2025-01-06T12:30:00.000Z');
    assert.equal(describeRule(p, { baseline: 'web' }), undefined);
  });
});

function pick(d: PolicyDecision): [string, string] {
  return [d.action, d.cause];
}
