// Benchmark: how long after a repair its event is persisted at the controller (budget p99 ≤ 1 s), with a real controller
// and a real agent over a real websocket on loopback. Prints its figures; see bench/README.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const AGENT = fileURLToPath(new URL('../agent/main.js', import.meta.url));
const CONTROLLER = fileURLToPath(new URL('../controller/main.js', import.meta.url));
const TAMPERS = Number(process.env.TAMPERS ?? 500);
const PORT = Number(process.env.PORT ?? 17480);
const TOKEN = 'bench-admin-token';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function api<T>(method: string, url: string, body?: unknown): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${PORT}${url}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

async function until(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await pred()) return;
    } catch {
      // not up yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function pct(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hs-bench-events-'));
  const children: ChildProcess[] = [];
  try {
    children.push(
      spawn(process.execPath, [CONTROLLER, 'run', '--data-dir', path.join(dir, 'controller'), '--listen', `127.0.0.1:${PORT}`, '--insecure-http', '--admin-token', TOKEN, '--log-level', 'warn'], { stdio: 'ignore' }),
    );
    await until(async () => (await fetch(`http://127.0.0.1:${PORT}/healthz`)).ok, 15_000, 'controller');
    const { token } = await api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h' });
    children.push(spawn(process.execPath, [AGENT, 'run', '--controller', `ws://127.0.0.1:${PORT}`, '--insecure-http', '--token', token, '--state-dir', path.join(dir, 'agent'), '--log-level', 'warn'], { stdio: 'ignore' }));
    const file = path.join(dir, 'motd');
    const yaml = `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: latency\nspec:\n  policy:\n    flap: { maxRepairs: 100000, window: 1m }\n  resources:\n    - file: ${file}\n      content: "managed\\n"\n`;
    const { version } = await api<{ version: number }>('POST', '/api/v1/baselines', { yaml, file: 'latency.yaml' });
    await until(async () => (await api<{ connected?: boolean }[]>('GET', '/api/v1/agents')).length > 0, 15_000, 'agent enrolled');
    await api('POST', '/api/v1/rollouts', { baseline: 'latency', version, strategy: 'all-at-once' });
    await until(() => readFileSync(file, 'utf8') === 'managed\n', 15_000, 'baseline enforced');
    await sleep(500);
    for (let i = 0; i < TAMPERS; i++) {
      writeFileSync(file, `tampered ${i}\n`);
      // Spread out as real drift is; each repair takes a few ms.
      await sleep(20);
    }
    const resource = `file:${file}`;
    // Two tamperings that land inside one repair are one drift; so wait until the count at the controller stops growing.
    let events: { time: number; receivedAt: number; trigger: string | null }[] = [];
    let last = -1;
    await until(async () => {
      events = await api('GET', `/api/v1/events?kind=repaired&resource=${encodeURIComponent(resource)}&limit=100000`);
      const settled = events.length === last && events.length > 1;
      last = events.length;
      await sleep(1000);
      return settled;
    }, 60_000, 'the repairs to arrive at the controller');
    const lat = events.filter((e) => e.trigger === 'watch').map((e) => e.receivedAt - e.time).sort((a, b) => a - b);
    console.log(`repair -> persisted at the controller (agent's record time to the controller's receipt), ${lat.length} repairs:`);
    console.log(`  p50=${pct(lat, 0.5)} ms p99=${pct(lat, 0.99)} ms max=${lat[lat.length - 1] ?? NaN} ms (millisecond clock, same host)`);
  } finally {
    for (const c of children.reverse()) {
      c.kill('SIGTERM');
      await new Promise((r) => c.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
