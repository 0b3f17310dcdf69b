// bench/controller-scale: a real controller process against many simulated agents speaking the real protocol (several
// worker processes, many agents each, from several 127.0.0.x source addresses): connected agents with heartbeats, time for
// a new version to be acknowledged by all, a staged rollout in waves with its gates (time per wave, controller CPU and
// memory), and sustained event ingest with nothing lost.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { PROTOCOL_VERSION, decodeBaselineDoc, decodeControllerMessage, encodeAgentMessage, type WireEvent } from '../proto/codec.js';

const env = (k: string, d: number): number => Number(process.env[k] ?? d);
const AGENTS = env('AGENTS', 10_000);
const WORKERS = env('WORKERS', 4);
const HOLD_SECONDS = env('HOLD_SECONDS', 20);
const HEARTBEAT_MS = env('HEARTBEAT_MS', 5_000);
const EVENT_AGENTS = env('EVENT_AGENTS', 500);
const EVENT_BATCH = env('EVENT_BATCH', 200);
const EVENT_SECONDS = env('EVENT_SECONDS', 15);
const PORT = env('PORT', 17_400);
const WAVE_SOAK_SECONDS = env('WAVE_SOAK_SECONDS', 2);
const ADMIN = 'bench-admin';
const SELF = fileURLToPath(import.meta.url);

type ToWorker =
  | { cmd: 'connect'; url: string; token: string; count: number; index: number }
  | { cmd: 'events'; agents: number; batch: number; seconds: number }
  | { cmd: 'count' };
type FromWorker = { kind: 'connected'; ok: number; failed: number } | { kind: 'events'; sent: number; acked: number } | { kind: 'count'; open: number; acks: number };

// ---- worker: simulated agents ----

interface SimAgent {
  ws: WebSocket;
  seq: number;
  open: boolean;
  waiting: ((upto: number) => void) | undefined;
}

async function worker(): Promise<void> {
  const agents: SimAgent[] = [];
  let acks = 0;
  const reply = (m: FromWorker): void => void process.send?.(m);
  process.on('message', (m: ToWorker) => {
    void (async () => {
      if (m.cmd === 'connect') {
        let ok = 0;
        let failed = 0;
        const one = (i: number): Promise<void> =>
          new Promise((resolve) => {
            // Several source addresses: each has its own ~28k ephemeral ports.
            const localAddress = `127.0.${1 + m.index}.${1 + (i % 250)}`;
            const ws = new WebSocket(`${m.url}/agent`, { localAddress, perMessageDeflate: false });
            const a: SimAgent = { ws, seq: 0, open: false, waiting: undefined };
            ws.on('open', () => ws.send(encodeAgentMessage({ hello: { protocolVersion: PROTOCOL_VERSION, agentVersion: 'bench', joinToken: m.token, labels: { bench: 'yes' } } })));
            ws.on('message', (data: Buffer) => {
              const msg = decodeControllerMessage(data);
              if (!msg) return;
              if (msg.body === 'welcome') {
                a.open = true;
                ok++;
                agents.push(a);
                const hb = setInterval(() => ws.send(encodeAgentMessage({ heartbeat: { time: Date.now(), outboxPending: 0, outboxDropped: 0 } })), HEARTBEAT_MS * (0.5 + Math.random() / 2));
                ws.on('close', () => clearInterval(hb));
                resolve();
              } else if (msg.body === 'assignment') {
                const enforcing = msg.assignment.baselines.map((s) => {
                  const d = decodeBaselineDoc(s.payload);
                  return { name: d.name, version: d.version, sha256: d.sha256 };
                });
                ws.send(encodeAgentMessage({ assignmentAck: { enforcing, rejected: [], enforcementPaused: false } }));
                // What a real agent sends once its engine settled: the health signal of a staged rollout.
                ws.send(encodeAgentMessage({ convergence: { baselines: enforcing.map((e) => ({ name: e.name, version: e.version, outcome: 'kept', failed: [], detail: '' })) } }));
                if (enforcing.length > 0) acks++;
              } else if (msg.body === 'eventAck') {
                a.waiting?.(msg.eventAck.uptoSeq);
              }
            });
            ws.on('error', () => undefined);
            ws.on('close', () => {
              if (!a.open) {
                failed++;
                resolve();
              }
              a.open = false;
            });
          });
        // Bounded concurrency: a burst of 50k handshakes at once would only measure the listen backlog.
        let next = 0;
        await Promise.all(Array.from({ length: 200 }, async () => {
          while (next < m.count) await one(next++);
        }));
        reply({ kind: 'connected', ok, failed });
      } else if (m.cmd === 'events') {
        let sent = 0;
        let acked = 0;
        const until = Date.now() + m.seconds * 1000;
        await Promise.all(
          agents.slice(0, m.agents).map(async (a) => {
            // Like a real agent's outbox: what the controller did not acknowledge (its per-agent rate) is sent again first.
            let unacked: WireEvent[] = [];
            while (Date.now() < until && a.open) {
              const events: WireEvent[] = [...unacked];
              const resent = unacked.length;
              for (let k = resent; k < m.batch; k++) {
                a.seq++;
                events.push({ seq: a.seq, time: Date.now(), resource: `file:/etc/app/${k}.conf`, event: k % 2 ? 'repaired' : 'drift_detected', trigger: 'watch', baseline: 'bench', version: 1, observedJson: '{"sha256":"ab"}', desiredJson: '{"sha256":"cd"}', diff: '', detail: '', prevHash: 'p', hash: `h${a.seq}` });
              }
              const upto = new Promise<number>((r) => (a.waiting = r));
              a.ws.send(encodeAgentMessage({ events: { events } }));
              sent += events.length - resent;
              const got = await upto;
              unacked = events.filter((e) => e.seq > got);
              acked += events.length - unacked.length;
            }
          }),
        );
        reply({ kind: 'events', sent, acked });
      } else if (m.cmd === 'count') {
        reply({ kind: 'count', open: agents.filter((a) => a.open).length, acks });
      }
    })();
  });
}

// ---- driver ----

function ask(w: ChildProcess, m: ToWorker): Promise<FromWorker> {
  return new Promise((resolve) => {
    w.once('message', (r: FromWorker) => resolve(r));
    w.send(m);
  });
}

async function http<T>(method: string, url: string, body?: unknown): Promise<T> {
  const r = await fetch(url, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${url}: ${r.status} ${text}`);
  return (text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text) as T;
}

async function metric(base: string, name: string): Promise<number> {
  const text = await http<string>('GET', `${base}/metrics`);
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return Number(m?.[1] ?? 0);
}

/** CPU seconds (user + system) and resident memory of a process, from /proc. */
function usage(pid: number): { cpuSeconds: number; rssMb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11] ?? 0) + Number(f[12] ?? 0);
  const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { cpuSeconds: ticks / 100, rssMb: Math.round(Number(rss?.[1] ?? 0) / 1024) };
}

async function driver(): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'hs-bench-ctl-'));
  const base = `http://127.0.0.1:${PORT}`;
  const ctlMain = path.resolve(path.dirname(SELF), '../controller/main.js');
  const ctl = spawn(process.execPath, [ctlMain, 'run', '--data-dir', dataDir, '--listen', `127.0.0.1:${PORT}`, '--insecure-http', '--admin-token', ADMIN, '--heartbeat-interval', `${HEARTBEAT_MS}ms`, '--log-level', 'warn'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const workers: ChildProcess[] = [];
  const results: Record<string, unknown> = { agents: AGENTS, workers: WORKERS, heartbeatMs: HEARTBEAT_MS };
  try {
    for (let i = 0; i < 100; i++) {
      try {
        await http('GET', `${base}/healthz`);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const { token } = await http<{ token: string }>('POST', `${base}/api/v1/enrollment-tokens`, { ttl: '1h', allowLabels: ['bench'] });
    for (let i = 0; i < WORKERS; i++) workers.push(fork(SELF, ['--worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));

    // 1. enroll and connect
    let t0 = performance.now();
    const per = Math.ceil(AGENTS / WORKERS);
    const conns = await Promise.all(workers.map((w, i) => ask(w, { cmd: 'connect', url: `ws://127.0.0.1:${PORT}`, token, count: Math.min(per, AGENTS - i * per), index: i })));
    const ok = conns.reduce((n, c) => n + (c.kind === 'connected' ? c.ok : 0), 0);
    results.connectSeconds = +((performance.now() - t0) / 1000).toFixed(1);
    results.connected = ok;
    results.connectFailed = conns.reduce((n, c) => n + (c.kind === 'connected' ? c.failed : 0), 0);
    console.error(`connected ${ok}/${AGENTS} in ${String(results.connectSeconds)} s`);

    // 2. hold with heartbeats
    const cpu0 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, HOLD_SECONDS * 1000));
    const health = await http<{ agentsConnected: number }>('GET', `${base}/healthz`);
    results.connectedAfterHold = health.agentsConnected;
    results.holdSeconds = HOLD_SECONDS;
    void cpu0;
    console.error(`after ${HOLD_SECONDS} s of heartbeats: ${health.agentsConnected} connected`);

    // 3. a new version acknowledged by every agent
    const yaml = 'apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: bench\nspec:\n  resources:\n    - file: /etc/bench.conf\n      content: "x\\n"\n';
    const v = await http<{ version: number }>('POST', `${base}/api/v1/baselines`, { yaml });
    t0 = performance.now();
    const r = await http<{ id: number }>('POST', `${base}/api/v1/rollouts`, { baseline: 'bench', version: v.version, strategy: 'all-at-once' });
    let status: { acknowledged: number; targeted: number } = { acknowledged: 0, targeted: 0 };
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      status = await http('GET', `${base}/api/v1/rollouts/${r.id}?hosts=false`);
      if (status.acknowledged >= ok) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    results.rolloutAcknowledged = status.acknowledged;
    results.rolloutSeconds = +((performance.now() - t0) / 1000).toFixed(2);
    console.error(`version acknowledged by ${status.acknowledged}/${status.targeted} in ${String(results.rolloutSeconds)} s`);

    // 3b. a staged rollout in waves (1 host, 10 %, 50 %, 100 %), each gated on convergence and a soak
    const v2 = await http<{ version: number }>('POST', `${base}/api/v1/baselines`, { yaml: yaml.replace('"x\\n"', '"y\\n"') });
    const u0 = usage(ctl.pid ?? 0);
    t0 = performance.now();
    const staged = await http<{ id: number }>('POST', `${base}/api/v1/rollouts`, {
      baseline: 'bench',
      version: v2.version,
      strategy: { waves: [{ hosts: 1 }, 10, 50, 100], gate: { maxFailedHosts: 0, soakSeconds: WAVE_SOAK_SECONDS, ackTimeoutSeconds: 120 } },
    });
    type Steps = { state: string; converged: number; targeted: number; steps: { time: number; kind: string; wave?: number; hosts?: number }[] };
    let st: Steps = { state: 'running', converged: 0, targeted: 0, steps: [] };
    let peakRss = 0;
    const wavesDeadline = Date.now() + 300_000;
    while (Date.now() < wavesDeadline) {
      st = await http<Steps>('GET', `${base}/api/v1/rollouts/${staged.id}?hosts=false`);
      peakRss = Math.max(peakRss, usage(ctl.pid ?? 0).rssMb);
      if (st.state !== 'running') break;
      await new Promise((res) => setTimeout(res, 200));
    }
    const u1 = usage(ctl.pid ?? 0);
    const wall = (performance.now() - t0) / 1000;
    const started = new Map(st.steps.filter((x) => x.kind === 'wave_started').map((x) => [x.wave ?? -1, x]));
    const waves = st.steps
      .filter((x) => x.kind === 'wave_healthy')
      .map((x) => {
        const s0 = started.get(x.wave ?? -1);
        // Time to converge, without the soak the gate waits on purpose.
        return { wave: x.wave, hosts: s0?.hosts ?? 0, seconds: +((x.time - (s0?.time ?? x.time)) / 1000).toFixed(2), convergeSeconds: +((x.time - (s0?.time ?? x.time)) / 1000 - WAVE_SOAK_SECONDS).toFixed(2) };
      });
    results.wavedRollout = {
      state: st.state,
      converged: st.converged,
      targeted: st.targeted,
      soakSeconds: WAVE_SOAK_SECONDS,
      totalSeconds: +wall.toFixed(2),
      waves,
      controllerCpuSeconds: +(u1.cpuSeconds - u0.cpuSeconds).toFixed(2),
      controllerCpuPercentOfOneCore: Math.round((100 * (u1.cpuSeconds - u0.cpuSeconds)) / wall),
      controllerRssMb: { before: u0.rssMb, peak: peakRss, after: u1.rssMb },
    };
    console.error(`waved rollout ${st.state}: ${st.converged}/${st.targeted} converged in ${wall.toFixed(1)} s (${waves.map((w) => `wave ${String(w.wave)}: ${w.hosts} hosts ${w.seconds} s`).join(', ')})`);

    // 4. sustained event ingest
    const before = await metric(base, 'homeostat_events_persisted_total');
    t0 = performance.now();
    const evs = await Promise.all(workers.map((w) => ask(w, { cmd: 'events', agents: Math.ceil(EVENT_AGENTS / WORKERS), batch: EVENT_BATCH, seconds: EVENT_SECONDS })));
    const secs = (performance.now() - t0) / 1000;
    const sent = evs.reduce((n, e) => n + (e.kind === 'events' ? e.sent : 0), 0);
    const acked = evs.reduce((n, e) => n + (e.kind === 'events' ? e.acked : 0), 0);
    const persisted = (await metric(base, 'homeostat_events_persisted_total')) - before;
    const duplicates = await metric(base, 'homeostat_events_duplicate_total');
    Object.assign(results, { eventsSent: sent, eventsAcked: acked, eventsPersisted: persisted, eventsDuplicate: duplicates, eventsPerSecond: Math.round(persisted / secs), eventSeconds: +secs.toFixed(1), eventAgents: EVENT_AGENTS, eventBatch: EVENT_BATCH, lost: acked - persisted });
    console.error(`events: ${persisted} persisted of ${sent} sent (${acked} acknowledged) in ${secs.toFixed(1)} s = ${String(results.eventsPerSecond)}/s`);
    const final = await Promise.all(workers.map((w) => ask(w, { cmd: 'count' })));
    results.stillConnected = final.reduce((n, c) => n + (c.kind === 'count' ? c.open : 0), 0);
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  } finally {
    for (const w of workers) w.kill('SIGKILL');
    ctl.kill('SIGTERM');
    await new Promise((r) => ctl.once('exit', r));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--worker')) void worker();
else await driver();
