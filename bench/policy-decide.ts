// The decision function at backtest scale: 1,000,000 recorded drifts replayed through the worked example policy (windows,
// globs, actors, limits counted by a RepairLedger) over 30 days. Budget (PRODUCT.md): a backtest of 1,000,000 events in
// ≤ 10 s and ≤ 512 MB; the decision is its inner loop.
//   npm run build && node dist/bench/policy-decide.js [--drifts 1000000]
import { fileURLToPath } from 'node:url';
import { DEFAULT_POLICY } from '../lib/baseline/types.js';
import { decide, loadPolicyFile, PolicySet, RepairLedger, type Actor, type Drift, type PolicyAction } from '../lib/policy/index.js';

const drifts = Number(process.argv[process.argv.indexOf('--drifts') + 1]) || 1_000_000;
const example = fileURLToPath(new URL('../../baselines/examples/policies/fleet-governance.yaml', import.meta.url));
const set = new PolicySet([{ document: loadPolicyFile(example), version: 1 }]);

const resources = [
  ...Array.from({ length: 200 }, (_, i) => ({ resource: `file:/etc/app/conf.d/${i}.conf`, kind: 'file' })),
  { resource: 'file:/etc/motd', kind: 'file' },
  { resource: 'file:/etc/ssh/sshd_config', kind: 'file' },
  { resource: 'file:/etc/sudoers', kind: 'file' },
  ...Array.from({ length: 20 }, (_, i) => ({ resource: `sysctl:net.ipv4.conf.eth${i}.rp_filter`, kind: 'sysctl' })),
  ...Array.from({ length: 20 }, (_, i) => ({ resource: `service:app${i}.service`, kind: 'service' })),
];
const actors: (Actor | undefined)[] = [
  undefined,
  { source: 'audit', exe: '/usr/bin/vim.basic', user: 'root', uid: 0, loginUser: 'alice', loginUid: 1000 },
  { source: 'audit', exe: '/usr/bin/ruby3.1', unit: 'puppet.service', user: 'root', uid: 0 },
  { source: 'journal', unit: 'app1.service' },
];
const changes = [['content'], ['mode'], ['owner', 'group'], ['value'], ['active']];

// A pseudo-random but repeatable stream of drifts, in time order, 30 days from 2025-01-01.
// 32-bit arithmetic (Math.imul) keeps every step exact, and the draw takes the high bits: an LCG's low bits cycle.
let seed = 42;
const rand = (n: number): number => {
  seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
  return Math.floor((seed / 2 ** 32) * n);
};
const start = Date.UTC(2025, 0, 1);
const span = 30 * 86_400_000;
const ledger = new RepairLedger();
const counts = new Map<PolicyAction, number>();
const heap0 = process.memoryUsage().heapUsed;
const t0 = performance.now();
for (let i = 0; i < drifts; i++) {
  const r = resources[rand(resources.length)] as { resource: string; kind: string };
  const time = start + Math.floor((i / drifts) * span);
  const actor = actors[rand(actors.length)];
  const drift: Drift = {
    resource: r.resource,
    kind: r.kind,
    baseline: 'web',
    changes: changes[rand(changes.length)] as string[],
    time,
    ...(actor ? { actor } : {}),
  };
  const d = decide(set, drift, {
    policy: DEFAULT_POLICY,
    paused: false,
    approved: false,
    suppressed: false,
    excepted: false,
    backingOff: false,
    recentRepairs: 0,
    ruleRepairs: (k) => ledger.count(k, time),
  });
  if (d.countsAgainst) ledger.record(d.countsAgainst, time);
  counts.set(d.action, (counts.get(d.action) ?? 0) + 1);
}
const ms = performance.now() - t0;
const heap = process.memoryUsage();
console.log(`${drifts.toLocaleString('en')} decisions in ${(ms / 1000).toFixed(2)} s: ${Math.round(drifts / (ms / 1000)).toLocaleString('en')} per second`);
console.log(`  actions: ${[...counts].map(([a, n]) => `${a} ${n}`).join(', ')}`);
console.log(`  heap used ${((heap.heapUsed - heap0) / 1e6).toFixed(1)} MB more than before, RSS ${(heap.rss / 1e6).toFixed(0)} MB`);
