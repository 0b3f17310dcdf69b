// The deduplicating work queue: bounded by keys, never two runs of one key at once, a dirty key goes round again.
import assert from 'node:assert/strict';
import { WorkQueue } from '../../agent/engine/queue.js';

describe('work queue', () => {
  it('folds a storm of events for one key into at most one pending run', async () => {
    const runs: string[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const q = new WorkQueue(async (key) => {
      runs.push(key);
      if (runs.length === 1) await gate;
    }, 4);
    q.add('a', 'watch');
    for (let i = 0; i < 10_000; i++) q.add('a', 'watch');
    assert.equal(q.size, 1, 'one running, the storm folded into one redo');
    release();
    await q.idle();
    assert.deepEqual(runs, ['a', 'a']);
  });

  it('never runs one key twice at once, and respects the concurrency bound', async () => {
    let active = 0;
    let peak = 0;
    const activeKeys = new Set<string>();
    const q = new WorkQueue(async (key) => {
      assert.ok(!activeKeys.has(key));
      activeKeys.add(key);
      active++;
      peak = Math.max(peak, active);
      await new Promise((r) => setTimeout(r, 2));
      active--;
      activeKeys.delete(key);
    }, 3);
    for (let round = 0; round < 5; round++) for (let k = 0; k < 20; k++) q.add(`k${k}`, 'poll');
    await q.idle();
    assert.ok(peak <= 3);
  });

  it('keeps the first trigger of a pending key', async () => {
    const seen: string[] = [];
    const q = new WorkQueue(async (key, trigger) => {
      seen.push(`${key}:${trigger}`);
    }, 1);
    q.add('x', 'startup');
    q.add('y', 'startup');
    q.add('y', 'watch');
    await q.idle();
    assert.deepEqual(seen, ['x:startup', 'y:startup']);
  });

  it('goes on when a unit of work throws or rejects, reporting it, and still says when it is idle', async () => {
    const done: string[] = [];
    const errors: string[] = [];
    const q = new WorkQueue(
      async (key) => {
        if (key === 'sync') throw new Error('thrown');
        if (key === 'async') await Promise.reject(new Error('rejected'));
        done.push(key);
      },
      2,
      (key, err) => errors.push(`${key}: ${(err as Error).message}`),
    );
    for (const k of ['sync', 'async', 'a', 'b', 'sync', 'c']) q.add(k, 'poll');
    await q.idle();
    assert.deepEqual(done.sort(), ['a', 'b', 'c']);
    assert.deepEqual(errors.sort(), ['async: rejected', 'sync: thrown', 'sync: thrown']);
    q.add('d', 'poll');
    await q.idle();
    assert.deepEqual(done.sort(), ['a', 'b', 'c', 'd']);
  });
});
