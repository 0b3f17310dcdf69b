// How long a change's audit record takes to become readable in auditd's log: from just before the write (open with
// O_TRUNC, the audited call) to the moment the log follower has read the line of its SYSCALL record. This bounds how long
// the engine must wait for an actor. Needs root and a running auditd.
//   npm run build && node dist/bench/audit-latency.js [--writes 500]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuditLogTail } from '../agent/actor/audit-tail.js';
import { auditdState, AuditWatchRules } from '../agent/host/auditd.js';
import { silentLogger } from '../lib/log.js';

const writes = Number(process.argv[process.argv.indexOf('--writes') + 1]) || 500;
const key = `hs-bench${process.pid}`;

const state = await auditdState();
if (!state.running || !state.logFile) {
  console.error(`auditd is not usable: ${state.reason ?? 'no log'}`);
  process.exit(1);
}
const dir = mkdtempSync(path.join(tmpdir(), 'hs-audit-bench-'));
const file = path.join(dir, 'watched');
const rules = new AuditWatchRules({ key, log: silentLogger });
await rules.removeStale();
await rules.set([{ path: file, perms: 'wa' }]);

let seen = 0;
const tail = new AuditLogTail({
  file: state.logFile,
  log: silentLogger,
  pollMs: 60_000,
  onLine: (l) => {
    if (l.startsWith('type=SYSCALL') && l.includes(`pid=${process.pid} `) && l.includes(`key="${key}"`)) seen++;
  },
});
tail.start();

const latencies: number[] = [];
let missed = 0;
for (let i = 0; i < writes; i++) {
  // Idle gaps of different lengths: records of a busy and of a quiet moment.
  await new Promise((r) => setTimeout(r, i % 10 === 0 ? 50 : 2));
  const before = seen;
  const t0 = performance.now();
  writeFileSync(file, String(i));
  // Spin on the log: the record is written by auditd, another process; nothing in this one can deliver it sooner.
  while (seen === before && performance.now() - t0 < 2000) tail.readNow();
  if (seen === before) missed++;
  else latencies.push(performance.now() - t0);
}
tail.stop();
await rules.clear();
rmSync(dir, { recursive: true, force: true });

latencies.sort((a, b) => a - b);
const pct = (p: number): string => (latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN).toFixed(2);
console.log(`audit record latency, syscall to readable line, ${latencies.length} writes (${missed} not seen within 2 s)`);
console.log(`  p50 ${pct(50)} ms   p90 ${pct(90)} ms   p99 ${pct(99)} ms   max ${(latencies[latencies.length - 1] ?? NaN).toFixed(2)} ms`);
console.log(`  log format ${state.logFormat}, log ${state.logFile}`);
