// bench/hostile-clients: a real controller process (TLS, as deployed) against 1,000 unauthenticated connections of each
// hostile kind in turn — raw TCP that never speaks, TLS handshakes stalled half-way, headers sent one line at a time,
// POST bodies that never come, websocket upgrades that never send a hello — from many loopback source addresses, while a
// real enrolled agent keeps repairing drift. Prints the controller's RSS before, during and after each kind, what was
// refused or closed by the server and when, and whether /healthz and the agent still worked. Budget: <= 64 MiB growth,
// nothing crashes.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, createServer as createNetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';

const env = (k: string, d: number): number => Number(process.env[k] ?? d);
const CONNECTIONS = env('CONNECTIONS', 1000);
const SOURCES = env('SOURCES', 25);
const HOLD_MS = env('HOLD_MS', 3000);
const KINDS = (process.env.KINDS ?? 'raw-tcp,tls-stalled,slow-headers,stalled-post,ws-no-hello,one-address').split(',');
const CONTROLLER = fileURLToPath(new URL('../controller/main.js', import.meta.url));
const AGENT = fileURLToPath(new URL('../agent/main.js', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The controller's heap and the memory outside it (buffers, TLS), from its own metrics. */
async function heapMb(base: string): Promise<{ heapUsed: number; external: number }> {
  const text = (await https(base, 'GET', '/metrics')).text;
  const v = (name: string): number => Math.round(Number(new RegExp(`^homeostat_controller_${name} (\\S+)$`, 'm').exec(text)?.[1] ?? 0) / 1024 ** 2);
  return { heapUsed: v('nodejs_heap_size_used_bytes'), external: v('nodejs_external_memory_bytes') };
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Math.round(Number(m?.[1] ?? 0) / 1024);
}

async function until(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      if (await pred()) return;
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** One HTTPS request on a fresh connection (so it is itself an unauthenticated connection until it shows the token). */
function https(base: string, method: string, url: string, token?: string, body?: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = httpsRequest(`${base}${url}`, {
      method,
      rejectUnauthorized: false,
      agent: false,
      // The operator's own address: not one the hostile clients use.
      localAddress: '127.0.8.1',
      timeout: 5000,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(payload ? { 'content-type': 'application/json' } : {}) },
    }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(payload);
  });
}

/** The first bytes a TLS client sends (its ClientHello), captured once from a local listener. */
async function clientHello(): Promise<Buffer> {
  return new Promise((resolve) => {
    const srv = createNetServer((s) => {
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
        srv.close();
      });
    });
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      const c = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false });
      c.on('error', () => undefined);
    });
  });
}

interface Held {
  socket: Socket;
  openedAt: number;
  closedAt?: number;
  /** Closed by the server before the bench had done its part (refused at accept). */
  refused: boolean;
  ready: boolean;
}

type Opener = (port: number, localAddress: string) => Promise<Held>;

function track(socket: Socket, openedAt: number): Held {
  const h: Held = { socket, openedAt, refused: false, ready: false };
  socket.on('error', () => undefined);
  // Read (and drop) whatever the server answers: an unread answer would keep 'close' from ever being seen.
  socket.resume();
  socket.on('close', () => {
    h.closedAt = Date.now();
    if (!h.ready) h.refused = true;
  });
  return h;
}

const BIG_PAYLOAD = Buffer.alloc(8 * 1024 * 1024);

function openers(hello: Buffer): Record<string, Opener> {
  const tcp = (port: number, localAddress: string): Promise<Held> =>
    new Promise((resolve) => {
      const s = netConnect({ port, host: '127.0.0.1', localAddress });
      const h = track(s, Date.now());
      s.once('connect', () => resolve(h));
      s.once('close', () => resolve(h));
    });
  const tls = (port: number, localAddress: string): Promise<{ h: Held; ok: boolean }> =>
    new Promise((resolve) => {
      const raw = netConnect({ port, host: '127.0.0.1', localAddress });
      raw.on('error', () => undefined);
      const s = tlsConnect({ socket: raw, rejectUnauthorized: false });
      const h = track(s, Date.now());
      s.once('secureConnect', () => resolve({ h, ok: true }));
      s.once('close', () => resolve({ h, ok: false }));
    });
  return {
    'raw-tcp': async (port, addr) => {
      const h = await tcp(port, addr);
      h.ready = h.closedAt === undefined;
      return h;
    },
    'tls-stalled': async (port, addr) => {
      const h = await tcp(port, addr);
      if (h.closedAt === undefined) {
        h.socket.write(hello.subarray(0, Math.floor(hello.length / 2)));
        h.ready = true;
      }
      return h;
    },
    'slow-headers': async (port, addr) => {
      const { h, ok } = await tls(port, addr);
      if (ok) {
        h.socket.write('GET /api/v1/agents HTTP/1.1\r\nHost: controller\r\n');
        h.ready = true;
        const drip = setInterval(() => (h.socket.writable ? h.socket.write('X-Slow: 1\r\n') : clearInterval(drip)), 1000);
        h.socket.once('close', () => clearInterval(drip));
      }
      return h;
    },
    'stalled-post': async (port, addr) => {
      const { h, ok } = await tls(port, addr);
      if (ok) {
        // The one open route that takes a body (the dashboard login): its limit is small, and the body never completes.
        h.socket.write('POST /api/v1/session HTTP/1.1\r\nHost: controller\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"token": "');
        h.ready = true;
      }
      return h;
    },
    'ws-no-hello': async (port, addr) => {
      const { h, ok } = await tls(port, addr);
      if (!ok) return h;
      h.socket.write('GET /agent HTTP/1.1\r\nHost: controller\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
      await new Promise<void>((resolve) => {
        h.socket.once('data', (d: Buffer) => {
          h.ready = d.toString('latin1').startsWith('HTTP/1.1 101');
          resolve();
        });
        h.socket.once('close', () => resolve());
      });
      return h;
    },
    // Opt-in (KINDS=ws-big-frame): after the upgrade, before any hello, most of one frame of just under 8 MiB (the
    // gateway's --max-message-bytes), never finished. What it costs is the gateway's pre-hello frame limit.
    'ws-big-frame': async (port, addr) => {
      const { h, ok } = await tls(port, addr);
      if (!ok) return h;
      h.socket.write('GET /agent HTTP/1.1\r\nHost: controller\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
      await new Promise<void>((resolve) => {
        h.socket.once('data', (d: Buffer) => {
          h.ready = d.toString('latin1').startsWith('HTTP/1.1 101');
          resolve();
        });
        h.socket.once('close', () => resolve());
      });
      if (!h.ready) return h;
      const size = 8 * 1024 * 1024 - 1024;
      const header = Buffer.alloc(14);
      header[0] = 0x82; // FIN, binary
      header[1] = 0x80 | 127; // masked, 64-bit length
      header.writeBigUInt64BE(BigInt(size), 2);
      // mask key: bytes 10..13 stay zero, so the payload goes as is
      h.socket.write(header);
      h.socket.write(BIG_PAYLOAD.subarray(0, size - 1));
      return h;
    },
    // All from one address: the per-address cap.
    'one-address': async (port) => {
      const h = await tcp(port, '127.0.0.1');
      h.ready = h.closedAt === undefined;
      return h;
    },
  };
}

interface Stack {
  base: string;
  port: number;
  pid: number;
  alive(): boolean;
  logLines(): number;
  /** Drifts the agent's file and resolves with the ms until the repair is reported at the controller. */
  agentWorks(): Promise<number>;
  stop(): Promise<void>;
}

/** A fresh controller (TLS) and a real agent enrolled in it, enforcing one file. */
async function startStack(admin: string): Promise<Stack> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hs-bench-hostile-'));
  const tokenFile = path.join(dir, 'admin.token');
  writeFileSync(tokenFile, `${admin}\n`, { mode: 0o600 });
  const extra = (process.env.CONTROLLER_ARGS ?? '').split(' ').filter(Boolean);
  const ctl: ChildProcess = spawn(process.execPath, [CONTROLLER, 'run', '--data-dir', path.join(dir, 'controller'), '--listen', '127.0.0.1:0', '--admin-token-file', tokenFile, '--log-level', 'info', ...extra], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let ctlLog = '';
  ctl.stderr?.on('data', (d: Buffer) => (ctlLog += d.toString()));
  let agent: ChildProcess | undefined;
  const stop = async (): Promise<void> => {
    agent?.kill('SIGTERM');
    if (ctl.exitCode === null) {
      ctl.kill('SIGTERM');
      await new Promise((r) => ctl.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until(() => ctlLog.includes('"controller listening"'), 20_000, 'controller');
    const base = (JSON.parse(ctlLog.split('\n').find((l) => l.includes('"controller listening"')) ?? '{}') as { url: string }).url;
    const managed = path.join(dir, 'managed');
    mkdirSync(managed);
    const motd = path.join(managed, 'motd');
    const yaml = `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: bench\nspec:\n  resources:\n    - file: ${motd}\n      content: "kept\\n"\n`;
    await https(base, 'POST', '/api/v1/baselines', admin, { yaml });
    await https(base, 'POST', '/api/v1/rollouts', admin, { baseline: 'bench', version: 1, strategy: 'all-at-once' });
    const { token } = JSON.parse((await https(base, 'POST', '/api/v1/enrollment-tokens', admin, { ttl: '1h' })).text) as { token: string };
    agent = spawn(process.execPath, [AGENT, 'run', '--controller', base.replace('https:', 'wss:'), '--token', token, '--state-dir', path.join(dir, 'agent'), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'ignore'] });
    await until(() => readFileSync(motd, 'utf8') === 'kept\n', 30_000, 'agent enforcing');
    const latest = async (): Promise<number> => (JSON.parse((await https(base, 'GET', '/api/v1/events?kind=repaired&order=desc&limit=1', admin)).text) as { id: number }[])[0]?.id ?? 0;
    const agentWorks = async (): Promise<number> => {
      const t0 = Date.now();
      const before = await latest();
      writeFileSync(motd, `drift ${t0}\n`);
      await until(async () => readFileSync(motd, 'utf8') === 'kept\n' && (await latest()) > before, 30_000, 'drift repaired and reported');
      return Date.now() - t0;
    };
    await agentWorks();
    // Let start-up garbage settle before the baseline figure.
    await sleep(2000);
    return { base, port: Number(new URL(base).port), pid: ctl.pid ?? 0, alive: () => ctl.exitCode === null, logLines: () => ctlLog.split('\n').length, agentWorks, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function main(): Promise<void> {
  const admin = 'bench-hostile-admin';
  const results: Record<string, unknown> = { connections: CONNECTIONS, sources: SOURCES, holdMs: HOLD_MS };
  const open = openers(await clientHello());
  const phases: Record<string, unknown>[] = [];
  const holds: Record<string, number | null> = {};
  for (const kind of KINDS) {
    const opener = open[kind];
    if (!opener) throw new Error(`unknown kind ${kind}`);
    const stack = await startStack(admin);
    try {
      const { base, port, pid } = stack;
      const rssBefore = rssMb(pid);
      const heapBefore = await heapMb(base).catch(() => null);
      const held: Held[] = [];
      let next = 0;
      const t0 = Date.now();
      await Promise.all(
        Array.from({ length: 100 }, async () => {
          while (next < CONNECTIONS) {
            const i = next++;
            held.push(await opener(port, `127.0.${10 + (i % SOURCES)}.${1 + (Math.floor(i / SOURCES) % 250)}`));
          }
        }),
      );
      const openSeconds = (Date.now() - t0) / 1000;
      await sleep(HOLD_MS);
      const rssDuring = rssMb(pid);
      const heapDuring = await heapMb(base).catch(() => null);
      const healthz = await https(base, 'GET', '/healthz').then((r) => r.status, (e: unknown) => String(e));
      const agentRepairMs = await stack.agentWorks().catch((e: unknown) => String(e));
      const stillHeld = held.filter((h) => h.ready && h.closedAt === undefined).length;
      const closedByServer = held.filter((h) => h.ready && h.closedAt !== undefined).length;
      for (const h of held) h.socket.destroy();
      await sleep(2000);
      const rssAfter = rssMb(pid);
      const metrics = (await https(base, 'GET', '/metrics')).text;
      const phase = {
        kind,
        opened: held.filter((h) => h.ready).length,
        refusedAtOnce: held.filter((h) => !h.ready).length,
        refusedByReason: Object.fromEntries([...metrics.matchAll(/^homeostat_connections_refused_total\{reason="(\w+)"\} (\d+)/gm)].map((m) => [m[1], Number(m[2])])),
        openSeconds: +openSeconds.toFixed(1),
        stillHeldAfterHold: stillHeld,
        closedByServerDuringHold: closedByServer,
        rssMb: { before: rssBefore, during: rssDuring, after: rssAfter, growth: rssDuring - rssBefore },
        heapMb: { before: heapBefore, during: heapDuring },
        healthz,
        agentRepairedAndReportedMs: agentRepairMs,
        controllerAlive: stack.alive(),
        controllerLogLines: stack.logLines(),
      };
      phases.push(phase);
      process.stderr.write(`${JSON.stringify(phase)}\n`);
      // How long the server holds one such connection by itself, timed until it closes it.
      if (kind !== 'one-address') {
        const h = await opener(port, '127.0.9.1');
        const t = Date.now();
        if (process.env.DEBUG) {
          h.socket.on('data', (d: Buffer) => process.stderr.write(`${kind} +${Date.now() - t} ms: ${JSON.stringify(d.toString('latin1').slice(0, 60))}\n`));
          process.stderr.write(`${kind} hold probe ready=${h.ready} closed=${String(h.closedAt)}\n`);
        }
        await until(() => h.closedAt !== undefined, 60_000, `${kind} closed`).catch(() => undefined);
        if (process.env.DEBUG && h.closedAt === undefined) {
          const m = (await https(base, 'GET', '/metrics')).text;
          process.stderr.write(`${kind} probe still open: destroyed=${String(h.socket.destroyed)} readyState=${h.socket.readyState} ${/^homeostat_connections_unauthenticated \S+$/m.exec(m)?.[0] ?? ''} ${JSON.stringify([...m.matchAll(/^homeostat_connections_refused_total.*$/gm)].map((x) => x[0]))}\n`);
        }
        holds[kind] = h.closedAt === undefined ? null : +((h.closedAt - t) / 1000).toFixed(1);
        h.socket.destroy();
      }
    } finally {
      await stack.stop();
    }
  }
  results.phases = phases;
  results.serverClosesAfterSeconds = holds;
  results.maxGrowthMb = Math.max(...phases.map((p) => (p.rssMb as { growth: number }).growth));
  results.crashed = phases.filter((p) => !p.controllerAlive).map((p) => p.kind);
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
}

await main();
