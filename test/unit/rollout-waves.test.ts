// Wave assignment and strategy parsing, pure: deterministic and stable placement, canaries first, sizes from cumulative
// percentages or host counts, and every malformed strategy refused with the field named.
import assert from 'node:assert/strict';
import { DEFAULT_STRATEGY, assignWaves, parseStrategy } from '../../controller/rollouts/waves.js';

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
});
