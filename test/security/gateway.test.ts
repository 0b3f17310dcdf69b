// The agent endpoint against strangers and noisy agents, on a real controller over real sockets: what a connection may
// send before its hello is accepted, how many such connections one address may hold, enrollment attempts, and what an
// agent's reports can do to metrics and logs.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import type { Logger } from '../../lib/log.js';
import { tempDir, waitFor } from '../helpers/agent.js';
import { controller, welcomedOrClosed, wireClient, type Controller } from '../helpers/trust.js';

interface Line {
  level: string;
  msg: string;
}

function capturingLogger(lines: Line[]): Logger {
  const at =
    (level: string) =>
    (a: unknown, b?: unknown): void => {
      lines.push({ level, msg: typeof a === 'string' ? a : String(b ?? '') });
    };
  const log = { level: 'debug', fatal: at('fatal'), error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug'), trace: at('trace'), isLevelEnabled: () => true } as Record<string, unknown>;
  log.child = () => log;
  return log as unknown as Logger;
}

/** An HTTP upgrade to /agent by hand over TLS; resolves with the status line's code and the socket. */
function rawUpgrade(port: number, localAddress = '127.0.0.1'): Promise<{ status: number; socket: tls.TLSSocket }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ socket: net.connect({ host: '127.0.0.1', port, localAddress }), rejectUnauthorized: false }, () => {
      socket.write(
        `GET /agent HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`,
      );
    });
    let head = '';
    const onData = (d: Buffer): void => {
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0), socket });
    };
    socket.on('data', onData);
    socket.on('error', reject);
  });
}

/** A client frame header (masked, binary) announcing `length` payload bytes; the mask is zero so the payload goes as is. */
function frameHeader(length: number): Buffer {
  const h = Buffer.alloc(14);
  h[0] = 0x82;
  h[1] = 0x80 | 127;
  h.writeBigUInt64BE(BigInt(length), 2);
  return h; // the last 4 bytes: a zero mask
}

describe('security: the agent endpoint against strangers (issue 10.5, 10.6, 10.12)', function () {
  this.timeout(60_000);
  const tmp = tempDir('hs-gw-');
  const lines: Line[] = [];
  let c: Controller;

  before(async () => {
    // A long hello timeout, so only the byte budget or the caps can end a connection in these tests.
    c = await controller(path.join(tmp.dir, 'ctl'), { log: capturingLogger(lines), gateway: { helloTimeoutMs: 60_000, maxMessageBytes: 8 * 1024 * 1024 } });
  });
  after(async () => {
    await c?.stop();
    tmp.cleanup();
  });

  it('stops reading a connection that sends more than the pre-hello budget, whatever frame size it announces', async () => {
    const { status, socket } = await rawUpgrade(c.ctl.port);
    assert.equal(status, 101);
    let closed = false;
    socket.on('close', () => (closed = true));
    socket.on('error', () => undefined);
    socket.write(frameHeader(8 * 1024 * 1024 - 1));
    socket.write(Buffer.alloc(256 * 1024));
    await waitFor(() => closed, 10_000, 'the controller drops the connection');
    const metrics = (await c.ctl.core.app.inject({ method: 'GET', url: '/metrics' })).text();
    assert.match(metrics, /homeostat_frames_rejected_total\{reason="preauth_bytes"\} 1/);
    await waitFor(() => c.ctl.core.gateway.preAuthCounts().total === 0, 5_000, 'its slot released');
  });

  it('turns away connections past the per-address cap before the WebSocket handshake, and serves other addresses', async () => {
    const results: { status: number; socket: tls.TLSSocket }[] = [];
    for (let i = 0; i < 40; i++) results.push(await rawUpgrade(c.ctl.port, '127.0.0.5'));
    assert.deepEqual(
      results.map((r) => r.status),
      [...Array<number>(32).fill(101), ...Array<number>(8).fill(503)],
    );
    assert.deepEqual(c.ctl.core.gateway.preAuthCounts(), { total: 32, addresses: 1 });
    const other = await rawUpgrade(c.ctl.port, '127.0.0.6');
    assert.equal(other.status, 101, 'another address is served');
    for (const r of [...results, other]) r.socket.destroy();
    await waitFor(() => c.ctl.core.gateway.preAuthCounts().total === 0, 5_000, 'every slot released');
    const busy = lines.filter((l) => l.msg === 'agent connection turned away: too many connections before hello');
    assert.ok(busy.length >= 1 && busy.length <= 5, `bounded log lines: ${busy.length}`);
  });

  it('closes a connection that says nothing in time', async () => {
    const quick = await controller(path.join(tmp.dir, 'quick'), { gateway: { helloTimeoutMs: 300 } });
    try {
      const { socket } = await rawUpgrade(quick.ctl.port);
      let closed = false;
      socket.on('close', () => (closed = true));
      socket.on('error', () => undefined);
      await waitFor(() => closed, 10_000, 'closed for want of a hello');
      await waitFor(() => quick.ctl.core.gateway.preAuthCounts().total === 0, 5_000, 'slot released');
    } finally {
      await quick.stop();
    }
  });

  it('rate-limits enrollment attempts per address and failures per token, and logs refusals at a bounded rate', async () => {
    const { token } = await c.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h' });
    const [prefix, id, , key] = token.split('.');
    const wrong = `${prefix ?? ''}.${id ?? ''}.${randomBytes(24).toString('base64url')}.${key ?? ''}`;
    const before = lines.filter((l) => l.msg === 'agent refused').length;
    const codes: (number | null)[] = [];
    for (let i = 0; i < 40; i++) {
      const w = await wireClient(c.ctl.agentUrl, { joinToken: wrong }, { localAddress: `127.0.1.${1 + (i % 4)}` });
      codes.push((await welcomedOrClosed(w)).code);
    }
    assert.ok(codes.every((x) => x === 4401 || x === 4429), codes.join(','));
    assert.ok(codes.filter((x) => x === 4401).length <= 21, `failures per token stop: ${codes.join(',')}`);
    // With its bucket empty, even the right secret waits: guessing one token's secret online is throttled.
    const right = await wireClient(c.ctl.agentUrl, { joinToken: token }, { localAddress: '127.0.1.9' });
    assert.equal((await welcomedOrClosed(right)).code, 4429);
    const refusedLines = lines.filter((l) => l.msg === 'agent refused').length - before;
    assert.ok(refusedLines <= 10, `at most a few lines per kind and minute, not one per attempt: ${refusedLines}`);
    // One address: every enrollment attempt counts, successful or not.
    const burst: (number | null)[] = [];
    for (let i = 0; i < 35; i++) burst.push((await welcomedOrClosed(await wireClient(c.ctl.agentUrl, { joinToken: 'hsj2.x.y.' + 'k'.repeat(43) }, { localAddress: '127.0.2.1' }))).code);
    assert.ok(burst.includes(4429), burst.join(','));
  });

  it("an agent's error codes become metric labels only from the known set; its reports are logged at a bounded rate", async () => {
    const { token } = await c.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h' });
    const w = await wireClient(c.ctl.agentUrl, { joinToken: token }, { localAddress: '127.0.3.1' });
    const { welcome } = await welcomedOrClosed(w);
    assert.ok(welcome, 'enrolled');
    const before = lines.filter((l) => l.msg === 'agent reported an error').length;
    for (let i = 0; i < 300; i++) w.send({ error: { code: `HS_MADE_UP_${i}_${randomBytes(4).toString('hex')}`, message: 'x'.repeat(2000), retryable: false } });
    w.send({ error: { code: 'HS_AUTH', message: 'a known one', retryable: false } });
    w.send({ assignmentAck: { enforcing: [], rejected: Array.from({ length: 200 }, (_, i) => ({ name: `b${i}`, version: 1, code: `HS_X_${i}`, message: 'm' })), enforcementPaused: false } });
    await waitFor(async () => (await c.api<{ lastError: { code: string } | null }>('GET', `/api/v1/agents/${welcome.agentId}`)).lastError?.code === 'HS_AUTH', 10_000, 'reports handled');
    const metrics = (await c.ctl.core.app.inject({ method: 'GET', url: '/metrics' })).text();
    const labelValues = (name: string): string[] => [...metrics.matchAll(new RegExp(`^${name}\\{code="([^"]*)"\\}`, 'gm'))].map((m) => m[1] ?? '');
    assert.deepEqual(labelValues('homeostat_agent_errors_total').sort(), ['HS_AUTH', 'other']);
    assert.deepEqual(labelValues('homeostat_baseline_rejections_total'), ['other']);
    const logged = lines.filter((l) => l.msg === 'agent reported an error').length - before;
    assert.ok(logged <= 5, `log lines: ${logged}`);
    w.ws.close();
  });
});
