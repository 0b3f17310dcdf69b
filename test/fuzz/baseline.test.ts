// Fuzzing of the baseline parser and the values it reads (validate commands, source paths) with fast-check: whatever the
// input, the parser accepts it or refuses it with located issues, never crashes, and never takes longer than a bound.
// Each property runs for its share of HOMEOSTAT_FUZZ_SECONDS in a worker thread watched for inputs that hang.
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { fuzzTimeoutMs } from '../helpers/fuzz.js';
import { PARSERS, PER_INPUT_MS, documentProperties, valueProperties } from './documents.js';

/** An input still running after this is reported as a hang with the input itself. */
const HANG_MS = 4 * PER_INPUT_MS;
const SHARED_BYTES = 8 + 256 * 1024;

function runProperty(title: string, share: number): Promise<{ runs: number }> {
  const current = new SharedArrayBuffer(SHARED_BYTES);
  const counters = new Int32Array(current, 0, 2);
  const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: { title, share, current } });
  return new Promise((resolve, reject) => {
    let seen = -1;
    let since = Date.now();
    const watchdog = setInterval(() => {
      const started = Atomics.load(counters, 0);
      if (started !== seen) {
        seen = started;
        since = Date.now();
      } else if (Date.now() - since > HANG_MS) {
        clearInterval(watchdog);
        const input = new TextDecoder().decode(new Uint8Array(current, 8, Atomics.load(counters, 1)));
        void worker.terminate();
        reject(new Error(`input ${started} still running after ${HANG_MS} ms: ${JSON.stringify(input.slice(0, 2000))}`));
      }
    }, 250);
    worker.once('message', (m: { failed: boolean; runs: number; report: string }) => {
      clearInterval(watchdog);
      void worker.terminate();
      if (m.failed) reject(new Error(m.report));
      else resolve({ runs: m.runs });
    });
    worker.once('error', (err) => {
      clearInterval(watchdog);
      reject(err);
    });
  });
}

describe('fuzz: baseline parser and the values it reads', () => {
  for (const p of [...PARSERS.flatMap(documentProperties), ...valueProperties]) {
    it(p.title, async function () {
      this.timeout(fuzzTimeoutMs(p.share, HANG_MS + 30_000));
      const { runs } = await runProperty(p.title, p.share);
      assert.ok(runs > 0);
      this.test && (this.test.title += ` (${runs} inputs)`);
    });
  }
});
