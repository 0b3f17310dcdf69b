// A controller and three agents as separate test hosts (network namespaces, each with its own view of /srv/hs-e2e):
// enrollment, selective rollout, drift and escalations decided from the controller, an outage survived without losing an
// event, forged baselines refused, and bad frames closing only their own connection.
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { startController, type RunningController } from '../../controller/server.js';
import { generateSigningKey, signBytes } from '../../lib/signing.js';
import { decodeAgentMessage, decodeBaselineDoc, encodeBaselineDoc, encodeControllerMessage, type AgentMessage } from '../../proto/codec.js';
import { startAgentDaemon, tempDir, waitFor, type DaemonProcess } from '../helpers/agent.js';
import { Netns, cleanupLeftoverNetns } from '../helpers/netns.js';
import { AgentStore } from '../../agent/store/store.js';
import type { AuditEntry } from '../../agent/store/types.js';

const ADMIN = 'e2e-admin';
const MANAGED = '/srv/hs-e2e';
const SUBNET = `10.81.${1 + Math.floor(Math.random() * 250)}`;

interface Host {
  name: string;
  role: string;
  ns: Netns;
  root: string; // the folder this host sees at MANAGED
  stateDir: string;
  agent: DaemonProcess | undefined;
  id: string;
}

const webBaseline = (motd: string): string => `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: web
spec:
  selector:
    matchLabels: { role: web }
  resources:
    - file: ${MANAGED}/motd
      content: "${motd}\\n"
      mode: "0644"
    - file: ${MANAGED}/sshd_config
      content: "PermitRootLogin no\\n"
      mode: "0600"
      risk: high
`;

describe('e2e: controller with three hosts', function () {
  this.timeout(120_000);
  const tmp = tempDir('hs-e2e-ctl-');
  const hosts: Host[] = [];
  let ctl: RunningController;
  let port = 0;
  let token = '';

  const api = async <T>(method: string, url: string, body?: unknown): Promise<T> => {
    const r = await ctl.core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}` }, ...(body === undefined ? {} : { body: body as object }) });
    if (r.status >= 400) throw new Error(`${method} ${url}: ${r.status} ${r.text()}`);
    return r.json<T>();
  };
  const read = (h: Host, file: string): string | undefined => {
    try {
      return readFileSync(path.join(h.root, file), 'utf8');
    } catch {
      return undefined;
    }
  };
  const start = (opts: { maxMessageBytes?: number } = {}): Promise<RunningController> =>
    startController({
      dataDir: path.join(tmp.dir, 'controller'),
      listen: `0.0.0.0:${port}`,
      adminToken: ADMIN,
      gateway: { heartbeatIntervalMs: 1000, pingIntervalMs: 2000, maxMessageBytes: opts.maxMessageBytes ?? 1024 * 1024 },
    });
  const startAgent = (h: Host): void => {
    h.agent = startAgentDaemon(
      ['--state-dir', h.stateDir, '--controller', `wss://${h.ns.hostIp ?? ''}:${port}`, '--token', token, '--labels', `role=${h.role}`],
      { prefix: h.ns.prefix({ binds: [{ source: h.root, target: MANAGED }] }) },
    );
  };
  const connected = async (): Promise<{ id: string; connected: boolean; labels: Record<string, string>; baselines: { name: string; version: number }[] }[]> =>
    api('GET', '/api/v1/agents');

  before(async () => {
    await cleanupLeftoverNetns();
    mkdirSync(MANAGED, { recursive: true });
    ctl = await start();
    port = ctl.port;
    token = (await api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h', allowLabels: ['role'] })).token;
    const roles = ['web', 'web', 'db'];
    for (let i = 0; i < roles.length; i++) {
      const ns = await Netns.create(`c${i + 1}`, { veth: { hostAddress: `${SUBNET}.${4 * i + 1}/30`, nsAddress: `${SUBNET}.${4 * i + 2}/30` } });
      const root = path.join(tmp.dir, `h${i + 1}`, 'root');
      const stateDir = path.join(tmp.dir, `h${i + 1}`, 'state');
      mkdirSync(root, { recursive: true });
      mkdirSync(stateDir, { recursive: true });
      hosts.push({ name: `h${i + 1}`, role: roles[i] ?? 'web', ns, root, stateDir, agent: undefined, id: '' });
    }
    for (const h of hosts) startAgent(h);
  });

  after(async () => {
    for (const h of hosts) await h.agent?.stop();
    await ctl?.stop().catch(() => undefined);
    for (const h of hosts) await h.ns.destroy();
    tmp.cleanup();
  });

  const h = (i: number): Host => {
    const x = hosts[i];
    if (!x) throw new Error(`no host ${i}`);
    return x;
  };

  it('enrolls every host once with the token; each keeps its own credential (0600)', async () => {
    await waitFor(async () => (await connected()).filter((a) => a.connected).length === 3, 30_000, 'three agents connected');
    const agents = await connected();
    for (const host of hosts) {
      const file = path.join(host.stateDir, 'controller.json');
      await waitFor(() => existsSync(file), 10_000, `${host.name} credential saved`);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      const creds = JSON.parse(readFileSync(file, 'utf8')) as { agentId: string; tlsFingerprint: string };
      assert.equal(creds.tlsFingerprint, ctl.fingerprint, 'pinned the certificate from the token');
      host.id = creds.agentId;
      const seen = agents.find((a) => a.id === creds.agentId);
      assert.equal(seen?.labels.role, host.role);
    }
  });

  it('a baseline reaches the selected hosts and not the others', async () => {
    const pushed = await api<{ version: number }>('POST', '/api/v1/baselines', { yaml: webBaseline('web v1'), file: 'web.yaml' });
    const rollout = await api<{ id: number; targeted: number }>('POST', '/api/v1/rollouts', { baseline: 'web', version: pushed.version, strategy: 'all-at-once' });
    assert.equal(rollout.targeted, 2);
    await waitFor(() => read(h(0), 'motd') === 'web v1\n' && read(h(1), 'motd') === 'web v1\n', 20_000, 'web hosts converged');
    await waitFor(async () => (await api<{ state: string }>('GET', `/api/v1/rollouts/${rollout.id}`)).state === 'completed', 10_000, 'rollout acknowledged');
    assert.equal(read(h(2), 'motd'), undefined, 'the db host was not selected');
    assert.equal(existsSync(path.join(MANAGED, 'motd')), false, 'nothing written to the machine itself');
  });

  it('drift on a host is repaired there and the events reach the controller', async () => {
    writeFileSync(path.join(h(0).root, 'motd'), 'defaced\n');
    await waitFor(() => read(h(0), 'motd') === 'web v1\n', 10_000, 'repair');
    await waitFor(
      async () => (await api<{ event: string }[]>('GET', `/api/v1/events?agent=${h(0).id}&resource=file:${MANAGED}/motd&kind=repaired`)).length > 0,
      5_000,
      'repaired event at the controller',
    );
  });

  it('an escalation approved is repaired once; another rejected is left alone as a recorded exception', async () => {
    writeFileSync(path.join(h(0).root, 'sshd_config'), 'PermitRootLogin yes\n');
    writeFileSync(path.join(h(1).root, 'sshd_config'), 'PermitRootLogin yes\n');
    type Esc = { id: number; agentId: string; resource: string; status: string; outcome: string | null; reason: string | null };
    let open: Esc[] = [];
    await waitFor(async () => (open = await api<Esc[]>('GET', '/api/v1/escalations?status=open')).filter((e) => e.resource.endsWith('sshd_config')).length >= 2, 10_000, 'two escalations');
    const e1 = open.find((e) => e.agentId === h(0).id && e.resource === `file:${MANAGED}/sshd_config`);
    const e2 = open.find((e) => e.agentId === h(1).id && e.resource === `file:${MANAGED}/sshd_config`);
    assert.ok(e1 && e2);
    assert.equal(read(h(0), 'sshd_config'), 'PermitRootLogin yes\n', 'high risk drift is not repaired before a decision');
    await api('POST', `/api/v1/escalations/${e1.id}/approve`, { by: 'e2e' });
    await api('POST', `/api/v1/escalations/${e2.id}/reject`, { reason: 'break-glass access this week', expiresIn: '7d', by: 'e2e' });
    await waitFor(() => read(h(0), 'sshd_config') === 'PermitRootLogin no\n', 10_000, 'approved repair');
    await waitFor(async () => (await api<Esc>('GET', `/api/v1/escalations/${e2.id}`)).outcome === 'done', 10_000, 'rejection acknowledged');
    // A later drift on the same host, queued after anything the rejection could have set off: once its repair reached
    // the controller, a repair of the rejected file would have come first.
    type Ev = { seq: number; event: string; resource: string | null };
    const since = (await api<Ev[]>('GET', `/api/v1/events?agent=${h(1).id}&limit=10000`)).reduce((m, e) => Math.max(m, e.seq), 0);
    writeFileSync(path.join(h(1).root, 'motd'), 'later drift\n');
    let later: Ev[] = [];
    await waitFor(
      async () => (later = (await api<Ev[]>('GET', `/api/v1/events?agent=${h(1).id}&limit=10000`)).filter((e) => e.seq > since)).some((e) => e.event === 'repaired' && e.resource === `file:${MANAGED}/motd`),
      10_000,
      'the later drift repaired',
    );
    assert.equal(read(h(1), 'sshd_config'), 'PermitRootLogin yes\n', 'the rejected drift is left alone');
    assert.deepEqual(later.filter((e) => e.resource === `file:${MANAGED}/sshd_config` && e.event === 'repaired'), [], 'the rejected file was not repaired');
    const rejected = await api<Esc>('GET', `/api/v1/escalations/${e2.id}`);
    assert.deepEqual([rejected.status, rejected.reason], ['rejected', 'break-glass access this week']);
    assert.equal((await api<Esc>('GET', `/api/v1/escalations/${e1.id}`)).outcome, 'done');
  });

  it('with the controller stopped hosts keep healing, and every outage event arrives in order without duplicates', async () => {
    await ctl.stop();
    const outageStart = Date.now();
    const localAudit = (): AuditEntry[] => {
      const local = AgentStore.open(h(0).stateDir, { readonly: true });
      try {
        return local.queryAudit({ limit: 100_000 });
      } finally {
        local.close();
      }
    };
    const repairsSinceOutage = (): number => localAudit().filter((e) => e.time >= outageStart && e.event === 'repaired' && e.resource === `file:${MANAGED}/motd`).length;
    for (let i = 0; i < 3; i++) {
      writeFileSync(path.join(h(0).root, 'motd'), `outage ${i}\n`);
      await waitFor(() => read(h(0), 'motd') === 'web v1\n', 10_000, `repair ${i} while offline`);
      // The repair is recorded once verified: the next drift comes after that, as a separate one.
      await waitFor(() => repairsSinceOutage() === i + 1, 10_000, `repair ${i} recorded`);
    }
    // The host's own audit log is the truth the controller must end up holding, record for record.
    const audit = localAudit();
    const during = audit.filter((e) => e.time >= outageStart);
    assert.ok(during.some((e) => e.event === 'repaired'), 'repaired while the controller was away');
    ctl = await start();
    await waitFor(async () => (await connected()).filter((a) => a.connected).length === 3, 30_000, 'agents reconnected');
    type Ev = { id: number; seq: number; event: string; hash: string };
    let events: Ev[] = [];
    const last = audit[audit.length - 1]?.seq ?? 0;
    await waitFor(async () => (events = await api<Ev[]>('GET', `/api/v1/events?agent=${h(0).id}&limit=10000`)).some((e) => e.seq >= last), 15_000, 'outage events at the controller');
    const upto = events.filter((e) => e.seq <= last);
    assert.deepEqual(
      upto.map((e) => [e.seq, e.event, e.hash]),
      audit.map((e) => [e.seq, e.event, e.hash]),
      'every record once, in order, identical',
    );
  });

  it('a tampered signature and a baseline from an unknown key are refused and reported', async () => {
    const realTarget = ctl.core.baselines.target('web');
    assert.ok(realTarget);
    const publicKey = ctl.core.signingKey.publicKey;
    await ctl.stop();
    // A rogue endpoint on the controller's address, even holding its TLS key and presenting the controller's public signing
    // key in its welcome: all it lacks is the private signing key.
    const dataDir = path.join(tmp.dir, 'controller');
    const server: Server = createHttpsServer({ cert: readFileSync(path.join(dataDir, 'tls.crt')), key: readFileSync(path.join(dataDir, 'tls.key')) });
    const wss = new WebSocketServer({ server, path: '/agent' });
    const received: AgentMessage[] = [];
    const rogue = generateSigningKey().key;
    const genuine = decodeBaselineDoc(realTarget.payload);
    const tampered = encodeBaselineDoc({ ...genuine, version: genuine.version + 1, yaml: webBaseline('pwned') });
    const evilPayload = encodeBaselineDoc({ ...genuine, name: 'evil', version: 1, yaml: webBaseline('pwned').replace('name: web', 'name: evil') });
    wss.on('connection', (ws) => {
      ws.on('message', (data: Buffer) => {
        const m = decodeAgentMessage(data);
        if (!m) return;
        received.push(m);
        if (m.body !== 'hello') return;
        ws.send(encodeControllerMessage({ welcome: { protocolVersion: 1, agentId: m.hello.agentId, signingPublicKey: publicKey, heartbeatIntervalMs: 1000 } }));
        ws.send(
          encodeControllerMessage({
            assignment: {
              baselines: [
                { payload: tampered, signature: realTarget.signature, keyId: realTarget.keyId },
                { payload: evilPayload, signature: signBytes(rogue, evilPayload), keyId: rogue.keyId },
              ],
            },
          }),
        );
      });
    });
    await new Promise<void>((r) => server.listen(port, '0.0.0.0', () => r()));
    try {
      await waitFor(() => received.filter((m) => m.body === 'assignmentAck').length >= 3, 20_000, 'every agent answered the rogue');
      for (const m of received) {
        if (m.body !== 'assignmentAck') continue;
        assert.deepEqual(m.assignmentAck.rejected.map((r) => r.code).sort(), ['HS_BASELINE_SIGNATURE', 'HS_BASELINE_SIGNATURE']);
        // An agent acknowledges once it has activated what it accepted: what it enforces is decided by then.
        const enforcing = m.assignmentAck.enforcing.map((a) => `${a.name}@${a.version}`);
        assert.ok(enforcing.every((a) => a === `web@${genuine.version}`), `still enforcing only the genuine version: ${enforcing.join(', ')}`);
      }
      assert.ok(received.some((m) => m.body === 'error' && m.error.code === 'HS_BASELINE_SIGNATURE'), 'an error message to the controller');
      // And the engine still repairs to the genuine content.
      writeFileSync(path.join(h(1).root, 'motd'), 'probe\n');
      await waitFor(() => read(h(1), 'motd') === 'web v1\n', 10_000, 'repaired to the genuine content');
      for (const host of hosts) assert.notEqual(read(host, 'motd'), 'pwned\n');
      assert.equal(read(h(0), 'motd'), 'web v1\n');
    } finally {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
    ctl = await start();
    await waitFor(
      async () => (await api<{ agentId: string }[]>('GET', '/api/v1/events?kind=baseline_rejected&limit=10000')).filter((e) => e.agentId === h(0).id).length >= 2,
      30_000,
      'baseline_rejected audit records delivered',
    );
  });

  it('malformed and oversized frames close only the offending connection', async () => {
    await waitFor(async () => (await connected()).filter((a) => a.connected).length === 3, 30_000, 'agents back');
    const closeOf = (frame: Buffer): Promise<number> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`wss://127.0.0.1:${port}/agent`, { rejectUnauthorized: false });
        ws.on('open', () => ws.send(frame));
        ws.on('close', (code) => resolve(code));
        ws.on('error', () => undefined);
        setTimeout(() => reject(new Error('no close')), 10_000).unref();
      });
    assert.equal(await closeOf(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2])), 1007, 'malformed');
    assert.equal(await closeOf(Buffer.alloc(2 * 1024 * 1024, 1)), 1009, 'oversized');
    assert.equal((await connected()).filter((a) => a.connected).length, 3, 'every agent still connected');
    writeFileSync(path.join(h(1).root, 'motd'), 'again\n');
    await waitFor(() => read(h(1), 'motd') === 'web v1\n', 10_000, 'repair');
    await waitFor(
      async () => (await api<{ time: number }[]>(`GET`, `/api/v1/events?agent=${h(1).id}&kind=repaired&since=10s`)).length > 0,
      5_000,
      'event still flows',
    );
  });
});
