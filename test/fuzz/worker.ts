// Runs one fuzz property in a worker thread, so the suite's watchdog can stop an input that hangs (a synchronous parser
// in a loop cannot be interrupted from its own thread). The input under test is kept in shared memory for the report.
import { parentPort, workerData } from 'node:worker_threads';
import fc from 'fast-check';
import { fuzzParams } from '../helpers/fuzz.js';
import { PARSERS, documentProperties, valueProperties } from './documents.js';

interface Job {
  title: string;
  share: number;
  /** [0]: inputs started; [1]: bytes of the current input in `text`. */
  current: SharedArrayBuffer;
}

const job = workerData as Job;
const counters = new Int32Array(job.current, 0, 2);
const text = new Uint8Array(job.current, 8);
const encoder = new TextEncoder();

function note(input: string): void {
  const { written } = encoder.encodeInto(input.slice(0, Math.floor(text.length / 3)), text);
  Atomics.store(counters, 1, written);
  Atomics.add(counters, 0, 1);
}

const spec = [...PARSERS.flatMap(documentProperties), ...valueProperties].find((p) => p.title === job.title);
if (!spec) throw new Error(`no fuzz property titled ${job.title}`);
const details = fc.check(spec.property(note), fuzzParams<unknown>(job.share));
// The report names the seed and path to replay, the error, and the start of the input (which may be megabytes).
const report = details.failed
  ? [
      `property failed after ${details.numRuns} inputs; replay with HOMEOSTAT_FUZZ_SEED=${details.seed} (path ${details.counterexamplePath ?? '?'})`,
      `error: ${details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)}`.slice(0, 4000),
      `input: ${JSON.stringify(details.counterexample).slice(0, 2000)}`,
    ].join('\n')
  : '';
parentPort?.postMessage({ failed: details.failed, runs: details.numRuns, report });
