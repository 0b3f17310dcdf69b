// The controller's HTTP edge against hostile clients, over real sockets: requests that used to end the process, bodies
// that used to be buffered before the token was checked, connections that used to be held for minutes, connection
// caps per address and in total, JSON keys that reach inherited properties, security headers and dashboard sessions.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { startController, type ControllerOptions, type RunningController } from '../../controller/server.js';
import { PROTOCOL_VERSION, decodeControllerMessage, encodeAgentMessage } from '../../proto/codec.js';
import { waitFor } from '../helpers/agent.js';
import { exchange, rawConnect, tlsRawConnect, type RawConnection } from '../helpers/raw-http.js';

const ADMIN = 'security-admin-token';

interface ErrorBody {
  error: { code: string; message: string };
}

describe('HTTP edge against hostile clients (real sockets)', function () {
  this.timeout(30_000);
  let dir: string;
  let ctl: RunningController | undefined;
  const open: RawConnection[] = [];

  const start = async (o: Partial<ControllerOptions> = {}): Promise<RunningController> => {
    ctl = await startController({ dataDir: dir, listen: '127.0.0.1:0', insecureHttp: true, adminToken: ADMIN, ...o });
    return ctl;
  };
  const port = (): number => ctl?.port ?? 0;
  const get = (path: string, headers: Record<string, string> = {}): Promise<Response> => fetch(`http://127.0.0.1:${port()}${path}`, { headers });
  const metrics = async (): Promise<string> => (await (ctl as RunningController).core.app.inject({ method: 'GET', url: '/metrics' })).text();
  const healthy = async (): Promise<void> => assert.equal((await get('/healthz')).status, 200, 'the controller still serves');
  const connect = async (localAddress?: string): Promise<RawConnection> => {
    const c = await rawConnect(port(), localAddress ? { localAddress } : {});
    open.push(c);
    return c;
  };

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-sec-http-'));
  });
  afterEach(async () => {
    for (const c of open.splice(0)) c.socket.destroy();
    await ctl?.stop();
    ctl = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  describe('requests that used to end the process', () => {
    it('answers a path with malformed percent-encoding with 400, with or without a token, and keeps serving', async () => {
      await start();
      for (const auth of ['', `Authorization: Bearer ${ADMIN}\r\n`]) {
        const r = await exchange(port(), `GET /api/v1/agents/%E0%A4%A HTTP/1.1\r\nHost: x\r\n${auth}\r\n`);
        assert.equal(r.status, 400);
        assert.equal((JSON.parse(r.body) as ErrorBody).error.code, 'HS_CONFIG');
      }
      await healthy();
    });

    it('answers a request line whose target is not a URL (`GET //[`) and keeps serving', async () => {
      await start();
      const r = await exchange(port(), 'GET //[ HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.ok(r.status === 404 || r.status === 400, `got ${r.status}`);
      await healthy();
    });

    it('turns a failure inside a handler into that request’s 500 and keeps serving', async () => {
      const c = await start();
      await c.core.store.close();
      const r = await get('/api/v1/agents', { authorization: `Bearer ${ADMIN}` });
      assert.equal(r.status, 500);
      assert.equal(((await r.json()) as ErrorBody).error.code, 'HS_STORE');
      await healthy();
    });
  });

  describe('bodies', () => {
    it('refuses an unauthenticated POST before reading its body, and closes the connection', async () => {
      await start();
      const c = await connect();
      // 16 MiB announced, not one byte of it sent: the answer must not wait for it.
      c.socket.write(`POST /api/v1/baselines HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Type: application/json\r\nContent-Length: ${16 * 1024 * 1024}\r\n\r\n`);
      const r = await c.response();
      assert.equal(r.status, 401);
      assert.match(r.head, /\r\nconnection: close/i);
      await c.closed();
    });

    it('refuses an authenticated body over the route’s limit from its announced length, and a chunked one as it crosses it', async () => {
      await start();
      const c = await connect();
      c.socket.write(`POST /api/v1/baselines HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Length: ${9 * 1024 * 1024}\r\n\r\n`);
      const r = await c.response();
      assert.equal(r.status, 413);
      assert.equal((JSON.parse(r.body) as ErrorBody).error.code, 'HS_TOO_LARGE');
      await c.closed();

      const d = await connect();
      d.socket.write(`POST /api/v1/rollouts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const chunk = 'x'.repeat(16 * 1024);
      for (let i = 0; i < 8 && !d.received(); i++) d.socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      assert.equal((await d.response()).status, 413);
      await d.closed();
      await healthy();
    });

    it('refuses a body on routes that take none, and more than a small one on the login', async () => {
      await start();
      assert.equal((await exchange(port(), 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello')).status, 413);
      const big = JSON.stringify({ token: 'x'.repeat(4096) });
      assert.equal((await exchange(port(), `POST /api/v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n${big}`)).status, 413);
    });

    it('refuses JSON keys that reach inherited properties, and treats a source named like one as data', async () => {
      const c = await start();
      const post = (url: string, body: string): Promise<{ status: number; body: string }> =>
        c.core.app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body }).then((r) => ({ status: r.status, body: r.text() }));
      const yaml = (source: string): string => `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: proto\nspec:\n  resources:\n    - file: /etc/x\n      source: ${source}\n`;
      // Outside the maps of names a client chooses, a `__proto__` key is refused before any route reads the body.
      for (const body of [
        `{"yaml": ${JSON.stringify(yaml('files/x'))}, "__proto__": {"polluted": true}, "sources": {"files/x": "eA=="}}`,
        `{"yaml": ${JSON.stringify(yaml('files/x'))}, "sources": {"files/x": "eA==", "nested": {"__proto__": {"polluted": true}}}}`,
        `{"yaml": ${JSON.stringify(yaml('files/x'))}, "sources": {"constructor": {"prototype": {"polluted": true}}}}`,
      ]) {
        const r = await post('/api/v1/baselines', body);
        assert.equal(r.status, 400, body);
        assert.match(r.body, /__proto__|constructor\.prototype/);
      }
      // A source file named `__proto__` is a file name: data, here one the baseline does not read, refused as such.
      const proto = await post('/api/v1/baselines', `{"yaml": ${JSON.stringify(yaml('files/x'))}, "sources": {"__proto__": "eA==", "files/x": "eA=="}}`);
      assert.equal(proto.status, 422, proto.body);
      assert.match(proto.body, /__proto__.*no resource of the baseline uses it/);
      for (const name of ['toString', 'constructor', 'hasOwnProperty']) {
        const r = await post('/api/v1/baselines', JSON.stringify({ yaml: yaml(name) }));
        assert.equal(r.status, 422, `${name}: ${r.body}`);
        assert.equal((JSON.parse(r.body) as ErrorBody).error.code.startsWith('HS_BASELINE'), true);
      }
      assert.equal((await post('/api/v1/rollouts', '{"baseline": "x", "version": 1, "constructor": {"prototype": {"polluted": true}}}')).status, 400);
      assert.equal((await post('/api/v1/enrollment-tokens', '{"labels": {"__proto__": {"role": "admin"}}}')).status, 400);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    });
  });

  describe('connections before authentication', () => {
    it('closes a connection past the per-address cap as it is accepted, and accepts again once one is gone', async () => {
      const c = await start({ limits: { perAddress: 3, unauthenticated: 100 } });
      const first = [await connect(), await connect(), await connect()];
      await waitFor(() => c.unauthenticatedConnections() === 3, 5000, 'three counted');
      const fourth = await connect();
      assert.equal(await fourth.closed(), '', 'closed with nothing sent');
      assert.match(await metrics(), /homeostat_connections_refused_total\{reason="per_address"\} [1-9]/);
      first[0]?.socket.destroy();
      await waitFor(() => c.unauthenticatedConnections() === 2, 5000, 'one released');
      const again = await connect();
      again.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal((await again.response()).status, 200);
    });

    it('caps unauthenticated connections from all addresses together', async () => {
      const c = await start({ limits: { perAddress: 10, unauthenticated: 4, evictAfterMs: 60_000 } });
      for (let i = 2; i <= 5; i++) await connect(`127.0.0.${i}`);
      await waitFor(() => c.unauthenticatedConnections() === 4, 5000, 'four counted');
      const fifth = await connect('127.0.0.6');
      assert.equal(await fifth.closed(), '');
      assert.match(await metrics(), /homeostat_connections_refused_total\{reason="total"\} [1-9]/);
    });

    it('at the total cap, lets a new connection take the place of the oldest stalled one', async () => {
      const c = await start({ limits: { perAddress: 10, unauthenticated: 2, evictAfterMs: 0 } });
      const stalled = await connect('127.0.0.2');
      await connect('127.0.0.3');
      await waitFor(() => c.unauthenticatedConnections() === 2, 5000, 'two counted');
      const operator = await connect('127.0.0.4');
      assert.equal(await stalled.closed(), '', 'the oldest gave way');
      operator.socket.write(`GET /api/v1/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\n\r\n`);
      assert.equal((await operator.response()).status, 200, 'the newcomer is served');
      assert.match(await metrics(), /homeostat_connections_refused_total\{reason="evicted"\} 1/);
    });

    it('stops counting a connection once it made an authenticated request', async () => {
      const c = await start({ limits: { perAddress: 2, unauthenticated: 100 } });
      const operator = await connect();
      operator.socket.write(`GET /api/v1/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\n\r\n`);
      assert.equal((await operator.response()).status, 200);
      await waitFor(() => c.unauthenticatedConnections() === 0, 5000, 'the operator connection released');
      await connect();
      await connect();
      await waitFor(() => c.unauthenticatedConnections() === 2, 5000, 'two counted');
      assert.equal(await (await connect()).closed(), '', 'the third unauthenticated one is refused');
    });

    it('stops counting an agent connection once its hello was accepted, and refuses upgrades past the cap', async () => {
      const c = await start({ limits: { perAddress: 2, unauthenticated: 100 } });
      const { token } = (await c.core.app.inject({ method: 'POST', url: '/api/v1/enrollment-tokens', headers: { authorization: `Bearer ${ADMIN}` }, body: {} })).json<{ token: string }>();
      const ws = new WebSocket(`${c.agentUrl}/agent`, { perMessageDeflate: false });
      const welcomed = new Promise<void>((resolve, reject) => {
        ws.on('message', (data: Buffer) => {
          if (decodeControllerMessage(data)?.body === 'welcome') resolve();
        });
        ws.on('error', reject);
      });
      ws.on('open', () => ws.send(encodeAgentMessage({ hello: { protocolVersion: PROTOCOL_VERSION, agentVersion: 'test', joinToken: token, labels: {} } })));
      await welcomed;
      await waitFor(() => c.unauthenticatedConnections() === 0, 5000, 'the agent released');
      await connect();
      await connect();
      await waitFor(() => c.unauthenticatedConnections() === 2, 5000, 'two counted');
      const refused = new WebSocket(`${c.agentUrl}/agent`, { perMessageDeflate: false });
      const outcome = await new Promise<string>((resolve) => {
        refused.on('open', () => resolve('open'));
        refused.on('error', () => resolve('refused'));
      });
      assert.equal(outcome, 'refused');
      assert.equal(ws.readyState, WebSocket.OPEN, 'the enrolled agent stays connected');
      ws.close();
    });

    it('keeps an enrolled agent connected past the maximum age of an unauthenticated connection', async () => {
      // The finding: connections were released from the pre-authentication caps only after an operator request, so every
      // agent was cut at the maximum age (40 s by default) and reconnected, over and over.
      const c = await start({ limits: { maxAgeMs: 300 } });
      const { token } = (await c.core.app.inject({ method: 'POST', url: '/api/v1/enrollment-tokens', headers: { authorization: `Bearer ${ADMIN}` }, body: {} })).json<{ token: string }>();
      const ws = new WebSocket(`${c.agentUrl}/agent`, { perMessageDeflate: false });
      let closed: number | null = null;
      ws.on('close', (code) => (closed = code));
      await new Promise<void>((resolve, reject) => {
        ws.on('message', (data: Buffer) => {
          if (decodeControllerMessage(data)?.body === 'welcome') resolve();
        });
        ws.on('error', reject);
        ws.on('open', () => ws.send(encodeAgentMessage({ hello: { protocolVersion: PROTOCOL_VERSION, agentVersion: 'test', joinToken: token, labels: {} } })));
      });
      // A later connection that stays unauthenticated is closed at the maximum age: by then the agent's is older still.
      const idle = await connect();
      assert.equal(await idle.closed(5000), '');
      assert.equal(closed, null, 'the agent was not disconnected');
      assert.equal(ws.readyState, WebSocket.OPEN);
      ws.close();
    });

    it('closes an agent connection that upgraded but never completes its hello', async () => {
      const c = await start({ gateway: { helloTimeoutMs: 60_000 }, limits: { upgradeAuthTimeoutMs: 300 } });
      const ws = await connect();
      ws.socket.write('GET /agent HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
      assert.match(await ws.closed(5000), /^HTTP\/1\.1 101 /);
      await waitFor(() => c.unauthenticatedConnections() === 0, 5000, 'released');
    });

    it('closes any connection still unauthenticated past the maximum age, whatever it is doing', async () => {
      const c = await start({ limits: { maxAgeMs: 300, requestTimeoutMs: 60_000, headersTimeoutMs: 60_000 } });
      const slow = await connect();
      slow.socket.write('POST /api/v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{');
      const drip = setInterval(() => slow.socket.write(' '), 50);
      try {
        assert.equal(await slow.closed(5000), '');
      } finally {
        clearInterval(drip);
      }
      await waitFor(() => c.unauthenticatedConnections() === 0, 5000, 'released');
    });

    it('closes a TCP connection that never starts its TLS handshake', async () => {
      await start({ insecureHttp: false, limits: { handshakeTimeoutMs: 300 } });
      const c = await connect();
      assert.equal(await c.closed(5000), '');
    });

    it('closes a silent connection and one whose headers stall, with 408', async () => {
      await start({ limits: { headersTimeoutMs: 300 } });
      const silent = await connect();
      const slow = await connect();
      slow.socket.write('GET /api/v1/agents HTTP/1.1\r\nHost: x\r\n');
      assert.match(await silent.closed(5000), /^HTTP\/1\.1 408 /);
      assert.match(await slow.closed(5000), /^HTTP\/1\.1 408 /);
      await healthy();
    });

    it('answers an upgrade to any other path with 404, and survives one reset half-way', async () => {
      await start();
      const r = await exchange(port(), 'GET /api/v1/agents HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
      assert.equal(r.status, 404);
      const c = await connect();
      c.socket.write('GET /agent HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
      c.socket.resetAndDestroy();
      await healthy();
    });
  });

  describe('headers and the dashboard session', () => {
    it('serves the dashboard with a CSP that allows no inline code and no framing, nosniff and no referrer; HSTS only over TLS', async () => {
      await start();
      const r = await get('/');
      const csp = r.headers.get('content-security-policy') ?? '';
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /script-src 'self'(;|$)/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
      assert.equal(r.headers.get('x-frame-options'), 'DENY');
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
      assert.equal(r.headers.get('strict-transport-security'), null);
      const html = await r.text();
      assert.doesNotMatch(html, /<script>|on(click|load|submit)=/i, 'no inline script or handlers');
      assert.equal((await get('/dashboard.js')).headers.get('content-type'), 'text/javascript; charset=utf-8');
      await ctl?.stop();
      ctl = undefined;
      const tls = await start({ insecureHttp: false });
      const hsts = await new Promise<string | undefined>((resolve, reject) => {
        httpsRequest(`${tls.url}/`, { rejectUnauthorized: false }, (res) => {
          res.resume();
          resolve(res.headers['strict-transport-security']);
        })
          .on('error', reject)
          .end();
      });
      assert.match(hsts ?? '', /max-age=\d+/);
    });

    it('logs in with the operator token to an HttpOnly SameSite=Strict session whose changes need the CSRF token', async () => {
      const c = await start();
      const login = await fetch(`${c.url}/api/v1/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: ADMIN }) });
      assert.equal(login.status, 201);
      const cookie = login.headers.get('set-cookie') ?? '';
      assert.match(cookie, /^hs_session=[A-Za-z0-9_-]{20,};/);
      assert.match(cookie, /HttpOnly/);
      assert.match(cookie, /SameSite=Strict/);
      const { csrf } = (await login.json()) as { csrf: string };
      const session = cookie.split(';')[0] ?? '';
      assert.equal((await get('/api/v1/agents', { cookie: session })).status, 200, 'reads with the cookie');
      const decide = (headers: Record<string, string>): Promise<Response> =>
        fetch(`${c.url}/api/v1/enrollment-tokens`, { method: 'POST', headers: { cookie: session, 'content-type': 'application/json', ...headers }, body: '{}' });
      assert.equal((await decide({})).status, 401, 'a change without the CSRF token is refused');
      assert.equal((await decide({ 'x-csrf-token': 'forged' })).status, 401);
      assert.equal((await decide({ 'x-csrf-token': csrf })).status, 201);
      const out = await fetch(`${c.url}/api/v1/session`, { method: 'DELETE', headers: { cookie: session, 'x-csrf-token': csrf } });
      assert.match(out.headers.get('set-cookie') ?? '', /Max-Age=0/);
      assert.equal((await get('/api/v1/agents', { cookie: session })).status, 401, 'the session ended');
    });

    it('refuses wrong logins, then every login from that address for a while', async () => {
      const c = await start();
      const attempt = (token: string): Promise<Response> => fetch(`${c.url}/api/v1/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
      for (let i = 0; i < 10; i++) assert.equal((await attempt(`guess-${i}`)).status, 401);
      const limited = await attempt(ADMIN);
      assert.equal(limited.status, 429);
      assert.equal(((await limited.json()) as ErrorBody).error.code, 'HS_RATE_LIMITED');
      assert.ok(Number(limited.headers.get('retry-after')) > 0);
      // Refused before its body was read: the connection goes too, or nothing would ever time out the rest of the body.
      const stalled = await connect();
      stalled.socket.write('POST /api/v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"tok');
      const r = await stalled.response();
      assert.equal(r.status, 429);
      assert.match(r.head, /\r\nconnection: close/i);
      await stalled.closed();
    });

    it('sets a Secure session cookie over TLS', async () => {
      const c = await start({ insecureHttp: false });
      const conn = await tlsRawConnect(c.port);
      open.push(conn);
      const body = JSON.stringify({ token: ADMIN });
      conn.socket.write(`POST /api/v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      const r = await conn.response();
      assert.equal(r.status, 201);
      assert.match(r.head, /set-cookie: hs_session=[^\r]*; Secure/i);
    });
  });
});
