// bench/gateway-prehello: what connections that never complete a hello cost a real controller process. CONNECTIONS
// WebSocket connections from ADDRESSES loopback source addresses each send a frame header announcing 8 MiB and then
// BYTES of it (just under the pre-hello budget by default), and stall. Prints the controller's RSS before, with all of them
// open, and after they are gone (the hello timeout closes them), how many were accepted or turned away, and whether a
// real enrollment still succeeds meanwhile.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { PROTOCOL_VERSION, decodeControllerMessage, encodeAgentMessage } from '../proto/codec.js';

const env = (k: string, d: number): number => Number(process.env[k] ?? d);
const CONNECTIONS = env('CONNECTIONS', 1000);
const ADDRESSES = env('ADDRESSES', 50);
const BYTES = env('BYTES', 31 * 1024);
const PORT = env('PORT', 17_480);
const ADMIN = 'bench-admin';
const SELF = fileURLToPath(import.meta.url);

const rssMb = (pid: number): number => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A raw upgrade, then a frame header announcing 8 MiB and BYTES of payload; resolves with the HTTP status. */
function stall(address: string, sockets: net.Socket[]): Promise<number> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: PORT, localAddress: address }, () => {
      s.write(`GET /agent HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`);
    });
    sockets.push(s);
    s.on('error', () => resolve(0));
    s.once('data', (d: Buffer) => {
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(d.toString('latin1'))?.[1] ?? 0);
      if (status === 101) {
        const h = Buffer.alloc(14);
        h[0] = 0x82;
        h[1] = 0x80 | 127;
        h.writeBigUInt64BE(BigInt(8 * 1024 * 1024), 2);
        s.write(Buffer.concat([h, Buffer.alloc(BYTES, 7)]));
      }
      resolve(status);
    });
  });
}

async function enrollsMeanwhile(token: string): Promise<boolean> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${PORT}/agent`, { localAddress: '127.0.9.9' });
    ws.on('open', () => ws.send(encodeAgentMessage({ hello: { protocolVersion: PROTOCOL_VERSION, agentVersion: 'bench', joinToken: token } })));
    ws.on('message', (data: Buffer) => {
      resolve(decodeControllerMessage(data)?.body === 'welcome');
      ws.close();
    });
    ws.on('close', () => resolve(false));
    ws.on('error', () => resolve(false));
  });
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'hs-bench-prehello-'));
  const ctlMain = path.resolve(path.dirname(SELF), '../controller/main.js');
  const ctl = spawn(process.execPath, [ctlMain, 'run', '--data-dir', dataDir, '--listen', `127.0.0.1:${PORT}`, '--insecure-http', '--admin-token', ADMIN, '--log-level', 'error'], { stdio: ['ignore', 'inherit', 'inherit'] });
  const pid = ctl.pid ?? 0;
  const sockets: net.Socket[] = [];
  try {
    let token = '';
    for (let i = 0; i < 100 && !token; i++) {
      try {
        const r = await fetch(`http://127.0.0.1:${PORT}/api/v1/enrollment-tokens`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{"ttl":"1h"}' });
        token = ((await r.json()) as { token: string }).token;
      } catch {
        await sleep(100);
      }
    }
    await sleep(500);
    const before = rssMb(pid);
    const statuses: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < CONNECTIONS; i += 50) {
      statuses.push(...(await Promise.all(Array.from({ length: Math.min(50, CONNECTIONS - i) }, (_, k) => stall(`127.0.8.${1 + ((i + k) % ADDRESSES)}`, sockets)))));
    }
    await sleep(300);
    const during = rssMb(pid);
    const openSeconds = (performance.now() - t0) / 1000;
    const enrolled = await enrollsMeanwhile(token);
    // The hello timeout (5 s) ends the rest; wait for every socket to be closed by the controller.
    const deadline = Date.now() + 30_000;
    while (sockets.some((s) => !s.destroyed && !s.closed) && Date.now() < deadline) await sleep(200);
    await sleep(500);
    const after = rssMb(pid);
    const count = (code: number): number => statuses.filter((s) => s === code).length;
    console.log(
      JSON.stringify(
        { connections: CONNECTIONS, addresses: ADDRESSES, bytesEach: BYTES, openSeconds: +openSeconds.toFixed(1), accepted: count(101), turnedAway: count(503), failed: statuses.filter((s) => s !== 101 && s !== 503).length, rssMb: { before, during, after, growth: during - before }, enrolledMeanwhile: enrolled, controllerAlive: ctl.exitCode === null },
        null,
        2,
      ),
    );
  } finally {
    for (const s of sockets) s.destroy();
    ctl.kill('SIGTERM');
    await new Promise((r) => ctl.once('exit', r));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
