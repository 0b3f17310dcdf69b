// What following the mount table costs (agent/host/mounts.ts): one read and compare of /proc/self/mountinfo at several
// table sizes, the interval the watcher picks from it and the share of a core that makes, the CPU a running watcher
// really takes, and the alternative that was not chosen (`findmnt --poll` as a child process: its memory, and a change
// it does not report). Needs root: it runs itself again in a private mount namespace and adds tmpfs mounts there.
//   npm run build && node dist/bench/mount-watch.js [--mounts 0,100,500,2000] [--idle-seconds 20]
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MountTable, MountWatcher, mountPollIntervalMs } from '../agent/host/mounts.js';
import { silentLogger } from '../lib/log.js';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};

if (!process.argv.includes('--inside')) {
  // Again, in a mount namespace of its own, so the mounts it adds vanish with it (and the folder can go afterwards).
  const scratch = mkdtempSync(path.join(tmpdir(), 'hs-bench-mounts-'));
  const args = [process.execPath, fileURLToPath(import.meta.url), '--inside', scratch, ...process.argv.slice(2)];
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', ...args], { stdio: 'inherit' });
  rmSync(scratch, { recursive: true, force: true });
  process.exit(r.status ?? 1);
}

const counts = arg('--mounts', '0,100,500,2000').split(',').map(Number);
const idleSeconds = Number(arg('--idle-seconds', '20'));
const dir = arg('--inside', '');
let added = 0;

/** CPU of this process over `seconds` of doing nothing but `running`, as a share of one core. */
async function idleCpu(seconds: number, running?: MountWatcher): Promise<number> {
  running?.start();
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const used = process.cpuUsage(cpu0);
  running?.stop();
  return ((used.user + used.system) / 1000 / (performance.now() - wall0)) * 100;
}

// A real watcher left running on this machine's table, against the same time without it.
let changes = 0;
const watcher = new MountWatcher(() => changes++, silentLogger);
const without = await idleCpu(idleSeconds);
const withWatcher = await idleCpu(idleSeconds, watcher);
console.log(
  `idle ${idleSeconds} s with ${MountTable.read().size} mounts: CPU ${withWatcher.toFixed(4)} % of one core with the watcher ` +
    `(interval ${watcher.intervalMs} ms, ${changes} changes seen), ${without.toFixed(4)} % without\n`,
);

function addMounts(upTo: number): void {
  for (; added < upTo; added++) {
    const m = path.join(dir, String(added));
    mkdirSync(m);
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', `hs-bench-${added}`, m]);
    if (r.status !== 0) throw new Error(`mount ${m}: ${r.stderr.toString()}`);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

console.log('| mounts in the table | table size | one read and compare (median of 300) | interval chosen | share of one core |');
console.log('| ---: | ---: | ---: | ---: | ---: |');
for (const extra of counts) {
  addMounts(extra);
  let last = MountTable.read().text;
  const times: number[] = [];
  for (let i = 0; i < 300; i++) {
    const t0 = performance.now();
    const t = MountTable.read();
    if (t.text !== last) last = t.text;
    times.push(performance.now() - t0);
  }
  const ms = median(times);
  const interval = mountPollIntervalMs(ms);
  const table = MountTable.read();
  console.log(`| ${table.size} | ${(table.text.length / 1024).toFixed(1)} KiB | ${(ms * 1000).toFixed(0)} µs | ${(interval / 1000).toFixed(1)} s | ${((ms / interval) * 100).toFixed(4)} % |`);
}

// The alternative: findmnt --poll waits on the kernel's POLLPRI and costs no CPU while idle, but is a second process, and
// it compares (source, target) pairs, so a tmpfs mounted over one of the same source name is not reported.
const stacked = path.join(dir, 'stacked');
mkdirSync(stacked);
spawnSync('mount', ['-t', 'tmpfs', 'same', stacked]);
// stdbuf: findmnt does not flush its output per event when it goes to a pipe.
const findmnt = spawn('stdbuf', ['-oL', 'findmnt', '--poll', '-o', 'ACTION,TARGET', '-P'], { stdio: ['ignore', 'pipe', 'ignore'] });
let out = '';
findmnt.stdout.on('data', (d: Buffer) => (out += d.toString()));
await new Promise((r) => setTimeout(r, 300));
const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${findmnt.pid}/status`, 'utf8'))?.[1];
const before = MountTable.read().text;
spawnSync('mount', ['-t', 'tmpfs', 'same', stacked]);
const seenByWatcher = before !== MountTable.read().text;
// A control: a mount of a new name elsewhere, which it does report.
mkdirSync(path.join(dir, 'control'));
spawnSync('mount', ['-t', 'tmpfs', 'other', path.join(dir, 'control')]);
await new Promise((r) => setTimeout(r, 500));
findmnt.kill();
const lines = out.trim().split('\n').filter(Boolean);
console.log(
  `findmnt --poll: RSS ${rss} kB; of two mounts it reported ${lines.length} (${lines.join('; ')}): ` +
    `a tmpfs named "same" over a tmpfs named "same" ${lines.some((l) => l.includes(stacked)) ? 'was' : 'was not'} reported; ` +
    `the watcher's whole-table compare ${seenByWatcher ? 'sees' : 'does not see'} it`,
);
