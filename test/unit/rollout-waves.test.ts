// Wave assignment and strategy parsing, pure: deterministic and stable placement, canaries first, sizes from cumulative
// percentages or host counts, and every malformed strategy refused with the field named.
import assert from 'node:assert/strict';
import { rolloutView } from '../../controller/rollouts/view.js';
import { DEFAULT_STRATEGY, assignWaves, parseStrategy, parseWave, soakEnd } from '../../controller/rollouts/waves.js';
import type { RolloutHostRecord, RolloutRecord } from '../../controller/store/types.js';

const fleet = (n: number, canaries = 0): { id: string; labels: Record<string, string> }[] =>
  Array.from({ length: n }, (_, i) => ({ id: `ag-${i}`, labels: i < canaries ? { canary: 'yes' } : ({} as Record<string, string>) }));

const sizes = (m: Map<string, number>): number[] => {
  const out: number[] = [];
  for (const w of m.values()) out[w] = (out[w] ?? 0) + 1;
  return out;
};

describe('rollout waves', () => {
  it('defaults to 1 host, 10 %, 50 %, 100 %', () => {
    assert.deepEqual(sizes(assignWaves(fleet(1000), DEFAULT_STRATEGY, 's')), [1, 99, 400, 500]);
  });

  it('places the same hosts in the same waves for the same seed, and differently for another rollout', () => {
    const a = assignWaves(fleet(200), DEFAULT_STRATEGY, 'rollout-1');
    assert.deepEqual([...assignWaves([...fleet(200)].reverse(), DEFAULT_STRATEGY, 'rollout-1')].sort(), [...a].sort(), 'input order does not matter');
    const b = assignWaves(fleet(200), DEFAULT_STRATEGY, 'rollout-2');
    assert.notDeepEqual([...a].filter(([, w]) => w === 0), [...b].filter(([, w]) => w === 0));
  });

  it('puts every canary first, in the first wave even past its size', () => {
    const { spec } = parseStrategy({ waves: [{ hosts: 1 }, 50, 100], canary: { matchLabels: { canary: 'yes' } } });
    const m = assignWaves(fleet(10, 3), spec, 's');
    assert.deepEqual(['ag-0', 'ag-1', 'ag-2'].map((id) => m.get(id)), [0, 0, 0]);
    assert.deepEqual(sizes(m), [3, 2, 5]);
  });

  it('drops waves that would add nobody and always ends with everyone', () => {
    assert.deepEqual(sizes(assignWaves(fleet(3), DEFAULT_STRATEGY, 's')), [1, 1, 1]);
    assert.deepEqual(sizes(assignWaves(fleet(5), parseStrategy({ waves: [{ hosts: 1 }, 50] }).spec, 's')), [1, 2, 2]);
    assert.equal(assignWaves([], DEFAULT_STRATEGY, 's').size, 0);
  });

  it('reads durations and refuses malformed strategies naming the field', () => {
    assert.equal(parseStrategy({ gate: { soakSeconds: '2m' } }).spec.gate.soakSeconds, 120);
    assert.equal(parseStrategy('all-at-once').kind, 'all-at-once');
    assert.throws(() => parseStrategy({ waves: [0] }), /strategy\.waves\[0\]/);
    assert.throws(() => parseStrategy({ gate: { maxFailedHosts: -1 } }), /maxFailedHosts/);
    assert.throws(() => parseStrategy({ colour: 'blue' }), /strategy\.colour/);
    assert.throws(() => parseStrategy({ canary: { matchLabels: { a: 1 } } }), /strategy\.canary/);
  });

  it('waits for decisions on escalations by default, as the strategy says otherwise, never when all at once', () => {
    assert.equal(parseStrategy(undefined).spec.onEscalation, 'pause');
    assert.equal(parseStrategy({}).spec.onEscalation, 'pause');
    assert.equal(parseStrategy({ onEscalation: 'ignore' }).spec.onEscalation, 'ignore');
    assert.equal(parseStrategy({ onEscalation: 'fail' }).spec.onEscalation, 'fail');
    assert.equal(parseStrategy('all-at-once').spec.onEscalation, 'ignore');
    assert.throws(() => parseStrategy({ onEscalation: 'wait' }), /strategy\.onEscalation: "wait"; expected "pause"/);
  });

  it('reads waves as text without ambiguity: 10% or 10, 1host, 3hosts, hosts:3; refuses 1h with a hint', () => {
    assert.equal(parseWave('10%', 'w'), 10);
    assert.equal(parseWave('10', 'w'), 10);
    assert.equal(parseWave('100%', 'w'), 100);
    assert.deepEqual(parseWave('1host', 'w'), { hosts: 1 });
    assert.deepEqual(parseWave('3hosts', 'w'), { hosts: 3 });
    assert.deepEqual(parseWave('hosts:3', 'w'), { hosts: 3 });
    assert.throws(() => parseWave('1h', '--waves (wave 1)'), /--waves \(wave 1\): "1h" is ambiguous \(1 host, or 1 hour\?\); write 1host \(or hosts:1\)/);
    assert.throws(() => parseWave('5h', 'w'), /write 5hosts \(or hosts:5\) for a number of hosts, 5% for a share/);
    assert.throws(() => parseWave('0hosts', 'w'), /at least 1 host/);
    assert.throws(() => parseWave('150%', 'w'), /not a percentage/);
    assert.throws(() => parseWave('half', 'w'), /expected a percentage \(10%, or 10\) or a number of hosts/);
    assert.deepEqual(parseStrategy({ waves: ['1host', '50%', 100] }).spec.waves, [{ hosts: 1 }, 50, 100]);
    assert.throws(() => parseStrategy({ waves: ['1h', 100] }), /strategy\.waves\[0\]: "1h" is ambiguous/);
  });

  it('counts waves from 1 in the view and says until when the current wave soaks', () => {
    const now = 1_700_000_000_000;
    const host = (agentId: string, wave: number, status: RolloutHostRecord['status'], updatedAt: number): RolloutHostRecord =>
      ({ rolloutId: 1, agentId, wave, status, reason: null, updatedAt, rolledBack: false, escalations: [] }) as unknown as RolloutHostRecord;
    const spec = parseStrategy({ waves: [{ hosts: 1 }, 100], gate: { soakSeconds: 600 } }).spec;
    const r = { id: 1, document: 'baseline', baseline: 'web', version: 2, previousVersion: 1, strategy: 'waves', spec, state: 'running', currentWave: 0, waveStartedAt: now - 60_000, signed: null } as unknown as RolloutRecord;
    const hosts = [host('a', 0, 'converged', now - 30_000), host('b', 1, 'waiting', now - 60_000)];
    assert.equal(soakEnd(r, [hosts[0] as RolloutHostRecord], now), now - 30_000 + 600_000);
    assert.equal(soakEnd(r, [host('a', 0, 'sent', now)], now), undefined, 'not settled: no soak yet');
    const v = rolloutView(r, hosts, [{ id: 1, time: now, kind: 'wave_started', rolloutId: 1, baseline: 'web', detail: { wave: 0 } }], [], { hosts: true, now });
    assert.equal(v.currentWave, 1);
    assert.equal(v.waveCount, 2);
    assert.deepEqual((v.waves as { wave: number; state: string }[]).map((w) => [w.wave, w.state]), [[1, 'running'], [2, 'pending']]);
    assert.deepEqual((v.hosts as { wave: number }[]).map((h) => h.wave), [1, 2]);
    assert.deepEqual((v.steps as { wave: number }[]).map((s) => s.wave), [1]);
    assert.equal(v.soakingUntil, now - 30_000 + 600_000);
    assert.equal(rolloutView({ ...r, state: 'paused' } as RolloutRecord, hosts, [], [], { hosts: false, now }).soakingUntil, null, 'no soak while paused');
    assert.equal(rolloutView(r, hosts, [], [], { hosts: false, now: now + 600_000 }).soakingUntil, null, 'the soak is over');
  });
});
