// The cost of one diff on the worst inputs a local user can write into a managed file (under the 64 KiB limit):
// p50/p99/max milliseconds per diff over several runs of each shape. Budget (PRODUCT.md): a diff of any managed file ≤ 50 ms.
//   npm run build && node dist/bench/diff.js [--runs 50]
import { unifiedDiff } from '../lib/textdiff.js';

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 50;
const lines = (n: number, f: (i: number) => string): Buffer => Buffer.from(`${Array.from({ length: n }, (_, i) => f(i)).join('\n')}\n`);

const shapes: [string, Buffer, Buffer][] = [
  ['32,767 one-character lines, all changed', lines(32_767, () => 'a'), lines(32_767, () => 'b')],
  ['16,000 short lines, all changed', lines(16_000, (i) => `a${i % 10}`), lines(16_000, (i) => `b${i % 10}`)],
  ['5,000 lines, each changed at its end', lines(5000, (i) => `line ${i} x`), lines(5000, (i) => `line ${i} y`)],
  ['2,000 lines, every other changed', lines(2000, (i) => `line ${i}`), lines(2000, (i) => (i % 2 ? `line ${i}` : `changed ${i}`))],
  ['32,767 lines, interleaved patterns', lines(32_767, (i) => (i % 3 ? 'a' : 'b')), lines(32_767, (i) => (i % 5 ? 'a' : 'b'))],
  ['2,000 lines, 10 changed (a typical drift)', lines(2000, (i) => `line ${i}`), lines(2000, (i) => (i % 200 === 0 ? `edit ${i}` : `line ${i}`))],
];

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
console.log(`diff cost, ${runs} runs per shape (ms per diff)`);
let worst = 0;
for (const [name, a, b] of shapes) {
  const times: number[] = [];
  let shown = false;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    shown = unifiedDiff('f', a, b) !== undefined;
    times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  worst = Math.max(worst, times[times.length - 1] ?? 0);
  console.log(`  ${name.padEnd(44)} p50 ${pct(times, 50).toFixed(1).padStart(5)}  p99 ${pct(times, 99).toFixed(1).padStart(5)}  max ${(times[times.length - 1] ?? 0).toFixed(1).padStart(5)}  ${shown ? 'diff shown' : 'too many changes: hashes only'}`);
}
console.log(`worst single diff: ${worst.toFixed(1)} ms (budget 50 ms)`);
