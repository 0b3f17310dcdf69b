// Benchmark: file drift → repaired latency over 1,000 watched files, start-up rescan and idle footprint with 10,000 files,
// and the one-shot `check` of 1,000 files. Prints its figures; see bench/README.md for the latest and the budgets.
import { spawn, spawnSync } from 'node:child_process';
import { watch, closeSync, openSync, chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, chownSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const AGENT = fileURLToPath(new URL('../agent/main.js', import.meta.url));
const TAMPERS = Number(process.env.TAMPERS ?? 1000);
const FILES = Number(process.env.FILES ?? 1000);
const IDLE_FILES = Number(process.env.IDLE_FILES ?? 10_000);
const IDLE_SECONDS = Number(process.env.IDLE_SECONDS ?? 30);

const CONTENT = 'managed by homeostat: keep this line as it is\n'.repeat(4);

function makeBaseline(dir: string, n: number, perDir = 100): { file: string; paths: string[] } {
  const paths: string[] = [];
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = path.join(dir, 'etc', `d${Math.floor(i / perDir)}`, `f${i}.conf`);
    paths.push(p);
    lines.push(`    - file: ${p}\n      content: ${JSON.stringify(CONTENT)}\n      mode: "0644"\n      owner: root\n      group: root\n`);
  }
  const file = path.join(dir, 'bench.yaml');
  // A generous flap budget: the benchmark tampers the same files again and again on purpose.
  writeFileSync(file, `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: bench\nspec:\n  policy:\n    flap: { maxRepairs: 100000, window: 1m }\n  resources:\n${lines.join('')}`);
  return { file, paths };
}

function startAgent(baseline: string, stateDir: string): { proc: ReturnType<typeof spawn>; ready: Promise<number> } {
  const t0 = performance.now();
  // Logs go to a file: the benchmark's busy-wait loops must never leave the agent blocked on a full pipe.
  const logFile = `${stateDir}.log`;
  const fd = openSync(logFile, 'w');
  const nodeArgs = process.env.AGENT_NODE_ARGS ? process.env.AGENT_NODE_ARGS.split(' ') : [];
  const proc = spawn(process.execPath, [...nodeArgs, AGENT, 'run', '--baseline', baseline, '--state-dir', stateDir, '--log-level', 'info'], { stdio: ['ignore', 'ignore', fd] });
  closeSync(fd);
  const ready = new Promise<number>((resolve, reject) => {
    const timer = setInterval(() => {
      const log = readFileSync(logFile, 'utf8');
      if (log.includes('"agent ready"')) {
        clearInterval(timer);
        resolve(performance.now() - t0);
      } else if (proc.exitCode !== null) {
        clearInterval(timer);
        reject(new Error(`agent exited ${proc.exitCode}: ${log.slice(-2000)}`));
      }
    }, 5);
  });
  return { proc, ready };
}

function compliant(p: string): boolean {
  try {
    const st = statSync(p);
    return (st.mode & 0o7777) === 0o644 && st.uid === 0 && readFileSync(p, 'utf8') === CONTENT;
  } catch {
    return false;
  }
}

/**
 * Resolves with the time from `t0` to the moment `p` is compliant again, seen through the bench's own inotify watch on the
 * parent directory (no busy loop: on two cores a spinning observer would steal the agent's CPU and inflate the figure).
 */
function waitCompliant(p: string, t0: number, timeoutMs = 5000): Promise<number> {
  return new Promise((resolve) => {
    if (compliant(p)) return resolve(performance.now() - t0);
    const w = watch(path.dirname(p), () => {
      if (!compliant(p)) return;
      done(performance.now() - t0);
    });
    const timer = setTimeout(() => done(compliant(p) ? performance.now() - t0 : Number.POSITIVE_INFINITY), timeoutMs);
    function done(ms: number): void {
      clearTimeout(timer);
      w.close();
      resolve(ms);
    }
  });
}

function pct(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

function procStat(pid: number): { cpuTicks: number; rssKb: number; anonKb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuTicks = Number(fields[11]) + Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return { cpuTicks, rssKb: kb('VmRSS'), anonKb: kb('RssAnon') };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const fmt = (ms: number): string => `${ms.toFixed(2)} ms`;

async function latency(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hs-bench-'));
  try {
    const { file, paths } = makeBaseline(dir, FILES);
    const agent = startAgent(file, path.join(dir, 'state'));
    await agent.ready;
    for (const p of paths) if ((await waitCompliant(p, performance.now(), 30_000)) === Number.POSITIVE_INFINITY) throw new Error(`${p} never converged`);
    await sleep(1500);
    const kinds = ['content', 'mode', 'owner', 'delete', 'rename'] as const;
    const byKind = new Map<string, number[]>();
    const all: number[] = [];
    let missed = 0;
    for (let i = 0; i < TAMPERS; i++) {
      const kind = kinds[i % kinds.length] ?? 'content';
      const p = paths[(i * 7919) % paths.length] ?? '';
      // Arm the observer first, then tamper: the repair can come back faster than a watch could be set up afterwards.
      let t0 = 0;
      const restored = new Promise<number>((resolve) => {
        const w = watch(path.dirname(p), () => {
          if (t0 === 0 || !compliant(p)) return;
          finish(performance.now() - t0);
        });
        const timer = setTimeout(() => finish(Number.POSITIVE_INFINITY), 5000);
        function finish(ms: number): void {
          clearTimeout(timer);
          w.close();
          resolve(ms);
        }
      });
      t0 = performance.now();
      switch (kind) {
        case 'content':
          writeFileSync(p, `tampered ${i}\n`);
          break;
        case 'mode':
          chmodSync(p, 0o666);
          break;
        case 'owner':
          chownSync(p, 65534, 65534);
          break;
        case 'delete':
          unlinkSync(p);
          break;
        case 'rename': {
          const tmp = `${p}.new`;
          writeFileSync(tmp, `replaced ${i}\n`);
          renameSync(tmp, p);
          break;
        }
      }
      const ms = await restored;
      if (!Number.isFinite(ms)) {
        missed++;
        continue;
      }
      all.push(ms);
      const list = byKind.get(kind) ?? [];
      list.push(ms);
      byKind.set(kind, list);
      // Spread tamperings out a little, as real drift is; 5 ms is far below any watch or repair time scale.
      await sleep(5);
    }
    all.sort((a, b) => a - b);
    console.log(`file drift -> repaired (tamper to compliant, seen from outside through inotify), ${FILES} watched files, ${TAMPERS} tamperings:`);
    console.log(`  all       n=${all.length} p50=${fmt(pct(all, 0.5))} p99=${fmt(pct(all, 0.99))} max=${fmt(all[all.length - 1] ?? NaN)} missed(>5s)=${missed}`);
    for (const [k, v] of byKind) {
      v.sort((a, b) => a - b);
      console.log(`  ${k.padEnd(9)} n=${v.length} p50=${fmt(pct(v, 0.5))} p99=${fmt(pct(v, 0.99))} max=${fmt(v[v.length - 1] ?? NaN)}`);
    }
    // The agent's own figure: from the start of the reconcile the event caused to the verified repair.
    const inner = readFileSync(path.join(dir, 'state.log'), 'utf8')
      .split('\n')
      .flatMap((l) => (l.includes('"msg":"repaired"') && l.includes('"trigger":"watch"') ? [Number((JSON.parse(l) as { ms: number }).ms)] : []))
      .sort((a, b) => a - b);
    console.log(`  inside the agent (reconcile start to verified): n=${inner.length} p50=${fmt(pct(inner, 0.5))} p99=${fmt(pct(inner, 0.99))}`);
    agent.proc.kill('SIGTERM');
    await new Promise((r) => agent.proc.once('exit', r));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function idleAndRescan(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hs-bench-'));
  try {
    const { file, paths } = makeBaseline(dir, IDLE_FILES);
    const stateDir = path.join(dir, 'state');
    // First start: nothing exists yet; the agent creates all files (cold: every file written and hashed).
    let agent = startAgent(file, stateDir);
    const coldMs = await agent.ready;
    agent.proc.kill('SIGTERM');
    await new Promise((r) => agent.proc.once('exit', r));
    for (const p of paths.slice(0, 10)) if (!compliant(p)) throw new Error(`${p} not converged`);
    // Second start: files in place, journal in the cache: the start-up rescan of every file.
    agent = startAgent(file, stateDir);
    const warmMs = await agent.ready;
    // Third start without the journal: every file re-read and hashed.
    agent.proc.kill('SIGTERM');
    await new Promise((r) => agent.proc.once('exit', r));
    rmSync(stateDir, { recursive: true, force: true });
    agent = startAgent(file, stateDir);
    const noJournalMs = await agent.ready;
    console.log(`start-up with ${IDLE_FILES} files (process start to ready, initial full pass included):`);
    console.log(`  creating every file: ${fmt(coldMs)}; rescan with the cache: ${fmt(warmMs)}; rescan hashing every file: ${fmt(noJournalMs)}`);
    // V8's collections after start-up (the daemon's own compaction, then V8's memory reducer) end within about 12 s of
    // ready; the idle window opens after them.
    await sleep(15_000);
    const pid = agent.proc.pid ?? 0;
    const a = procStat(pid);
    const t0 = performance.now();
    await sleep(IDLE_SECONDS * 1000);
    const b = procStat(pid);
    const secs = (performance.now() - t0) / 1000;
    const hz = Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim() || 100);
    const cpuPct = ((b.cpuTicks - a.cpuTicks) / hz / secs) * 100;
    console.log(`idle with ${IDLE_FILES} managed files over ${secs.toFixed(0)} s: CPU ${cpuPct.toFixed(3)} % of one core, RSS ${(b.rssKb / 1024).toFixed(1)} MB, RssAnon ${(b.anonKb / 1024).toFixed(1)} MB`);
    agent.proc.kill('SIGTERM');
    await new Promise((r) => agent.proc.once('exit', r));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function oneShotCheck(): void {
  const dir = mkdtempSync(path.join(tmpdir(), 'hs-bench-'));
  try {
    const { file, paths } = makeBaseline(dir, 1000);
    for (const p of paths) {
      mkdirSync(path.dirname(p), { recursive: true });
      writeFileSync(p, CONTENT, { mode: 0o644 });
    }
    const runs: number[] = [];
    for (let i = 0; i < 11; i++) {
      const t0 = performance.now();
      const r = spawnSync(process.execPath, [AGENT, 'check', '--baseline', file]);
      runs.push(performance.now() - t0);
      if (r.status !== 0) throw new Error(`check exited ${r.status}: ${r.stderr.toString()}`);
    }
    runs.shift(); // the first run warms the page cache
    runs.sort((a, b) => a - b);
    console.log(`one-shot check of 1000 compliant files (wall, process start included, ${runs.length} runs): median ${fmt(pct(runs, 0.5))}, min ${fmt(runs[0] ?? NaN)}, max ${fmt(runs[runs.length - 1] ?? NaN)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const only = process.argv[2];
  if (!only || only === 'latency') await latency();
  if (!only || only === 'check') oneShotCheck();
  if (!only || only === 'idle') await idleAndRescan();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
