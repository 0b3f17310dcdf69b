// bench/backtest: a generated fleet history of at least 1,000,000 events in a real controller store (SQLite), replayed
// under the worked example policy by the controller's backtest (streamed from the store, decided by lib/policy's decide()),
// then with ten candidate proposals in the same walk, then the outcomes walk. Each replay runs in a fresh process so its
// peak RSS is its own. Budget (PRODUCT.md): 1,000,000 events replayed in ≤ 10 s and ≤ 512 MB.
//   npm run build && node dist/bench/backtest.js                # generates (once) and replays
//   knobs: HOSTS=1000 EVENTS=1000000 DB=/var/tmp/hs-bench-backtest/controller.db
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../lib/log.js';
import { parsePolicy, PolicySet } from '../lib/policy/index.js';
import { SqliteControllerStore } from '../controller/store/sqlite.js';
import type { EventInput } from '../controller/store/types.js';
import { runBacktest } from '../controller/tuning/backtest.js';
import { computeOutcomes } from '../controller/tuning/outcomes.js';
import type { BacktestResult, Candidate } from '../controller/tuning/replay.js';

const env = (k: string, d: number): number => Number(process.env[k] ?? d);
const HOSTS = env('HOSTS', 1000);
const EVENTS = env('EVENTS', 1_000_000);
const DB = process.env.DB ?? '/var/tmp/hs-bench-backtest/controller.db';
const SELF = fileURLToPath(import.meta.url);
const EXAMPLE = fileURLToPath(new URL('../../baselines/examples/policies/fleet-governance.yaml', import.meta.url));
const START = Date.UTC(2026, 0, 1);
const SPAN = 30 * 86_400_000;
const DAY = 86_400_000;

const RESOURCES: { id: string; decl: string; risk: string }[] = [
  { id: 'file:/etc/motd', decl: '    - file: /etc/motd\n      content: "Authorized use only\\n"\n', risk: 'low' },
  { id: 'file:/etc/ssh/sshd_config', decl: '    - file: /etc/ssh/sshd_config\n      content: "PermitRootLogin no\\n"\n      risk: high\n', risk: 'high' },
  { id: 'file:/etc/sudoers', decl: '    - file: /etc/sudoers\n      content: "root ALL=(ALL) ALL\\n"\n      risk: critical\n', risk: 'critical' },
  ...Array.from({ length: 40 }, (_, i) => ({ id: `file:/etc/app/conf.d/${i}.conf`, decl: `    - file: /etc/app/conf.d/${i}.conf\n      content: "k=${i}\\n"\n      mode: "0644"\n`, risk: 'low' })),
  ...Array.from({ length: 5 }, (_, i) => ({ id: `sysctl:net.ipv4.conf.eth${i}.rp_filter`, decl: `    - sysctl: net.ipv4.conf.eth${i}.rp_filter\n      value: "1"\n`, risk: 'low' })),
  ...Array.from({ length: 3 }, (_, i) => ({ id: `service:app${i}.service`, decl: `    - service: app${i}.service\n      ensure: running\n`, risk: 'low' })),
];
const baselineYaml = (v: number): string =>
  `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: fleet\n  description: version ${v}\nspec:\n  policy:\n    escalateAt: high\n  resources:\n${RESOURCES.map((r) => r.decl).join('')}`;
const ACTORS = [
  undefined,
  undefined,
  JSON.stringify({ source: 'audit', exe: '/usr/bin/vim.basic', user: 'root', uid: 0, loginUser: 'alice', loginUid: 1000, pid: 4242 }),
  JSON.stringify({ source: 'audit', exe: '/usr/bin/ruby3.1', unit: 'puppet.service', user: 'root', uid: 0, pid: 999 }),
];
const CHANGES: Record<string, string[]> = { file: ['content: sha256:aa -> sha256:bb', 'mode: 0666 -> 0644', 'content: sha256:aa -> sha256:bb; mode: 0666 -> 0644'], sysctl: ['value: 0 -> 1'], service: ['active: inactive -> running'] };

let seed = 7;
const rand = (n: number): number => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
  // The high bits: an LCG's low bits repeat with a short period.
  return Math.floor((seed / 2 ** 31) * n);
};

/** One host's records: episodes in time order, each as the agent records it (see test/helpers/fleet-history.ts). */
function hostEvents(perHost: number): EventInput[] {
  const out: EventInput[] = [];
  let seq = 0;
  let t = START + rand(DAY);
  const push = (time: number, resource: string, event: string, over: Partial<EventInput> = {}): void => {
    seq++;
    out.push({
      seq,
      time,
      resource,
      event,
      trigger: 'watch',
      baseline: 'fleet',
      version: time < START + SPAN / 2 ? 1 : 2,
      observed: '{"exists":true,"type":"file","sha256":"aa","size":20,"mode":"0666","owner":"root","group":"root"}',
      desired: '{"exists":true,"type":"file","sha256":"bb","size":20,"mode":"0644"}',
      diff: null,
      detail: null,
      prevHash: 'p'.repeat(64),
      hash: seq.toString(16).padStart(64, '0'),
      ...over,
    });
  };
  const step = Math.max(1, Math.floor(SPAN / (perHost / 2.4)));
  while (out.length < perHost) {
    const r = RESOURCES[rand(RESOURCES.length)] as (typeof RESOURCES)[number];
    const kind = r.id.slice(0, r.id.indexOf(':'));
    const changes = CHANGES[kind] as string[];
    const actor = ACTORS[rand(ACTORS.length)];
    const drift = { detail: changes[rand(changes.length)] as string, ...(actor ? { actor } : {}) };
    t += 1 + rand(2 * step);
    if (r.risk === 'high' || r.risk === 'critical') {
      push(t, r.id, 'drift_detected', drift);
      push(t + 1, r.id, 'escalated', { detail: `risk ${r.risk} is at or above escalateAt high: left for a human` });
      const after = 5 * 60_000 + rand(90 * 60_000);
      if (rand(5) === 0) push(t + after, r.id, 'rejected', { trigger: 'controller', detail: 'drift accepted' });
      else {
        push(t + after, r.id, 'approved', { trigger: 'controller' });
        push(t + after + 1, r.id, 'drift_detected', { ...drift, trigger: 'controller' });
        push(t + after + 2, r.id, 'repaired', { trigger: 'controller', detail: 'verified in 1.20 ms' });
      }
      t += after;
    } else {
      push(t, r.id, 'drift_detected', drift);
      push(t + 2, r.id, 'repaired', { detail: 'verified in 0.80 ms' });
    }
  }
  return out;
}

async function generate(): Promise<void> {
  rmSync(path.dirname(DB), { recursive: true, force: true });
  mkdirSync(path.dirname(DB), { recursive: true });
  const store = new SqliteControllerStore(DB);
  for (let v = 1; v <= 2; v++) {
    await store.addBaselineVersion({ name: 'fleet', sha256: `v${v}`, yaml: baselineYaml(v), sources: {}, file: 'fleet.yaml', description: '', selector: null, resources: RESOURCES.length, createdAt: START });
  }
  const perHost = Math.ceil(EVENTS / HOSTS);
  const t0 = performance.now();
  let total = 0;
  let batch: { agentId: string; events: EventInput[] }[] = [];
  let inBatch = 0;
  for (let h = 0; h < HOSTS; h++) {
    const events = hostEvents(perHost);
    total += events.length;
    batch.push({ agentId: `ag-${String(h).padStart(5, '0')}`, events });
    inBatch += events.length;
    if (inBatch >= 20_000) {
      await store.appendEvents(batch, START + SPAN);
      batch = [];
      inBatch = 0;
    }
  }
  if (batch.length > 0) await store.appendEvents(batch, START + SPAN);
  await store.close();
  console.log(`generated ${total.toLocaleString('en')} events for ${HOSTS} hosts in ${((performance.now() - t0) / 1000).toFixed(1)} s into ${DB}`);
}

function counts(r: BacktestResult): string {
  return `drifts ${r.drifts}, escalations ${r.escalationsBefore} -> ${r.escalationsAfter}, auto-repairs ${r.autoRepairsBefore} -> ${r.autoRepairsAfter}, deferred ${r.deferralsAfter}, overridden rejections ${r.overriddenRejections}, critical auto-repaired ${r.criticalAutoRepaired}`;
}

/** One measured run in this process (a child of the benchmark): prints one JSON line. */
async function measure(what: string): Promise<void> {
  const store = new SqliteControllerStore(DB);
  const deps = { store, log: silentLogger };
  const doc = parsePolicy(readFileSync(EXAMPLE, 'utf8'), { file: EXAMPLE });
  const base = new PolicySet([{ document: doc, version: 1 }]);
  const range = { since: START, until: START + 2 * SPAN };
  const u0 = process.resourceUsage();
  const cpu0 = (u0.userCPUTime + u0.systemCPUTime) / 1e6;
  const t0 = performance.now();
  let line: string;
  if (what === 'backtest') {
    const { results, stats } = await runBacktest(deps, { base, ...range });
    line = `${stats.records.toLocaleString('en')} records; ${counts(results[0] as BacktestResult)}`;
  } else if (what === 'candidates') {
    // Ten proposals' backtests in one walk, as a refresh runs them: each adds one rule for one resource to the base.
    const candidates: Candidate[] = RESOURCES.slice(3, 13).map((r, i) => {
      const text = `apiVersion: homeostat/v1\nkind: Policy\nmetadata:\n  name: homeostat-tuning\nspec:\n  priority: 1000\n  rules:\n    - match: { resource: "${r.id}" }\n      action: ${i % 2 ? 'escalate' : '{ defer: 10m }'}\n`;
      return { set: new PolicySet([...base.policies, { document: parsePolicy(text, { file: 't.yaml' }), version: 1 }]), resources: [r.id] };
    });
    const { results, stats } = await runBacktest(deps, { base, candidates, ...range });
    line = `${stats.records.toLocaleString('en')} records, base and ${candidates.length} candidates; candidate 1: ${counts(results[1] as BacktestResult)}`;
  } else {
    const o = await computeOutcomes(deps, { ...range, recurrenceWindowMs: 3_600_000 });
    line = `${o.records.toLocaleString('en')} records; ${o.byResource.size} resource keys, ${o.byRule.size} rules, ${o.byActor.size} actors`;
  }
  const seconds = (performance.now() - t0) / 1000;
  const u = process.resourceUsage();
  const cpu = (u.userCPUTime + u.systemCPUTime) / 1e6 - cpu0;
  await store.close();
  process.stdout.write(`${JSON.stringify({ what, seconds, cpu, maxRssMB: u.maxRSS / 1024, line })}\n`);
}

async function main(): Promise<void> {
  if (process.argv[2] === 'measure') return measure(process.argv[3] ?? 'backtest');
  if (!existsSync(DB)) await generate();
  else console.log(`using ${DB} (remove it to generate again)`);
  const budget: Record<string, string> = { backtest: '≤ 10 s, ≤ 512 MB', candidates: '', outcomes: '' };
  console.log(`load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} on ${cpus().length} cores`);
  for (const what of ['backtest', 'candidates', 'outcomes']) {
    const r = spawnSync(process.execPath, [SELF, 'measure', what], { encoding: 'utf8', env: process.env, maxBuffer: 1 << 20 });
    if (r.status !== 0) throw new Error(`${what} failed: ${r.stderr}`);
    const m = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { seconds: number; cpu: number; maxRssMB: number; line: string };
    console.log(`${what.padEnd(10)} ${m.seconds.toFixed(2)} s (CPU ${m.cpu.toFixed(2)} s), peak RSS ${m.maxRssMB.toFixed(0)} MB${budget[what] ? ` (budget ${budget[what]})` : ''}: ${m.line}`);
  }
}

await main();
