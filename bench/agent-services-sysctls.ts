// Benchmark: sysctl and service drift → repaired latency, measured from outside the real agent daemon, and the daemon's idle
// CPU and memory with 50 managed sysctls (in a network namespace) and 20 managed user services. See bench/README.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, readdirSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SystemdClient } from '../agent/host/systemd.js';
import { silentLogger } from '../lib/log.js';
import { Netns } from '../test/helpers/netns.js';
import { TestUnits, ensureUserManager, userManagerEnv } from '../test/helpers/systemd-user.js';

const SELF = fileURLToPath(import.meta.url);
const AGENT = fileURLToPath(new URL('../agent/main.js', import.meta.url));
const SYSCTLS = Number(process.env.SYSCTLS ?? 50);
const SERVICES = Number(process.env.SERVICES ?? 20);
const SYSCTL_TAMPERS = Number(process.env.SYSCTL_TAMPERS ?? 200);
const SERVICE_TAMPERS = Number(process.env.SERVICE_TAMPERS ?? 50);
const IDLE_SECONDS = Number(process.env.IDLE_SECONDS ?? 30);
/** Tampers are spread over this much time so they fall at every phase of the agent's poll. */
const SPREAD_MS = Number(process.env.SPREAD_MS ?? 300);
const GIVE_UP_MS = 5000;
const CLK_TCK = 100;

interface KeySpec {
  key: string;
  desired: string;
  tamper: string;
}

const sleepSync = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function readKey(file: string, fd?: number): string {
  const buf = Buffer.alloc(256);
  const own = fd ?? openSync(file, 'r');
  try {
    const n = readSync(own, buf, 0, buf.length, 0);
    return buf.toString('utf8', 0, n).trim();
  } finally {
    if (fd === undefined) closeSync(own);
  }
}

function writeKey(file: string, value: string): void {
  const fd = openSync(file, 'w');
  try {
    writeSync(fd, value);
  } finally {
    closeSync(fd);
  }
}

const keyFile = (key: string): string => `/proc/sys/${key.replace(/\./g, '/')}`;

// --- inside the namespace ------------------------------------------------------------------------------------------

/** Writable 0/1 keys of this namespace that can be flipped without moving other keys (no forwarding, no conf/all|default). */
function probeKeys(n: number): KeySpec[] {
  const out: KeySpec[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      if (out.length >= n) return;
      const p = path.join(dir, name);
      const st = statSync(p);
      if (st.isDirectory()) {
        if (!['all', 'default', 'neigh', 'netfilter'].includes(name)) walk(p);
        continue;
      }
      if ((st.mode & 0o600) !== 0o600 || /forward|disable_ipv6|flush|stable_secret/.test(name)) continue;
      const key = path.relative('/proc/sys', p).split('/').join('.');
      if (key.includes('..')) continue;
      let value: string;
      try {
        value = readKey(p);
      } catch {
        continue;
      }
      if (value !== '0' && value !== '1') continue;
      const tamper = value === '0' ? '1' : '0';
      try {
        writeKey(p, tamper);
        const ok = readKey(p) === tamper;
        writeKey(p, value);
        if (ok && readKey(p) === value) out.push({ key, desired: value, tamper });
      } catch {
        // refused: not a candidate
      }
    }
  };
  walk('/proc/sys/net');
  return out;
}

/** Tampers random keys one at a time and times each until it reads back as desired (a tight 1 ms poll). */
function tamperSysctls(keys: KeySpec[], n: number): number[] {
  const fds = new Map(keys.map((k) => [k.key, openSync(keyFile(k.key), 'r')]));
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const k = keys[Math.floor(Math.random() * keys.length)];
    if (!k) continue;
    const fd = fds.get(k.key);
    sleepSync(Math.random() * SPREAD_MS);
    writeKey(keyFile(k.key), k.tamper);
    const t0 = performance.now();
    let dt = Number.POSITIVE_INFINITY;
    while (performance.now() - t0 < GIVE_UP_MS) {
      if (readKey('', fd) === k.desired) {
        dt = performance.now() - t0;
        break;
      }
      sleepSync(1);
    }
    out.push(dt);
  }
  for (const fd of fds.values()) closeSync(fd);
  return out;
}

function inside(mode: string, arg: string): void {
  if (mode === 'probe') process.stdout.write(JSON.stringify(probeKeys(Number(arg))));
  else if (mode === 'tamper') {
    const spec = JSON.parse(arg) as { keys: KeySpec[]; n: number };
    process.stdout.write(JSON.stringify(tamperSysctls(spec.keys, spec.n)));
  } else throw new Error(`unknown mode ${mode}`);
}

// --- outside ----------------------------------------------------------------------------------------------------------

async function runInside(ns: Netns, mode: string, arg: string): Promise<string> {
  const r = await ns.exec(process.execPath, [SELF, '--inside', mode, arg], { timeoutMs: 30 * 60_000 });
  return r.stdout;
}

function stats(xs: number[]): { n: number; p50: number; p99: number; max: number; lost: number } {
  const ok = xs.filter(Number.isFinite).sort((a, b) => a - b);
  const at = (q: number): number => ok[Math.min(ok.length - 1, Math.ceil(q * ok.length) - 1)] ?? Number.NaN;
  return { n: xs.length, p50: at(0.5), p99: at(0.99), max: ok[ok.length - 1] ?? Number.NaN, lost: xs.length - ok.length };
}

function show(name: string, xs: number[], budgetP99: number): Record<string, number | string> {
  const s = stats(xs);
  const verdict = s.lost === 0 && s.p99 <= budgetP99 ? 'within budget' : 'OVER budget';
  console.log(`${name.padEnd(28)} n=${s.n}  p50 ${s.p50.toFixed(1)} ms  p99 ${s.p99.toFixed(1)} ms  max ${s.max.toFixed(1)} ms  lost ${s.lost}  (p99 budget ${budgetP99} ms: ${verdict})`);
  return { name, ...s, budgetP99, verdict };
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
}

function memKb(pid: number, field: string): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`));
  return Number(line?.split(/\s+/)[1] ?? Number.NaN);
}

async function waitFor(pred: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function timeService(sd: SystemdClient, units: string[], n: number, what: 'stop' | 'disable'): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const unit = units[i % units.length];
    if (!unit) continue;
    await sleep(50 + Math.random() * 100);
    // The same calls `systemctl --user stop|disable` makes; the drift exists once they return.
    if (what === 'stop') await sd.stop(unit);
    else await sd.setEnabled(unit, false, false);
    const t0 = performance.now();
    let dt = Number.POSITIVE_INFINITY;
    while (performance.now() - t0 < GIVE_UP_MS) {
      const s = await sd.status(unit);
      if (what === 'stop' ? s.activeState === 'active' : s.unitFileState === 'enabled') {
        dt = performance.now() - t0;
        break;
      }
      await sleep(1);
    }
    out.push(dt);
  }
  return out;
}

async function main(): Promise<void> {
  await ensureUserManager();
  const ns = await Netns.create('bench');
  const units = new TestUnits();
  const work = mkdtempSync(path.join(tmpdir(), 'hs-bench-'));
  let agent: ChildProcess | undefined;
  const sd = new SystemdClient({ scope: 'user', log: silentLogger });
  try {
    const keys = JSON.parse(await runInside(ns, 'probe', String(SYSCTLS))) as KeySpec[];
    if (keys.length < SYSCTLS) console.log(`note: only ${keys.length} flippable net.* keys in this namespace`);
    const names: string[] = [];
    for (let i = 0; i < SERVICES; i++) names.push(await units.long(`bench${i}`));

    const resources = [
      ...keys.map((k) => `    - sysctl: ${k.key}\n      value: "${k.desired}"\n`),
      ...names.map((u) => `    - service: ${u}\n      ensure: running\n      enabled: true\n`),
    ];
    const baseline = path.join(work, 'bench.yaml');
    // A generous flap budget: the benchmark drifts the same things again and again on purpose.
    writeFileSync(baseline, `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: bench\nspec:\n  policy:\n    flap: { maxRepairs: 100000, window: 1m }\n  resources:\n${resources.join('')}`);

    agent = ns.spawn(process.execPath, [AGENT, 'run', '--baseline', baseline, '--state-dir', path.join(work, 'state'), '--systemd-scope', 'user', '--log-level', 'info'], {
      env: userManagerEnv(),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    agent.stderr?.on('data', (d: Buffer) => {
      if (err.length < 1_000_000) err += d.toString();
    });
    const child = agent;
    await waitFor(async () => err.includes('"agent ready"') || child.exitCode !== null, 60_000, 'agent ready');
    if (agent.exitCode !== null || agent.pid === undefined) throw new Error(`agent exited: ${err.slice(-2000)}`);
    const pid = agent.pid;
    await waitFor(async () => (await Promise.all(names.map((u) => sd.status(u)))).every((s) => s.activeState === 'active' && s.unitFileState === 'enabled'), 30_000, 'services converged');
    console.log(`agent pid ${pid}: ${keys.length} sysctls (namespace ${ns.name}), ${names.length} user services, sysctl poll at the default interval`);

    const results = [
      show('sysctl drift → repaired', JSON.parse(await runInside(ns, 'tamper', JSON.stringify({ keys, n: SYSCTL_TAMPERS }))) as number[], 500),
      show('service stop → running', await timeService(sd, names, SERVICE_TAMPERS, 'stop'), 500),
      show('service disable → enabled', await timeService(sd, names, SERVICE_TAMPERS, 'disable'), 500),
    ];

    await sleep(2000);
    const c0 = cpuTicks(pid);
    const t0 = performance.now();
    await sleep(IDLE_SECONDS * 1000);
    const cpu = ((cpuTicks(pid) - c0) / CLK_TCK / ((performance.now() - t0) / 1000)) * 100;
    const rss = memKb(pid, 'VmRSS');
    const anon = memKb(pid, 'RssAnon');
    console.log(`idle over ${IDLE_SECONDS} s: CPU ${cpu.toFixed(2)} % of one core, RSS ${(rss / 1024).toFixed(1)} MB (anonymous ${(anon / 1024).toFixed(1)} MB)`);
    console.log(JSON.stringify({ results, idle: { seconds: IDLE_SECONDS, cpuPercent: cpu, rssKb: rss, rssAnonKb: anon } }));
  } finally {
    if (agent && agent.exitCode === null) {
      const a = agent;
      const exited = new Promise((r) => a.once('exit', r));
      a.kill('SIGTERM');
      await exited;
    }
    await sd.close();
    await ns.destroy();
    await units.removeAll();
    rmSync(work, { recursive: true, force: true });
  }
}

const i = process.argv.indexOf('--inside');
if (i !== -1) inside(process.argv[i + 1] ?? '', process.argv[i + 2] ?? '');
else {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
