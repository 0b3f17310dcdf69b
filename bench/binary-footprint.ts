// The agent's footprint, the single executable beside `node dist/...` on the same runtime: idle memory of the daemon with 1,000 and 10,000 files (and how much of RssFile is the executable's own pages), and the one-shot `check` of 1,000 files. Prints a table per part.
//
//   node_modules/.bin/node dist/bench/binary-footprint.js            # both parts; or: idle | check
//   knobs: IDLE_SECONDS=20 WARMUP_SECONDS=10 SIZES=1000,10000 CHECK_RUNS=21 BIN=packaging/out/homeostat-agent
//          EXTRA_BINS=label=path,...   (other builds, e.g. one made with HOMEOSTAT_EXEC_ARGV= for the runtime's defaults)
//          NODE_ARGS="--max-semi-space-size=1"   (flags for the `node dist/...` variant that mirrors the executable)
//          NODE_VARIANTS=0   (executables only)
import { readFileSync, readlinkSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AGENT_BIN, cleanEnv, sh } from '../test/package/artifacts.js';
import { Daemon, writeFileSet } from '../test/package/workload.js';

const AGENT_MAIN = fileURLToPath(new URL('../agent/main.js', import.meta.url));
const IDLE_SECONDS = Number(process.env.IDLE_SECONDS ?? 20);
/** Left alone after ready before the idle window opens: V8 finishes its start-up collections in the first seconds. */
const WARMUP_SECONDS = Number(process.env.WARMUP_SECONDS ?? 10);
const SIZES = (process.env.SIZES ?? '1000,10000').split(',').map(Number);
const CHECK_RUNS = Number(process.env.CHECK_RUNS ?? 21);
const BIN = path.resolve(process.env.BIN ?? AGENT_BIN);
const NODE_ARGS = (process.env.NODE_ARGS ?? '--max-semi-space-size=1').split(' ').filter(Boolean);

interface Variant {
  label: string;
  /** The command before the agent's own arguments. */
  cmd: string[];
}

const variants: Variant[] = [
  { label: 'single executable', cmd: [BIN] },
  ...(process.env.EXTRA_BINS ?? '')
    .split(',')
    .filter(Boolean)
    .map((pair) => ({ label: pair.slice(0, pair.indexOf('=')), cmd: [path.resolve(pair.slice(pair.indexOf('=') + 1))] })),
  ...(process.env.NODE_VARIANTS === '0'
    ? []
    : [
        { label: `node dist ${NODE_ARGS.join(' ')}`.trim(), cmd: [process.execPath, ...NODE_ARGS, AGENT_MAIN] },
        { label: 'node dist', cmd: [process.execPath, AGENT_MAIN] },
      ]),
];

function proc(pid: number): { rss: number; anon: number; file: number; cpuTicks: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile'), cpuTicks: Number(fields[11]) + Number(fields[12]) };
}

const mb = (kb: number): string => (kb / 1024).toFixed(1);

/** Of RssFile, the pages of the process's own executable (the single executable, or node), from /proc/PID/smaps. */
function exeRss(pid: number): number {
  const exe = readlinkSync(`/proc/${pid}/exe`);
  let kb = 0;
  let mine = false;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) mine = line.endsWith(` ${exe}`);
    else if (mine && line.startsWith('Rss:')) kb += Number(/(\d+)/.exec(line)?.[1] ?? 0);
  }
  return kb;
}

async function idle(): Promise<void> {
  console.log(`\n## idle daemon: fresh state, files compliant; memory at the end, CPU over ${IDLE_SECONDS} s from ${WARMUP_SECONDS} s after ready`);
  console.log('| variant | files | ready | VmRSS | RssAnon | RssFile | of it the executable | CPU while idle |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const n of SIZES) {
    const dir = mkdtempSync(path.join(tmpdir(), 'hs-footprint-'));
    try {
      const set = writeFileSet(dir, n, { create: true });
      for (const v of variants) {
        const stateDir = path.join(dir, `state-${v.label.replace(/\W+/g, '-')}`);
        const d = new Daemon(v.cmd, ['--baseline', set.baseline, '--state-dir', stateDir, '--log-level', 'info'], path.join(dir, 'daemon.log'), cleanEnv({ HOMEOSTAT_CACHE_DIR: path.join(dir, 'cache') }));
        const readyMs = await d.ready(120_000);
        await new Promise((r) => setTimeout(r, WARMUP_SECONDS * 1000));
        const t0 = proc(d.pid);
        await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
        const t1 = proc(d.pid);
        const exe = exeRss(d.pid);
        const cpu = ((t1.cpuTicks - t0.cpuTicks) / 100 / IDLE_SECONDS) * 100;
        console.log(`| ${v.label} | ${n} | ${readyMs} ms | ${mb(t1.rss)} MB | ${mb(t1.anon)} MB | ${mb(t1.file)} MB | ${mb(exe)} MB | ${cpu.toFixed(2)} % |`);
        await d.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}

async function check(): Promise<void> {
  console.log(`\n## one-shot check of 1,000 compliant files: ${CHECK_RUNS} runs, the first dropped`);
  console.log('| variant | median | min | p90 |');
  console.log('| --- | --- | --- | --- |');
  const dir = mkdtempSync(path.join(tmpdir(), 'hs-footprint-check-'));
  try {
    const set = writeFileSet(dir, 1000, { create: true });
    const env = cleanEnv({ HOMEOSTAT_CACHE_DIR: path.join(dir, 'cache') });
    for (const v of variants) {
      const times: number[] = [];
      for (let i = 0; i < CHECK_RUNS; i++) {
        const [cmd, ...args] = [...v.cmd, 'check', '--baseline', set.baseline];
        const t = process.hrtime.bigint();
        const r = await sh(cmd ?? BIN, args, { env });
        const ms = Number(process.hrtime.bigint() - t) / 1e6;
        if (r.code !== 0) throw new Error(`${v.label}: check exited ${r.code}: ${r.stderr}`);
        if (i > 0) times.push(ms);
      }
      times.sort((a, b) => a - b);
      const at = (q: number): string => (times[Math.floor(q * (times.length - 1))] ?? NaN).toFixed(0);
      console.log(`| ${v.label} | ${at(0.5)} ms | ${at(0)} ms | ${at(0.9)} ms |`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const part = process.argv[2];
const version = (await sh(BIN, ['--version'])).stdout.trim();
console.log(`agent executable ${BIN}: ${version}; node ${process.version} at ${process.execPath}`);
if (!part || part === 'check') await check();
if (!part || part === 'idle') await idle();
