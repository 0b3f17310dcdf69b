// Benchmark: an agent cut off from its controller buffers a million audit records. Appends RECORDS drift/repair pairs'
// worth of records through the agent store (as the engine does), with the outbox at its default bound, then prints the
// database's size on disk, what the outbox holds and dropped, the process's peak memory, and how long `audit --verify`
// and reading the first delivery batch take.
//
//   node_modules/.bin/node dist/bench/offline-outbox.js        # knobs: RECORDS=1000000 RESOURCES=10000
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AgentStore, DEFAULT_OUTBOX_LIMIT } from '../agent/store/store.js';
import type { NewAuditEntry } from '../agent/store/types.js';

const RECORDS = Number(process.env.RECORDS ?? 1_000_000);
const RESOURCES = Number(process.env.RESOURCES ?? 10_000);

function peakRssMb(): number {
  const status = (globalThis.process.resourceUsage?.().maxRSS ?? 0) / 1024;
  return status;
}

const dir = mkdtempSync(path.join(tmpdir(), 'hs-outbox-'));
try {
  const store = AgentStore.open(dir);
  const t0 = performance.now();
  for (let i = 0; i < RECORDS; i++) {
    const r = i % RESOURCES;
    const drift = i % 2 === 0;
    const e: NewAuditEntry = {
      time: Date.now(),
      resource: `file:/etc/app/d${Math.floor(r / 100)}/f${r}.conf`,
      event: drift ? 'drift_detected' : 'repaired',
      trigger: 'watch',
      baseline: 'workload',
      version: 1,
      observed: drift ? { exists: true, type: 'file', sha256: (i % 97).toString(16).padStart(64, 'a'), size: 45, mode: '0644', owner: 'root', group: 'root' } : { exists: true, type: 'file', sha256: 'c'.repeat(64), size: 45, mode: '0644', owner: 'root', group: 'root' },
      desired: { exists: true, type: 'file', sha256: 'c'.repeat(64), size: 45, mode: '0644', owner: 'root', group: 'root' },
      diff: drift ? `--- /etc/app/f${r}.conf\n+++ /etc/app/f${r}.conf\n@@ -1 +1 @@\n-tampered ${i % 97}\n+managed by homeostat\n` : null,
      detail: drift ? `content: sha256:x -> sha256:y` : `verified in ${(i % 30) / 10} ms`,
    };
    store.appendAudit(e);
  }
  const appendMs = performance.now() - t0;
  const stats = store.outboxStats();
  const t1 = performance.now();
  const batch = store.outboxPending(1000);
  const batchMs = performance.now() - t1;
  const t2 = performance.now();
  const v = store.verifyAudit();
  const verifyMs = performance.now() - t2;
  store.close();
  const bytes = readdirSync(dir).reduce((n, f) => n + statSync(path.join(dir, f)).size, 0);
  // What the daemon's start pays for checking the whole cache (PRAGMA quick_check) with this many records in it.
  const t3 = performance.now();
  AgentStore.open(dir, { checkIntegrity: true }).close();
  const checkMs = performance.now() - t3;
  console.log(`records appended: ${RECORDS} in ${(appendMs / 1000).toFixed(1)} s (${Math.round(RECORDS / (appendMs / 1000))}/s), outbox bound ${DEFAULT_OUTBOX_LIMIT}`);
  console.log(`outbox: ${stats.pending} pending, ${stats.dropped} dropped; first batch of ${batch.length} read in ${batchMs.toFixed(0)} ms`);
  console.log(`state dir on disk: ${(bytes / 1048576).toFixed(0)} MB (${((bytes / RECORDS) | 0)} bytes per record); peak RSS of this process ${peakRssMb().toFixed(0)} MB`);
  console.log(`audit --verify: ${v.ok ? 'intact' : 'BROKEN'}, ${v.count} records in ${(verifyMs / 1000).toFixed(1)} s`);
  console.log(`opening with the integrity check the daemon runs at start: ${checkMs.toFixed(0)} ms`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
