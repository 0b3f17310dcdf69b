import assert from 'node:assert/strict';
import { DIFF_LIMIT_BYTES, MAX_DIFF_EDITS, unifiedDiff } from '../../lib/textdiff.js';

const lines = (n: number, f: (i: number) => string): Buffer => Buffer.from(`${Array.from({ length: n }, (_, i) => f(i)).join('\n')}\n`);

describe('text diffs', () => {
  it('shows the changed lines with three lines of context', () => {
    const d = unifiedDiff('/etc/motd', lines(20, (i) => `line ${i}`), lines(20, (i) => (i === 10 ? 'changed' : `line ${i}`)));
    assert.ok(d);
    assert.match(d, /^-line 10$/m);
    assert.match(d, /^\+changed$/m);
    assert.match(d, /^ line 7$/m);
    assert.doesNotMatch(d, /^ line 6$/m);
  });

  it('gives no diff for binary content or content over the size limit', () => {
    assert.equal(unifiedDiff('x', Buffer.from([0, 1, 2]), Buffer.from('text\n')), undefined);
    const big = Buffer.alloc(DIFF_LIMIT_BYTES + 1, 'a');
    assert.equal(unifiedDiff('x', big, Buffer.from('a\n')), undefined);
  });

  it(`computes a diff of up to ${MAX_DIFF_EDITS} changed lines and none beyond, whatever the size of the file`, () => {
    const base = lines(2000, (i) => `line ${i}`);
    // Each changed line is one removal and one addition. No wall-clock cap here: the bound on edits alone is what is tested.
    const within = unifiedDiff('f', base, lines(2000, (i) => (i < MAX_DIFF_EDITS / 2 ? `new ${i}` : `line ${i}`)), DIFF_LIMIT_BYTES, Infinity);
    assert.ok(within, 'a diff within the bound');
    assert.equal(within.split('\n').filter((l) => l.startsWith('+new')).length, MAX_DIFF_EDITS / 2);
    assert.equal(unifiedDiff('f', base, lines(2000, (i) => (i <= MAX_DIFF_EDITS / 2 ? `new ${i}` : `line ${i}`)), DIFF_LIMIT_BYTES, Infinity), undefined);
  });

  it('returns at once on the inputs that made a single diff run for over a minute', () => {
    // 16,000 short lines, every one changed, both sides under the 64 KiB limit: unbounded, this took 76 s.
    const a = lines(16_000, (i) => `a${i % 10}`);
    const b = lines(16_000, (i) => `b${i % 10}`);
    assert.ok(a.length < DIFF_LIMIT_BYTES && b.length < DIFF_LIMIT_BYTES);
    assert.equal(unifiedDiff('f', a, b), undefined);
    // 5,000 lines each changed at its end (8.6 s unbounded).
    assert.equal(unifiedDiff('f', lines(5000, (i) => `line ${i} x`), lines(5000, (i) => `line ${i} y`)), undefined);
  });
});
