// Patterns in a resource's drift history: the named opponent of a fight, and drift predicted from a daily or hourly habit.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { actorLabel, findFight, predictDrift, type Actor, type DriftEvent } from '../../lib/policy/index.js';

const MIN = 60_000;
const H = 60 * MIN;
const DAY = 24 * H;
const T0 = Date.UTC(2025, 0, 6, 12, 0);

const puppet: Actor = { source: 'audit', pid: 4242, exe: '/usr/bin/puppet', unit: 'puppet.service', user: 'root', uid: 0 };
const alice: Actor = { source: 'audit', pid: 777, exe: '/usr/bin/vim.basic', cmdline: 'vim /etc/motd', loginUser: 'alice', loginUid: 1000 };

function at(minutes: number[], actor: Actor | undefined, changes: string[] = ['content']): DriftEvent[] {
  return minutes.map((m) => ({ time: T0 + m * MIN, changes, ...(actor ? { actor: { ...actor, pid: (actor.pid ?? 0) + m } } : {}) }));
}

describe('drift patterns', () => {
  describe('fights', () => {
    it('names the opponent that keeps re-creating the same drift', () => {
      const history = at([0, 2, 4, 5, 7, 9], puppet);
      const f = findFight(history, { now: T0 + 9 * MIN + 30_000, windowMs: 10 * MIN });
      assert.ok(f);
      assert.equal(f.opponent, '/usr/bin/puppet (puppet.service)');
      assert.equal(f.changes, 6);
      assert.equal(f.message, 'fighting /usr/bin/puppet (puppet.service): 6 changes in 9 min');
      assert.equal(f.actor.pid, 4242 + 9, 'the latest drift details');
    });

    it('names a script by the script it runs, not only its interpreter', () => {
      const loop: Actor = { source: 'audit', exe: '/usr/bin/bash', cmdline: 'bash -e /opt/fix-motd.sh --force', unit: 'session-3.scope' };
      assert.equal(actorLabel(loop), '/usr/bin/bash /opt/fix-motd.sh (session-3.scope)');
      const f = findFight(at([0, 1, 2], loop), { now: T0 + 3 * MIN, windowMs: 10 * MIN });
      assert.equal(f?.message, 'fighting /usr/bin/bash /opt/fix-motd.sh (session-3.scope): 3 changes in 2 min');
    });

    it('is no fight below the minimum, outside the window, for unknown actors, the agent itself, or a minority', () => {
      assert.equal(findFight(at([0, 5], puppet), { now: T0 + 6 * MIN, windowMs: 10 * MIN }), undefined);
      assert.equal(findFight(at([0, 1, 2], puppet), { now: T0 + 20 * MIN, windowMs: 10 * MIN }), undefined);
      assert.equal(findFight(at([0, 1, 2, 3], undefined), { now: T0 + 4 * MIN, windowMs: 10 * MIN }), undefined);
      assert.equal(findFight(at([0, 1, 2, 3], { source: 'unknown' }), { now: T0 + 4 * MIN, windowMs: 10 * MIN }), undefined);
      assert.equal(findFight(at([0, 1, 2, 3], { source: 'self', pid: 1, exe: '/usr/bin/homeostat-agent' }), { now: T0 + 4 * MIN, windowMs: 10 * MIN }), undefined);
      const mixed = [...at([0, 1, 2], puppet), ...at([3, 4, 5], alice)];
      assert.equal(findFight(mixed, { now: T0 + 6 * MIN, windowMs: 10 * MIN }), undefined, 'two opponents of equal weight: nobody is named');
    });

    it('counts the same kind of change only', () => {
      const history = [...at([0, 2], puppet, ['content']), ...at([4], puppet, ['mode'])];
      assert.equal(findFight(history, { now: T0 + 5 * MIN, windowMs: 10 * MIN }), undefined);
      assert.equal(findFight(history, { now: T0 + 5 * MIN, windowMs: 10 * MIN, minChanges: 2 })?.changes, 2);
    });

    it('never names anyone when nobody is known (property)', () => {
      fc.assert(
        fc.property(fc.array(fc.record({ time: fc.integer({ min: T0, max: T0 + H }), changes: fc.constant(['content']) })), (history) => {
          assert.equal(findFight(history, { now: T0 + H, windowMs: H }), undefined);
        }),
      );
    });
  });

  describe('predictions', () => {
    it('a change at about the same time each day is predicted for the next day', () => {
      const history = [0, 1, 2, 3].map((d) => ({ time: Date.UTC(2025, 0, 1 + d, 3, 0) + (d % 2 ? 4 : -3) * MIN, changes: ['content'] }));
      const [p] = predictDrift(history, { now: Date.UTC(2025, 0, 4, 12, 0) });
      assert.ok(p);
      assert.equal(p.period, 'day');
      assert.equal(p.occurrences, 4);
      assert.ok(Math.abs(p.next - Date.UTC(2025, 0, 5, 3, 0)) <= 2 * MIN, new Date(p.next).toISOString());
      assert.match(p.message, /^content changes every day at about 0[23]:[0-9]{2} UTC \(seen in 4 days\); next expected 2025-01-05T0/);
    });

    it('a change at the same minute each hour is hourly, not daily', () => {
      const history = [0, 1, 2, 3, 4].map((h) => ({ time: T0 + h * H + 17 * MIN, changes: ['mode'] }));
      const [p] = predictDrift(history, { now: T0 + 4 * H + 30 * MIN });
      assert.equal(p?.period, 'hour');
      assert.equal(p?.next, T0 + 5 * H + 17 * MIN);
      assert.equal(p?.change, 'mode');
    });

    it('needs enough occurrences, close enough in time, recently and regularly', () => {
      const day = (d: number, minute = 0): DriftEvent => ({ time: Date.UTC(2025, 0, 1 + d, 3, minute), changes: ['content'] });
      assert.deepEqual(predictDrift([day(0), day(1)], { now: Date.UTC(2025, 0, 3) }), [], 'two days are a coincidence');
      assert.deepEqual(predictDrift([day(0), day(1, 40), day(2, 80)], { now: Date.UTC(2025, 0, 4) }), [], 'drifting times are no schedule');
      assert.deepEqual(predictDrift([day(0), day(1), day(2)], { now: Date.UTC(2025, 0, 10) }), [], 'the habit stopped');
      assert.deepEqual(predictDrift([day(0), day(9), day(19)], { now: Date.UTC(2025, 0, 20, 12) }), [], 'three days out of twenty is not a schedule');
      assert.equal(predictDrift([day(0), day(1), day(2)], { now: Date.UTC(2025, 0, 3, 12) }).length, 1);
    });

    it('predicts each kind of change on its own, and around midnight', () => {
      const history = [0, 1, 2].flatMap((d) => [
        { time: Date.UTC(2025, 0, 1 + d, 23, 58), changes: ['content'] },
        { time: Date.UTC(2025, 0, 2 + d, 0, 2), changes: ['content'] },
        { time: Date.UTC(2025, 0, 1 + d, 12, 0), changes: ['owner', 'mode'] },
      ]);
      const found = predictDrift(history, { now: Date.UTC(2025, 0, 4, 6) });
      assert.deepEqual(found.map((p) => p.change).sort(), ['content', 'mode,owner']);
      const midnight = found.find((p) => p.change === 'content');
      assert.ok(midnight && (midnight.phaseMs < 2 * MIN || midnight.phaseMs > DAY - 2 * MIN), String(midnight?.phaseMs));
    });
  });
});
