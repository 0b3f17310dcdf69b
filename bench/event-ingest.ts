// Benchmark: the controller's event ingest path alone (EventIngest.submit through the per-agent rate, field bounds and
// group commit into a real SQLite file), with or without the decision fields protocol 4 added (actor, decision, changed
// fields, risk). Prints one JSON document; see bench/README.md.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createControllerCore } from '../controller/core.js';
import type { EventInput } from '../controller/store/types.js';

const AGENTS = Number(process.env.AGENTS ?? 200);
const BATCH = Number(process.env.BATCH ?? 200);
const SECONDS = Number(process.env.SECONDS ?? 8);
const FIELDS = process.env.FIELDS === 'decision' ? 'decision' : 'none';

// What an attributed repair carries: an actor read from the audit log and the rule that decided it.
const DECISION_FIELDS: Record<string, unknown> = {
  actor: JSON.stringify({ source: 'audit', pid: 48213, exe: '/usr/bin/bash', cmdline: '/bin/bash /opt/fix-motd.sh', uid: 0, user: 'root', loginUid: 1000, loginUser: 'alice', unit: 'session-4.scope', parents: ['/usr/bin/sudo', '/usr/bin/bash', '/usr/sbin/sshd'] }),
  decision: JSON.stringify({ action: 'repair', cause: 'rule', rule: { document: 'fleet-governance', version: 3, index: 3 }, reason: 'rule spec.rules[3] (kind [file, sysctl]): repair' }),
  changes: '["content"]',
  risk: 'low',
};

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hs-bench-ingest-'));
  const core = await createControllerCore({ dataDir: dir, fingerprint: null, adminToken: 'bench', events: { ratePerAgent: 1e9, burstPerAgent: 1e9 } });
  try {
    const token = await core.enrollment.createToken({ maxUses: AGENTS });
    const agents: string[] = [];
    for (let i = 0; i < AGENTS; i++) agents.push((await core.enrollment.enroll(token.token, { labels: {}, protocolVersion: 4, agentVersion: 'bench' })).agent.id);
    const extra = FIELDS === 'decision' ? DECISION_FIELDS : {};
    const end = Date.now() + SECONDS * 1000;
    const started = performance.now();
    let sent = 0;
    await Promise.all(
      agents.map(async (id) => {
        let seq = 0;
        while (Date.now() < end) {
          const batch: EventInput[] = [];
          for (let k = 0; k < BATCH; k++) {
            seq++;
            batch.push({
              seq, time: Date.now(), resource: `file:/etc/app/${k}.conf`, event: k % 2 ? 'repaired' : 'drift_detected', trigger: 'watch', baseline: 'bench', version: 1,
              observed: '{"sha256":"ab"}', desired: '{"sha256":"cd"}', diff: null, detail: null, prevHash: 'p', hash: `h${seq}`, ...extra,
            } as EventInput);
          }
          await core.events.submit(id, batch);
          sent += batch.length;
        }
      }),
    );
    await core.events.flush();
    const seconds = (performance.now() - started) / 1000;
    const persisted = await core.store.countEvents();
    process.stdout.write(`${JSON.stringify({ fields: FIELDS, agents: AGENTS, batch: BATCH, seconds: Number(seconds.toFixed(2)), sent, persisted, eventsPerSecond: Math.round(persisted / seconds) })}\n`);
  } finally {
    await core.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
