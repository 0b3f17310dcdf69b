// Robustness of the trust machinery (issue 11): staged versions renewed before they expire, a connection closed during its
// hello never left "connected", a failed decision push that ends nothing, the link woken when its controller is back, a
// controller that will not start with a signing key its agents did not pin, and agents that say why they cannot connect.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { composeAgent } from '../../agent/compose.js';
import { ControllerLink } from '../../agent/link/link.js';
import { DEFAULT_SETTINGS } from '../../agent/settings.js';
import { AgentStore } from '../../agent/store/store.js';
import { BaselineService } from '../../controller/baselines.js';
import { createControllerCore } from '../../controller/core.js';
import { Enrollment } from '../../controller/enrollment.js';
import { EscalationService } from '../../controller/escalations.js';
import { EventIngest } from '../../controller/events.js';
import { AgentGateway, type AgentReport } from '../../controller/gateway/gateway.js';
import { ControllerMetrics } from '../../controller/metrics.js';
import { PolicyService } from '../../controller/policies.js';
import { SqliteControllerStore } from '../../controller/store/sqlite.js';
import type { ControllerStore } from '../../controller/store/types.js';
import { ManualClock, systemClock } from '../../lib/clock.js';
import { HsError } from '../../lib/errors.js';
import { silentLogger } from '../../lib/log.js';
import { generateSigningKey, publicKeyFingerprint } from '../../lib/signing.js';
import { decodeBaselineDoc, type HostFacts } from '../../proto/codec.js';
import { tempDir, waitFor, type DaemonProcess } from '../helpers/agent.js';
import { agentStatus, controller, runAgentDaemon, welcomedOrClosed, wireClient } from '../helpers/trust.js';

const yaml = (content: string): string =>
  `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: app\nspec:\n  resources:\n    - file: /srv/hs-robust-never/motd\n      content: "${content}"\n`;
const FACTS: HostFacts = { hostname: 'h', os: 'Debian', osRelease: '12', kernel: '6', arch: 'x64', cpu: '', cpuCores: 1, memoryBytes: 1 };

/** The store as a remote database answers: every call resolves on a later turn of the event loop (I/O runs in between). */
function laterStore(inner: ControllerStore, fail: { pendingDecisions: boolean }): ControllerStore {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) =>
        new Promise((resolve, reject) =>
          setImmediate(() => {
            if (prop === 'pendingDecisions' && fail.pendingDecisions) return reject(new HsError('HS_STORE', 'database went away', { retryable: true }));
            Promise.resolve((v as (...a: unknown[]) => unknown).apply(target, args)).then(resolve, reject);
          }),
        );
    },
  });
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('trust robustness (issue 11)', function () {
  this.timeout(60_000);
  const tmp = tempDir('hs-robust-');
  after(() => tmp.cleanup());

  it('renews the signature of a staged version (paused or aborted rollout) before it expires, and keeps it with the rollout', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const core = await createControllerCore({ dataDir: path.join(tmp.dir, 'staged'), fingerprint: null, clock, signatureValidityMs: 10_000 });
    try {
      await core.baselines.push({ yaml: yaml('one'), sources: {}, file: 'app.yaml' });
      await core.baselines.push({ yaml: yaml('two'), sources: {}, file: 'app.yaml' });
      const now = clock.now();
      const r = await core.store.addRollout({
        document: 'baseline', baseline: 'app', version: 2, previousVersion: null, strategy: 'waves', rollback: false, createdAt: now, state: 'paused',
        spec: { waves: [50, 100], gate: { maxFailedHosts: 0, soakSeconds: 0, ackTimeoutSeconds: 60 }, canary: null, onFailure: 'pause', onEscalation: 'pause' },
        currentWave: 0, waveStartedAt: now, reason: 'paused by an operator', pausedFor: 'operator', updatedAt: now, finishedAt: null, signed: null,
      });
      await core.baselines.stage('app', 2, r.id);
      core.baselines.admit('app', ['ag-1']);
      const docOf = (): { version: number; issuedAt: number; expiresAt: number } => {
        const s = core.baselines.assignmentFor({}, 'ag-1').docs[0];
        assert.ok(s);
        return decodeBaselineDoc(s.payload);
      };
      const first = docOf();
      assert.equal(first.version, 2);
      clock.advance(6_000); // past half the validity
      assert.ok((await core.baselines.renewDue()) >= 1);
      const renewed = docOf();
      assert.equal(renewed.version, 2);
      assert.ok(renewed.expiresAt > first.expiresAt && renewed.issuedAt > first.issuedAt, 'a fresh signature of the staged version');
      assert.equal((await core.store.getRollout(r.id))?.signed?.issuedAt, renewed.issuedAt, 'stored with the rollout for a restart');
    } finally {
      await core.close();
    }
  });

  describe('the gateway with a store that answers later', () => {
    const key = generateSigningKey().key;
    const fail = { pendingDecisions: false };
    const reports: AgentReport[] = [];
    let gateway: AgentGateway;
    let inner: SqliteControllerStore;
    let escalations: EscalationService;
    let enrollment: Enrollment;
    let url = '';
    let close: () => Promise<void> = async () => undefined;

    before(async () => {
      mkdirSync(path.join(tmp.dir, 'gw'), { recursive: true });
      inner = new SqliteControllerStore(path.join(tmp.dir, 'gw', 'controller.db'));
      const store = laterStore(inner, fail);
      enrollment = new Enrollment(store, systemClock, null, publicKeyFingerprint(key.publicKey));
      const baselines = new BaselineService(store, key, systemClock, silentLogger);
      await baselines.load();
      const policies = new PolicyService(store, key, systemClock, silentLogger);
      escalations = new EscalationService(store, key, systemClock, silentLogger);
      await escalations.load();
      const events = new EventIngest(store, systemClock, silentLogger);
      gateway = new AgentGateway({ store, enrollment, baselines, policies, events, escalations, metrics: new ControllerMetrics(), log: silentLogger, clock: systemClock, signingPublicKey: key.publicKey, signingKeyId: key.keyId });
      gateway.onReport((r) => reports.push(r));
      const server = createServer();
      server.on('upgrade', (req, socket, head) => gateway.handleUpgrade(req, socket, head));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
      close = async () => {
        await gateway.close();
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
        await inner.close();
      };
    });
    after(() => close());

    it('never registers a connection that closed while its hello was being checked', async () => {
      const t = await enrollment.createToken();
      const first = await wireClient(url, { joinToken: t.token });
      const { welcome } = await welcomedOrClosed(first);
      assert.ok(welcome);
      first.ws.close();
      await waitFor(() => gateway.connectedCount() === 0, 5_000, 'first connection gone');
      for (let i = 0; i < 20; i++) {
        const c = await wireClient(url, { agentId: welcome.agentId, credential: welcome.credential });
        c.ws.terminate();
      }
      // A last connection that stays: once it is registered, every earlier one has been dealt with.
      const last = await wireClient(url, { agentId: welcome.agentId, credential: welcome.credential });
      assert.ok((await welcomedOrClosed(last)).welcome);
      await waitFor(() => gateway.session(welcome.agentId)?.ws !== undefined && reports.at(-1)?.kind === 'connected', 5_000, 'last connected');
      last.ws.close();
      await waitFor(() => gateway.connectedCount() === 0, 5_000, 'nobody left connected');
      let open = 0;
      for (const r of reports) if (r.kind === 'connected') open++;
      else if (r.kind === 'disconnected') open--;
      assert.equal(open, 0, 'every connected report has its disconnected');
    });

    it('a decision that cannot be read from the store is logged, not an unhandled rejection', async () => {
      const t = await enrollment.createToken();
      const c = await wireClient(url, { joinToken: t.token });
      const { welcome } = await welcomedOrClosed(c);
      assert.ok(welcome);
      const esc = await inner.addEscalation({
        agentId: welcome.agentId, resource: 'file:/x', baseline: null, version: null, kind: 'escalated', detail: null, observed: null, desired: null, diff: null,
        openedAt: Date.now(), repeats: 0, status: 'open', decidedAt: null, decidedBy: null, reason: null, expiresAt: null, outcome: null, outcomeError: null,
        decisionPayload: null, decisionSignature: null,
      });
      const unhandled: unknown[] = [];
      const onUnhandled = (r: unknown): void => void unhandled.push(r);
      const mochaListeners = process.listeners('unhandledRejection');
      process.removeAllListeners('unhandledRejection');
      process.on('unhandledRejection', onUnhandled);
      try {
        fail.pendingDecisions = true;
        await escalations.decide(esc.id, { action: 'approve', reason: '', by: 'test' });
        // Two more turns of the store than the push needs.
        for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
        await new Promise((r) => setTimeout(r, 50));
      } finally {
        fail.pendingDecisions = false;
        process.off('unhandledRejection', onUnhandled);
        for (const l of mochaListeners) process.on('unhandledRejection', l);
      }
      assert.deepEqual(unhandled, []);
      assert.ok(gateway.session(welcome.agentId), 'the agent is still connected');
      c.ws.close();
    });
  });

  it('an agent waiting out a long backoff reconnects as soon as its controller answers again', async () => {
    const dataDir = path.join(tmp.dir, 'probe-ctl');
    const port = await freePort();
    let c = await controller(dataDir, { listen: `127.0.0.1:${port}` });
    const token = (await c.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h' })).token;
    await c.stop();
    const stateDir = path.join(tmp.dir, 'probe-agent');
    const store = AgentStore.open(stateDir);
    const agent = composeAgent({ settings: { ...DEFAULT_SETTINGS, stateDir }, log: silentLogger, store });
    // A ten-minute step: without the probe it would sleep through the controller's return.
    const link = new ControllerLink(agent, { url: `wss://127.0.0.1:${port}`, token, stateDir, labels: {}, log: silentLogger, facts: FACTS, backoff: { baseMs: 600_000, maxMs: 600_000 }, probeIntervalMs: 200 });
    try {
      await link.start();
      await waitFor(() => link.problem?.reason === 'unreachable', 10_000, 'unreachable first');
      c = await controller(dataDir, { listen: `127.0.0.1:${port}` });
      await waitFor(() => link.state === 'connected', 10_000, 'connected long before the backoff step ends');
      assert.equal(link.problem, null);
    } finally {
      await link.stop();
      await agent.stop();
      store.close();
      await c.stop();
    }
  });

  describe('a controller that lost or replaced its signing key', () => {
    const dataDir = path.join(tmp.dir, 'lost-key');
    const stateDir = path.join(tmp.dir, 'lost-key-agent');
    const tlsDir = path.join(tmp.dir, 'lost-key-tls');
    let port = 0;
    let agentProc: DaemonProcess | undefined;
    after(async () => {
      await agentProc?.stop();
    });

    it('refuses to start without the key its enrolled agents pinned, saying how to restore or rotate', async () => {
      port = await freePort();
      const c = await controller(dataDir, { listen: `127.0.0.1:${port}` });
      const token = (await c.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h' })).token;
      agentProc = runAgentDaemon(stateDir, c.ctl.agentUrl, ['--token', token]);
      await waitFor(async () => (await c.api<{ connected: boolean }[]>('GET', '/api/v1/agents')).some((a) => a.connected), 20_000, 'enrolled');
      const oldKey = c.ctl.core.signingKey.keyId;
      await c.stop();
      mkdirSync(tlsDir, { recursive: true });
      cpSync(path.join(dataDir, 'tls.crt'), path.join(tlsDir, 'tls.crt'));
      cpSync(path.join(dataDir, 'tls.key'), path.join(tlsDir, 'tls.key'));
      rmSync(path.join(dataDir, 'signing.key'));
      await assert.rejects(createControllerCore({ dataDir, fingerprint: null }), (e: unknown) => {
        assert.ok(e instanceof HsError && e.code === 'HS_CONFIG');
        assert.match(e.message, /signing\.key is missing while 1 agent\(s\) are enrolled/);
        assert.match(e.message, new RegExp(`pinned signing key ${oldKey}`));
        assert.match(e.message, /Restore signing\.key from a backup.*--rotate-signing-key/);
        return true;
      });
      // Another key put in its place is refused as well.
      writeFileSync(path.join(dataDir, 'signing.key'), generateSigningKey().pem, { mode: 0o600 });
      await assert.rejects(createControllerCore({ dataDir, fingerprint: null }), new RegExp(`holds signing key [0-9a-f]+, but the 1 enrolled agent\\(s\\) pinned ${oldKey}`));
      rmSync(path.join(dataDir, 'signing.key'));
    });

    it('with --rotate-signing-key it starts; the enrolled agent then says its controller presents another key', async () => {
      const c = await controller(dataDir, { listen: `127.0.0.1:${port}`, rotateSigningKey: true });
      try {
        assert.ok((await c.ctl.core.store.listControllerEvents({})).some((e) => e.kind === 'signing_key_rotated'));
        const s = await waitForProblem(stateDir, 'key_mismatch');
        assert.match(s, /restore the controller's signing\.key from backup, or enroll this agent again/);
      } finally {
        await c.stop();
      }
      // Restarted without the flag, it keeps the rotated key: the refusal was about a key nobody chose.
      const again = await controller(dataDir, { listen: `127.0.0.1:${port}` });
      await again.stop();
    });

    it('with its data dir gone (its certificate kept), the agent says the controller does not know it', async () => {
      rmSync(dataDir, { recursive: true, force: true });
      const c = await controller(dataDir, { listen: `127.0.0.1:${port}`, tlsCert: path.join(tlsDir, 'tls.crt'), tlsKey: path.join(tlsDir, 'tls.key') });
      try {
        const s = await waitForProblem(stateDir, 'auth_refused');
        assert.match(s, /does not know agent ag-[0-9a-f]+ .*enroll again/);
      } finally {
        await c.stop();
      }
    });
  });
});

async function waitForProblem(stateDir: string, reason: string): Promise<string> {
  let message = '';
  await waitFor(
    async () => {
      const s = await agentStatus(stateDir);
      message = s.controller.problem?.message ?? '';
      return s.controller.problem?.reason === reason;
    },
    45_000,
    `agent status: ${reason}`,
  );
  return message;
}
