// Fuzzing the wire: random and mutated protobuf frames against both sides' decoders, against a live controller gateway
// (before and after a hello) and against a live agent link. Nothing may crash or throw past the codec's HS_PROTOCOL, a bad
// frame closes only its own connection, nothing a fuzzed controller sends gets activated, and every connection's
// resources are released. Time-bounded by HOMEOSTAT_FUZZ_SECONDS (test/helpers/fuzz.ts).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { composeAgent } from '../../agent/compose.js';
import { ControllerLink } from '../../agent/link/link.js';
import { admit, admitPolicy, verifyPlan, verifyRemoval } from '../../agent/link/trust.js';
import { DEFAULT_SETTINGS } from '../../agent/settings.js';
import { AgentStore } from '../../agent/store/store.js';
import { parseBaseline } from '../../lib/baseline/index.js';
import { HsError } from '../../lib/errors.js';
import { formatJoinToken } from '../../lib/join-token.js';
import { silentLogger } from '../../lib/log.js';
import { generateSigningKey, publicKeyFingerprint, signBytes, signInDomain } from '../../lib/signing.js';
import {
  PROTOCOL_VERSION,
  decodeAgentMessage,
  decodeBaselineDoc,
  decodeControllerMessage,
  decodeDecisionDoc,
  decodePlanDoc,
  decodePolicyDoc,
  decodeRemovalDoc,
  encodeAgentMessage,
  encodeBaselineDoc,
  encodeControllerMessage,
  encodeDecisionDoc,
  encodePlanDoc,
  encodePolicyDoc,
  encodeRemovalDoc,
  type HostFacts,
  type OutgoingAgentMessage,
  type OutgoingControllerMessage,
} from '../../proto/codec.js';
import { tempDir, waitFor } from '../helpers/agent.js';
import { fuzzParams, fuzzTimeoutMs } from '../helpers/fuzz.js';
import { controller, rogue, welcomedOrClosed, wireClient, type Controller, type WireClient } from '../helpers/trust.js';

const DECODERS: [string, (b: Uint8Array) => unknown][] = [
  ['agent message', decodeAgentMessage],
  ['controller message', decodeControllerMessage],
  ['baseline document', decodeBaselineDoc],
  ['decision document', decodeDecisionDoc],
  ['plan document', decodePlanDoc],
  ['removal document', decodeRemovalDoc],
  ['policy document', decodePolicyDoc],
];

/** Decodes or refuses with HS_PROTOCOL; anything else (another exception, a hang) fails the property. */
function decodesOrRefuses(decode: (b: Uint8Array) => unknown, bytes: Uint8Array): void {
  try {
    decode(bytes);
  } catch (err) {
    if (!(err instanceof HsError && err.code === 'HS_PROTOCOL')) throw err;
  }
}

// ---- arbitraries: valid frames of every kind, and mutations of them ----

const text = fc.string({ maxLength: 40 });
const n32 = fc.nat({ max: 2 ** 32 - 1 });
const n53 = fc.nat({ max: Number.MAX_SAFE_INTEGER });
const bytes = fc.uint8Array({ maxLength: 200 });
const labels = fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), fc.string({ maxLength: 12 }), { maxKeys: 5 });
const held = fc.record({ name: text, version: n32, issuedAt: n53, removed: fc.boolean() });
const facts = fc.record({ hostname: text, os: text, osRelease: text, kernel: text, arch: text, cpu: text, cpuCores: n32, memoryBytes: n53 });

const agentMessage: fc.Arbitrary<OutgoingAgentMessage> = fc.oneof(
  fc.record({ hello: fc.record({ protocolVersion: n32, agentVersion: text, joinToken: text, agentId: text, credential: text, labels, facts, enforcing: fc.array(fc.record({ name: text, version: n32, sha256: text }), { maxLength: 3 }), held: fc.array(held, { maxLength: 3 }), policies: fc.array(fc.record({ name: text, version: n32, sha256: text }), { maxLength: 3 }), policyHeld: fc.array(held, { maxLength: 3 }) }) }),
  fc.record({ heartbeat: fc.record({ time: n53, outboxPending: n53, outboxDropped: n53, enforcementPaused: fc.boolean() }) }),
  fc.record({ assignmentAck: fc.record({ enforcing: fc.array(fc.record({ name: text, version: n32, sha256: text }), { maxLength: 3 }), rejected: fc.array(fc.record({ name: text, version: n32, code: text, message: text }), { maxLength: 3 }), enforcementPaused: fc.boolean(), held: fc.array(held, { maxLength: 3 }), policies: fc.array(fc.record({ name: text, version: n32, sha256: text }), { maxLength: 3 }), policiesRejected: fc.array(fc.record({ name: text, version: n32, code: text, message: text }), { maxLength: 3 }), policyHeld: fc.array(held, { maxLength: 3 }) }) }),
  fc.record({ events: fc.record({ events: fc.array(fc.record({ seq: n53, time: n53, resource: text, event: text, trigger: text, baseline: text, version: n32, observedJson: text, desiredJson: text, diff: text, detail: text, prevHash: text, hash: text, actorJson: text, decisionJson: text, changes: fc.array(text, { maxLength: 3 }), risk: text }), { maxLength: 3 }) }) }),
  fc.record({ decisionAck: fc.record({ escalationId: text, ok: fc.boolean(), error: text }) }),
  fc.record({ error: fc.record({ code: text, message: text, retryable: fc.boolean() }) }),
  fc.record({ planResult: fc.record({ planId: text, ok: fc.boolean(), error: text, currentVersion: n32, resources: n32, changes: fc.array(fc.record({ resource: text, action: fc.constantFrom('create', 'change', 'remove', 'unknown'), fields: fc.array(text, { maxLength: 3 }), diff: text, error: text }), { maxLength: 3 }) }) }),
  fc.record({ convergence: fc.record({ baselines: fc.array(fc.record({ name: text, version: n32, outcome: text, failed: fc.array(text, { maxLength: 2 }), detail: text }), { maxLength: 3 }) }) }),
) as fc.Arbitrary<OutgoingAgentMessage>;

const signedDoc = fc.record({ payload: bytes, signature: fc.uint8Array({ minLength: 64, maxLength: 64 }), keyId: text });
const controllerMessage: fc.Arbitrary<OutgoingControllerMessage> = fc.oneof(
  fc.record({ welcome: fc.record({ protocolVersion: n32, agentId: text, credential: text, signingPublicKey: fc.uint8Array({ maxLength: 40 }), heartbeatIntervalMs: n32, maxMessageBytes: n32, lastEventSeq: n53, labels }) }),
  fc.record({ assignment: fc.record({ baselines: fc.array(signedDoc, { maxLength: 3 }), removals: fc.array(signedDoc, { maxLength: 3 }), policies: fc.array(signedDoc, { maxLength: 3 }), policyRemovals: fc.array(signedDoc, { maxLength: 3 }) }) }),
  fc.record({ eventAck: fc.record({ uptoSeq: n53 }) }),
  fc.record({ decision: signedDoc }),
  fc.record({ error: fc.record({ code: text, message: text, retryable: fc.boolean() }) }),
  fc.record({ planRequest: fc.record({ planId: text, baseline: bytes, signed: signedDoc }) }),
) as fc.Arbitrary<OutgoingControllerMessage>;

type Mutation = { op: 'flip' | 'set' | 'cut' | 'insert' | 'drop'; at: number; byte: number };
const mutations = fc.array(fc.record({ op: fc.constantFrom<Mutation['op']>('flip', 'set', 'cut', 'insert', 'drop'), at: fc.nat(), byte: fc.nat({ max: 255 }) }), { minLength: 1, maxLength: 4 });

function mutate(input: Uint8Array, ms: Mutation[]): Uint8Array {
  let b = Buffer.from(input);
  for (const m of ms) {
    const at = b.length === 0 ? 0 : m.at % b.length;
    if (m.op === 'flip' && b.length > 0) b[at] = (b[at] ?? 0) ^ (1 << (m.byte % 8));
    else if (m.op === 'set' && b.length > 0) b[at] = m.byte;
    else if (m.op === 'cut') b = b.subarray(0, at);
    else if (m.op === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from([m.byte]), b.subarray(at)]);
    else if (m.op === 'drop') b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
  }
  return b;
}

const agentFrame = fc.oneof(
  fc.uint8Array({ maxLength: 512 }),
  agentMessage.map((m) => encodeAgentMessage(m)),
  fc.tuple(agentMessage, mutations).map(([m, ms]) => mutate(encodeAgentMessage(m), ms)),
);

const FACTS: HostFacts = { hostname: 'fuzz', os: 'Debian', osRelease: '12', kernel: '6', arch: 'x64', cpu: '', cpuCores: 1, memoryBytes: 1 };

describe('fuzz: protobuf frames', function () {
  this.timeout(fuzzTimeoutMs(1, 60_000));
  const tmp = tempDir('hs-fuzz-proto-');
  after(() => tmp.cleanup());

  it('every decoder decodes or refuses with HS_PROTOCOL: random bytes and mutated valid frames of both sides', () => {
    const { key } = generateSigningKey();
    const frames = fc.oneof(
      fc.uint8Array({ maxLength: 2048 }),
      agentFrame,
      fc.tuple(controllerMessage, mutations).map(([m, ms]) => mutate(encodeControllerMessage(m), ms)),
      fc.tuple(fc.record({ planId: text, agentId: text, baseline: bytes, issuedAt: n53, expiresAt: n53, requestedBy: text }), mutations).map(([d, ms]) => mutate(encodePlanDoc(d), ms)),
      fc.tuple(fc.record({ agentId: text, name: text, version: n32, issuedAt: n53 }), mutations).map(([d, ms]) => mutate(encodeRemovalDoc(d), ms)),
      fc.tuple(fc.record({ name: text, version: n32, sha256: text, yaml: text, file: text, issuedAt: n53, expiresAt: n53, rollback: fc.boolean() }), mutations).map(([d, ms]) => mutate(encodePolicyDoc(d), ms)),
      fc.tuple(fc.record({ escalationId: text, agentId: text, resource: text, action: fc.constantFrom<'approve' | 'reject'>('approve', 'reject'), reason: text, expiresAt: n53, issuedAt: n53, decidedBy: text }), mutations).map(([d, ms]) => mutate(encodeDecisionDoc(d), ms)),
    );
    fc.assert(
      fc.property(frames, (b) => {
        for (const [, decode] of DECODERS) decodesOrRefuses(decode, b);
        // What the agent does with a document it cannot trust: a refusal, never an exception.
        const s = { payload: b, signature: signBytes(key, b), keyId: key.keyId };
        admit(s, key.publicKey, { version: 1, sha256: '', issuedAt: 0 }, 0);
        verifyPlan(s, 'p', key.publicKey, 'ag', 0);
        verifyRemoval({ payload: b, signature: signInDomain(key, 'removal', b), keyId: key.keyId }, key.publicKey, 'ag');
        admitPolicy({ payload: b, signature: signInDomain(key, 'policy', b), keyId: key.keyId }, key.publicKey, { version: 1, sha256: '', issuedAt: 0 }, 0);
        verifyRemoval({ payload: b, signature: signInDomain(key, 'policy-removal', b), keyId: key.keyId }, key.publicKey, 'ag', 'policy-removal');
      }),
      fuzzParams(0.25),
    );
  });

  describe('a live controller gateway', () => {
    let c: Controller;
    let control: WireClient;
    let controlSeq = 0;
    let credential: { agentId: string; credential: string };

    before(async () => {
      c = await controller(path.join(tmp.dir, 'ctl'), {
        insecureHttp: true,
        gateway: { helloTimeoutMs: 2000, attemptsPerAddress: { burst: 1e9, perSecond: 1e9 }, failuresPerToken: { burst: 1e9, perSecond: 1e9 } },
      });
      const { token } = await c.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h' });
      control = await wireClient(c.ctl.agentUrl, { joinToken: token });
      const w = await welcomedOrClosed(control);
      assert.ok(w.welcome);
      const second = await c.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h' });
      const fuzzed = await wireClient(c.ctl.agentUrl, { joinToken: second.token });
      const w2 = await welcomedOrClosed(fuzzed);
      assert.ok(w2.welcome);
      credential = { agentId: w2.welcome.agentId, credential: w2.welcome.credential };
      fuzzed.ws.close();
    });
    after(async () => {
      control?.ws.close();
      await c?.stop();
    });

    /** The control agent still gets its events acknowledged: the controller is alive and serving others. */
    const controlAlive = async (): Promise<void> => {
      const seq = ++controlSeq;
      control.send({ events: { events: [{ seq, time: Date.now(), event: 'agent_started', resource: '', trigger: '', baseline: '', version: 0, observedJson: '', desiredJson: '', diff: '', detail: '', prevHash: '', hash: `h${seq}` }] } });
      await waitFor(() => control.messages.some((m) => m.body === 'eventAck' && m.eventAck.uptoSeq >= seq), 10_000, 'control agent acknowledged');
      assert.equal(control.closed, null, 'the control connection was never touched');
    };

    it('random and mutated frames, before and after a hello, close at most their own connection', async () => {
      await fc.assert(
        fc.asyncProperty(fc.boolean(), fc.array(agentFrame, { minLength: 1, maxLength: 4 }), fc.nat({ max: 250 }), async (authenticated, frames, host) => {
          const w = await wireClient(c.ctl.agentUrl, authenticated ? credential : undefined, { localAddress: `127.0.${1 + (host % 200)}.${1 + host}` });
          if (authenticated) assert.ok((await welcomedOrClosed(w)).welcome);
          for (const f of frames) if (w.ws.readyState === w.ws.OPEN) w.ws.send(f);
          // Whatever the frames did, a well-formed frame afterwards is answered or the connection is gone.
          if (w.ws.readyState === w.ws.OPEN) {
            if (authenticated) w.send({ events: { events: [{ seq: 1, time: 1, event: 'agent_started', resource: '', trigger: '', baseline: '', version: 0, observedJson: '', desiredJson: '', diff: '', detail: '', prevHash: '', hash: 'x' }] } });
            else w.send({ hello: { protocolVersion: PROTOCOL_VERSION, agentVersion: 'fuzz', ...credential } });
          }
          await waitFor(() => w.closed !== null || w.messages.some((m) => m.body === 'eventAck' || m.body === 'welcome'), 10_000, 'answered or closed');
          w.ws.terminate();
          await controlAlive();
        }),
        fuzzParams(0.3),
      );
      // Every connection's place before hello and in the registry was given back.
      await waitFor(() => c.ctl.core.gateway.preAuthCounts().total === 0, 10_000, 'no connection left before hello');
      await waitFor(() => c.ctl.core.gateway.connectedCount() === 1, 10_000, 'only the control agent connected');
    });
  });

  it("a live agent link takes nothing from a fuzzed controller, and keeps working", async () => {
    const { key } = generateSigningKey();
    const stateDir = path.join(tmp.dir, 'agent');
    const managed = path.join(tmp.dir, 'managed');
    mkdirSync(managed, { recursive: true });
    const yaml = `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: live\nspec:\n  resources:\n    - file: ${managed}/live\n      content: "ok\\n"\n`;
    const sha256 = parseBaseline(yaml, { file: 'live.yaml' }).origin.sha256;
    const goodDoc = (issuedAt: number): { payload: Buffer; signature: Buffer; keyId: string } => {
      const payload = Buffer.from(encodeBaselineDoc({ name: 'live', version: 1, sha256, yaml, sources: {}, file: 'live.yaml', issuedAt, expiresAt: issuedAt + 3_600_000, rollback: false }));
      return { payload, signature: signBytes(key, payload), keyId: key.keyId };
    };
    let script: Uint8Array[] = [];
    const r = await rogue(null, (m, send, ws) => {
      if (m.body !== 'hello') return;
      send({ welcome: { protocolVersion: PROTOCOL_VERSION, agentId: 'ag-fuzz', credential: 'c', signingPublicKey: key.publicKey, heartbeatIntervalMs: 60_000 } });
      for (const f of script) ws.send(f);
    });
    const store = AgentStore.open(stateDir);
    const agent = composeAgent({ settings: { ...DEFAULT_SETTINGS, stateDir }, log: silentLogger, store });
    const token = formatJoinToken({ id: 'fuzz', secret: randomBytes(8).toString('hex'), signingKey: publicKeyFingerprint(key.publicKey), fingerprint: null });
    const link = new ControllerLink(agent, { url: r.url, token, stateDir, labels: {}, log: silentLogger, facts: FACTS, insecureHttp: true, backoff: { baseMs: 5, maxMs: 20 }, probeIntervalMs: 50 });
    try {
      await link.start();
      await waitFor(() => link.state === 'connected', 10_000, 'enrolled with the fuzzing controller');
      const valid = fc.oneof(controllerMessage.map((m) => encodeControllerMessage(m)), fc.tuple(controllerMessage, mutations).map(([m, ms]) => mutate(encodeControllerMessage(m), ms)), fc.uint8Array({ maxLength: 512 }));
      // Mutations of a genuine signed assignment: whatever changes, its signature no longer holds.
      const tampered = fc.tuple(fc.nat({ max: 1_000_000 }), mutations).map(([t, ms]) => {
        const d = goodDoc(1_000 + t);
        return encodeControllerMessage({ assignment: { baselines: [{ ...d, payload: mutate(d.payload, ms) }], removals: [] } });
      });
      await fc.assert(
        fc.asyncProperty(fc.array(fc.oneof(valid, tampered), { minLength: 1, maxLength: 4 }), async (frames) => {
          script = frames;
          const before = r.received.filter((m) => m.body === 'hello').length;
          // Each run: a fresh connection (the link reconnects after the fuzzed one fails or is dropped), its frames, then the next.
          link['conn']?.close();
          await waitFor(() => r.received.filter((m) => m.body === 'hello').length > before, 10_000, 'the link reconnected');
          assert.deepEqual(agent.activeBaselines(), [], 'nothing a fuzzed controller sent was activated');
        }),
        fuzzParams(0.2),
      );
      // Still working: a genuine signed assignment is taken.
      script = [encodeControllerMessage({ assignment: { baselines: [goodDoc(Date.now())], removals: [] } })];
      link['conn']?.close();
      await waitFor(() => agent.activeBaselines().some((b) => b.name === 'live'), 10_000, 'a genuine assignment still activates');
    } finally {
      await link.stop();
      await agent.stop();
      store.close();
      await r.close();
    }
  });
});
