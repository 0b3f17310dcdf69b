// The safety rules of tuning, one at a time: what is never proposed (drift an operator once rejected, critical drift,
// kinds of change a rule cannot name), each bound of autotuning, the settings' checks, and a webhook that fails or hangs.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ManualClock } from '../../lib/clock.js';
import { silentLogger } from '../../lib/log.js';
import { compileGlob } from '../../lib/policy/glob.js';
import { confidence } from '../../lib/tuning/confidence.js';
import { Announcer } from '../../controller/tuning/announce.js';
import { autotuneVerdict, type VerdictInput } from '../../controller/tuning/autotune.js';
import { OutcomeAcc, resourceKey, type Outcomes, type ResourceKey } from '../../controller/tuning/outcomes.js';
import { literalPattern, propose } from '../../controller/tuning/propose.js';
import { checkPatch, settingsFrom, DEFAULT_SETTINGS } from '../../controller/tuning/settings.js';
import { SqliteControllerStore } from '../../controller/store/sqlite.js';

function outcomes(entries: [ResourceKey, Partial<OutcomeAcc>][]): Outcomes {
  const byResource = new Map<string, { key: ResourceKey; acc: OutcomeAcc }>();
  for (const [key, fields] of entries) {
    const acc = Object.assign(new OutcomeAcc(), fields);
    if (acc.hosts.size === 0) acc.hosts.add('h1');
    byResource.set(resourceKey(key), { key, acc });
  }
  return { since: 0, until: 1, recurrenceWindowMs: 3_600_000, records: 0, byResource, byRule: new Map(), byActor: new Map() };
}

const approvedEveryTime = (n: number): Partial<OutcomeAcc> => ({ drifts: n, escalations: n, approvals: n, risk: 'high', decisionMs: Array.from({ length: n }, () => 600_000) });
const motd: ResourceKey = { baseline: 'web', resource: 'file:/etc/motd', change: ['content'] };

describe('tuning: what is never proposed', () => {
  it('proposes auto-repair for drift approved every time', () => {
    const drafts = propose(outcomes([[motd, approvedEveryTime(5)]]), { rejectedResources: new Set() });
    assert.deepEqual(drafts.map((d) => [d.kind, d.target.resource]), [['auto-repair', 'file:/etc/motd']]);
  });

  it('never proposes auto-repair of critical drift, however often it was approved', () => {
    assert.deepEqual(propose(outcomes([[motd, { ...approvedEveryTime(50), risk: 'critical' }]]), { rejectedResources: new Set() }), []);
  });

  it('never proposes auto-repair or a grace period for a resource an operator once rejected, on any host, at any time kept', () => {
    assert.deepEqual(propose(outcomes([[motd, approvedEveryTime(50)]]), { rejectedResources: new Set(['file:/etc/motd']) }), []);
    const person = { ...approvedEveryTime(50), attributed: 50, byPerson: 50 };
    assert.deepEqual(propose(outcomes([[motd, person]]), { rejectedResources: new Set(['file:/etc/motd']) }), []);
    assert.deepEqual(propose(outcomes([[motd, { ...approvedEveryTime(50), rejections: 1 }]]), { rejectedResources: new Set() }), [], 'nor an exception: it was approved too');
  });

  it('needs three approvals, and escalations to move: drift the hosts already repair is left alone', () => {
    assert.deepEqual(propose(outcomes([[motd, approvedEveryTime(2)]]), { rejectedResources: new Set() }), []);
    assert.deepEqual(propose(outcomes([[motd, { ...approvedEveryTime(5), escalations: 0 }]]), { rejectedResources: new Set() }), []);
  });

  it('proposes nothing for kinds of change a rule cannot name', () => {
    assert.deepEqual(propose(outcomes([[{ ...motd, change: ['content', 'leftovers'] }, approvedEveryTime(9)]]), { rejectedResources: new Set() }), []);
  });

  it('names a resource literally in the rule, whatever characters its id holds', () => {
    const odd: ResourceKey = { baseline: 'web', resource: 'file:/etc/a*b?c\\d', change: ['mode'] };
    const [d] = propose(outcomes([[odd, approvedEveryTime(4)]]), { rejectedResources: new Set() });
    const pattern = (d?.rule.match as { resource: string }).resource;
    assert.equal(pattern, 'file:/etc/a\\*b\\?c\\\\d');
    assert.ok(compileGlob(pattern).matches(odd.resource));
    assert.ok(!compileGlob(pattern).matches('file:/etc/aXbYc\\d'));
    assert.equal(literalPattern('file:/x'), 'file:/x');
  });
});

describe('tuning: the bounds of autotuning', () => {
  const ok: VerdictInput = {
    kind: 'auto-repair',
    evidence: { rejections: 0, rejectedEver: false, risk: 'high' },
    confidence: confidence(20, 0),
    backtest: { overriddenRejections: 0, criticalAutoRepaired: 0, transitions: { 'escalate->repair': 20 }, affected: 20 },
  };
  const reasons = (over: Partial<VerdictInput>, min = 0.8): string[] => autotuneVerdict({ ...ok, ...over }, min).reasons;

  it('applies a proposal that passes every bound', () => {
    assert.deepEqual(autotuneVerdict(ok, 0.8), { eligible: true, reasons: [] });
  });

  it('never applies one whose backtest overrides an operator rejection or repairs critical drift by itself', () => {
    assert.deepEqual(reasons({ backtest: { ...(ok.backtest as NonNullable<VerdictInput['backtest']>), overriddenRejections: 1 } }), ['its backtest overrides 1 operator rejection(s)']);
    assert.deepEqual(reasons({ backtest: { ...(ok.backtest as NonNullable<VerdictInput['backtest']>), criticalAutoRepaired: 2 } }), [
      'its backtest repairs 2 critical-risk drift(s) without an operator',
    ]);
    assert.deepEqual(reasons({ evidence: { rejections: 0, rejectedEver: true } }), ['an operator once rejected drift of this resource']);
    assert.deepEqual(reasons({ evidence: { rejections: 0, risk: 'critical' } }), ['the resource is critical-risk']);
    assert.deepEqual(reasons({ backtest: null }), ['it has no backtest']);
  });

  it('judges the change against the policies in force when the backtest says what the change alone does', () => {
    const inForce = { overriddenRejections: 3, criticalAutoRepaired: 1, transitions: { 'escalate->repair': 23 }, affected: 24 };
    const change = { overriddenRejections: 0, criticalAutoRepaired: 0, transitions: { 'escalate->repair': 20 }, affected: 20 };
    assert.deepEqual(reasons({ backtest: { ...inForce, change } }), []);
    assert.deepEqual(reasons({ backtest: { ...change, change: { ...change, overriddenRejections: 1 } } }), ['its backtest overrides 1 operator rejection(s)']);
  });

  it('only moves escalations to repairs or grace periods, or adds an exception granted twice', () => {
    assert.deepEqual(reasons({ backtest: { overriddenRejections: 0, criticalAutoRepaired: 0, transitions: { 'escalate->repair': 3, 'monitor->repair': 2 }, affected: 5 } }), [
      'its backtest also changes 2 decision(s) monitor to repair',
    ]);
    assert.deepEqual(reasons({ kind: 'defer', backtest: { overriddenRejections: 0, criticalAutoRepaired: 0, transitions: { 'escalate->defer': 4 }, affected: 4 } }), []);
    const exception: Partial<VerdictInput> = {
      kind: 'exception',
      evidence: { rejections: 2 },
      backtest: { overriddenRejections: 0, criticalAutoRepaired: 0, transitions: { 'escalate->monitor': 2 }, affected: 2 },
      confidence: confidence(30, 0),
    };
    assert.deepEqual(reasons(exception), []);
    assert.deepEqual(reasons({ ...exception, evidence: { rejections: 1 } }), ['operators granted this exception 1 time(s); autotuning adds one granted at least 2 times']);
    assert.deepEqual(reasons({ kind: 'coordination' }), ['a coordination proposal is never applied automatically']);
    assert.deepEqual(reasons({ kind: 'maintenance-window' }), ['a maintenance-window proposal is never applied automatically']);
    assert.deepEqual(reasons({ backtest: { overriddenRejections: 0, criticalAutoRepaired: 0, transitions: {}, affected: 0 } }), ['its backtest changes no decision']);
  });

  it('needs the lower end of the credible interval at the threshold', () => {
    // Beta(10, 1): 5 % quantile 0.05^(1/10) = 0.741.
    assert.deepEqual(reasons({ confidence: confidence(9, 0) }), ['its confidence interval starts at 0.741, below 0.8']);
    assert.deepEqual(reasons({ confidence: confidence(9, 0) }, 0.7), []);
  });
});

describe('tuning: settings', () => {
  it('has autotuning off by default and reads unknown or bad stored values as defaults', () => {
    assert.equal(DEFAULT_SETTINGS.mode, 'off');
    assert.deepEqual(settingsFrom(undefined), DEFAULT_SETTINGS);
    assert.deepEqual(settingsFrom({ mode: 'bounded', minConfidence: 0.9 }), { ...DEFAULT_SETTINGS, mode: 'bounded', minConfidence: 0.9 });
    assert.deepEqual(settingsFrom({ mode: 'sometimes' }), DEFAULT_SETTINGS);
  });

  it('refuses each bad value by name', () => {
    assert.throws(() => checkPatch({ refreshInterval: '10s' }), /refreshInterval: expected a duration from 1m to 30d/);
    assert.throws(() => checkPatch({ recurrenceWindow: 5 }), /recurrenceWindow: expected a duration/);
    assert.throws(() => checkPatch({ webhook: 'not a url' }), /webhook: expected null or an http/);
    assert.throws(() => checkPatch({ ['__proto__x']: 1 }), /unknown setting "__proto__x"/);
    assert.deepEqual(checkPatch({ webhook: null, lookback: '7d', updatedAt: 1 }), { webhook: null, lookback: '7d' });
  });
});

describe('tuning: announcements', () => {
  it('records a webhook that answers an error or does not answer in time, and goes on', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hs-tuning-hook-'));
    const store = new SqliteControllerStore(path.join(dir, 'c.db'));
    const requests: string[] = [];
    const server = createServer((req, res) => {
      requests.push(req.url ?? '');
      if (req.url === '/slow') return; // never answers
      res.statusCode = 500;
      res.end('no');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    try {
      const a = new Announcer(store, new ManualClock(1000), silentLogger, 300);
      const change = { kind: 'autotune_applied' as const, proposal: { id: 7, kind: 'auto-repair', target: { baseline: 'web' }, rationale: 'r' }, policy: { name: 'homeostat-tuning', version: 2 }, by: 'autotune' };
      await a.announce(change, `http://127.0.0.1:${port}/error`);
      await a.announce(change, `http://127.0.0.1:${port}/slow`);
      await a.announce({ ...change, kind: 'proposal_accepted', by: 'carol' }, `http://127.0.0.1:${port}/human`);
      const events = await store.listControllerEvents({});
      assert.deepEqual(
        events.map((e) => [e.kind, e.baseline, e.detail.error === undefined ? null : String(e.detail.error).slice(0, 12)]),
        [
          ['autotune_applied', 'web', null],
          ['tuning_webhook_failed', null, 'answered 500'],
          ['autotune_applied', 'web', null],
          ['tuning_webhook_failed', null, 'The operatio'],
          ['proposal_accepted', 'web', null],
        ],
      );
      assert.deepEqual(requests, ['/error', '/slow'], 'an operator\'s own acceptance is not sent to the webhook');
    } finally {
      server.closeAllConnections();
      server.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
