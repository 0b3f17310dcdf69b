// The wire contract: the embedded schema is the .proto, every message round-trips, and the codec refuses garbage but
// ignores what a newer peer adds.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { HsError } from '../../lib/errors.js';
import {
  PROTOCOL_VERSION,
  MIN_PROTOCOL_VERSION,
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
} from '../../proto/codec.js';
import { protoSourceDir, schemaModule } from '../../proto/generate.js';
import { PROTO_TEXT } from '../../proto/schema.js';

describe('proto: wire contract', () => {
  it('embeds exactly proto/homeostat.proto (regenerate with node dist/proto/generate.js)', () => {
    const dir = protoSourceDir();
    const text = readFileSync(path.join(dir, 'homeostat.proto'), 'utf8');
    assert.equal(PROTO_TEXT, text);
    assert.equal(readFileSync(path.join(dir, 'schema.ts'), 'utf8'), schemaModule(text));
  });

  it('documents every protocol version in the history comment', () => {
    const codec = readFileSync(path.join(protoSourceDir(), 'codec.ts'), 'utf8');
    for (let v = 1; v <= PROTOCOL_VERSION; v++) assert.match(codec, new RegExp(`^ \\*   ${v}: `, 'm'), `history line for ${v}`);
    assert.ok(MIN_PROTOCOL_VERSION <= PROTOCOL_VERSION);
  });

  it('round-trips a hello with labels, facts and 64-bit numbers', () => {
    const bytes = encodeAgentMessage({
      hello: {
        protocolVersion: 1,
        agentVersion: '0.1.0',
        agentId: 'ag-1',
        credential: 'c',
        labels: { role: 'web' },
        facts: { hostname: 'h1', os: 'Debian', osRelease: '12', kernel: '6.1', arch: 'x64', cpu: 'x', cpuCores: 2, memoryBytes: 24 * 2 ** 30 },
        enforcing: [{ name: 'web', version: 3, sha256: 'ab' }],
      },
    });
    const m = decodeAgentMessage(bytes);
    assert.ok(m && m.body === 'hello');
    assert.equal(m.hello.agentId, 'ag-1');
    assert.deepEqual(m.hello.labels, { role: 'web' });
    assert.equal(m.hello.facts?.memoryBytes, 24 * 2 ** 30);
    assert.deepEqual(m.hello.enforcing, [{ name: 'web', version: 3, sha256: 'ab' }]);
    assert.equal(m.hello.joinToken, '', 'absent strings decode as empty');
  });

  it('round-trips events with seq and time past 32 bits', () => {
    const t = Date.now();
    const m = decodeAgentMessage(encodeAgentMessage({ events: { events: [{ seq: 2 ** 40, time: t, event: 'repaired', resource: 'file:/x', trigger: 'watch', baseline: 'b', version: 1, observedJson: '', desiredJson: '', diff: '', detail: '', prevHash: '0', hash: '1' }] } }));
    assert.ok(m && m.body === 'events');
    assert.equal(m.events.events[0]?.seq, 2 ** 40);
    assert.equal(m.events.events[0]?.time, t);
  });

  it('round-trips controller messages and the signed documents', () => {
    const doc = { name: 'web', version: 2, sha256: 'ff', yaml: 'x', sources: { 'files/a': Buffer.from([0, 1, 2]) }, file: 'web.yaml', issuedAt: 5, expiresAt: 6, rollback: true };
    const back = decodeBaselineDoc(encodeBaselineDoc(doc));
    assert.deepEqual({ ...back, sources: { 'files/a': Buffer.from(back.sources['files/a'] ?? []) } }, doc);
    const d = { escalationId: '7', agentId: 'ag', resource: 'file:/x', action: 'reject' as const, reason: 'ok', expiresAt: 9, issuedAt: 8, decidedBy: 'op' };
    assert.deepEqual(decodeDecisionDoc(encodeDecisionDoc(d)), d);
    const m = decodeControllerMessage(encodeControllerMessage({ eventAck: { uptoSeq: 42 } }));
    assert.ok(m && m.body === 'eventAck');
    assert.equal(m.eventAck.uptoSeq, 42);
  });

  it('round-trips what protocol 3 added: held issue times, signed removals and plans, trusted labels', () => {
    const hello = decodeAgentMessage(encodeAgentMessage({ hello: { protocolVersion: 3, held: [{ name: 'web', version: 4, issuedAt: 2 ** 41, removed: true }] } }));
    assert.ok(hello && hello.body === 'hello');
    assert.deepEqual(hello.hello.held, [{ name: 'web', version: 4, issuedAt: 2 ** 41, removed: true }]);
    const ack = decodeAgentMessage(encodeAgentMessage({ assignmentAck: { enforcing: [], rejected: [], held: [{ name: 'x', version: 1, issuedAt: 5, removed: false }] } }));
    assert.ok(ack && ack.body === 'assignmentAck' && ack.assignmentAck.held[0]?.issuedAt === 5);
    const removal = { agentId: 'ag-1', name: 'web', version: 3, issuedAt: 2 ** 42 };
    assert.deepEqual(decodeRemovalDoc(encodeRemovalDoc(removal)), removal);
    const plan = { planId: '9', agentId: 'ag-1', baseline: Buffer.from([1, 2, 3]), issuedAt: 10, expiresAt: 20, requestedBy: 'op' };
    const back = decodePlanDoc(encodePlanDoc(plan));
    assert.deepEqual({ ...back, baseline: Buffer.from(back.baseline) }, plan);
    const signed = { payload: Buffer.from([9]), signature: Buffer.from([8]), keyId: 'k' };
    const a = decodeControllerMessage(encodeControllerMessage({ assignment: { baselines: [], removals: [signed] } }));
    assert.ok(a && a.body === 'assignment' && a.assignment.removals.length === 1 && a.assignment.removals[0]?.keyId === 'k');
    const p = decodeControllerMessage(encodeControllerMessage({ planRequest: { planId: '9', signed } }));
    assert.ok(p && p.body === 'planRequest' && p.planRequest.signed?.keyId === 'k' && p.planRequest.baseline.length === 0);
    const unsigned = decodeControllerMessage(encodeControllerMessage({ planRequest: { planId: '9', baseline: Buffer.from([1]) } }));
    assert.ok(unsigned && unsigned.body === 'planRequest' && unsigned.planRequest.signed === null, 'an unsigned request decodes with signed = null');
    const w = decodeControllerMessage(encodeControllerMessage({ welcome: { agentId: 'ag-1', labels: { role: 'web' } } }));
    assert.ok(w && w.body === 'welcome' && w.welcome.labels.role === 'web');
  });

  it('round-trips what protocol 4 added: signed policies and their removals, policies held and refused, decision fields on events', () => {
    const doc = { name: 'fleet', version: 3, sha256: 'ab', yaml: 'kind: Policy', file: 'fleet.yaml', issuedAt: 2 ** 41, expiresAt: 2 ** 42, rollback: true };
    assert.deepEqual(decodePolicyDoc(encodePolicyDoc(doc)), doc);
    const signed = { payload: Buffer.from([9]), signature: Buffer.from([8]), keyId: 'k' };
    const a = decodeControllerMessage(encodeControllerMessage({ assignment: { baselines: [], removals: [], policies: [signed], policyRemovals: [signed, signed] } }));
    assert.ok(a && a.body === 'assignment');
    assert.deepEqual([a.assignment.policies.length, a.assignment.policyRemovals.length, a.assignment.removals.length], [1, 2, 0]);
    const older = decodeControllerMessage(encodeControllerMessage({ assignment: { baselines: [], removals: [] } }));
    assert.ok(older && older.body === 'assignment' && older.assignment.policies.length === 0, 'a controller before 4 sends none: decoded as empty');
    const held = [{ name: 'fleet', version: 3, issuedAt: 2 ** 41, removed: false }];
    const hello = decodeAgentMessage(encodeAgentMessage({ hello: { protocolVersion: 4, policies: [{ name: 'fleet', version: 3, sha256: 'ab' }], policyHeld: held } }));
    assert.ok(hello && hello.body === 'hello');
    assert.deepEqual([hello.hello.policies, hello.hello.policyHeld, hello.hello.enforcing], [[{ name: 'fleet', version: 3, sha256: 'ab' }], held, []]);
    const ack = decodeAgentMessage(encodeAgentMessage({ assignmentAck: { policies: [], policiesRejected: [{ name: 'fleet', version: 4, code: 'HS_POLICY_INVALID', message: 'm' }], policyHeld: held } }));
    assert.ok(ack && ack.body === 'assignmentAck');
    assert.equal(ack.assignmentAck.policiesRejected[0]?.code, 'HS_POLICY_INVALID');
    const actor = JSON.stringify({ source: 'audit', exe: '/usr/bin/vim' });
    const base = { seq: 1, time: 2, resource: '', trigger: '', baseline: '', version: 0, observedJson: '', desiredJson: '', diff: '', detail: '', prevHash: '', hash: '' };
    const ev = decodeAgentMessage(encodeAgentMessage({ events: { events: [{ ...base, event: 'drift_detected', actorJson: actor, decisionJson: '{"action":"repair"}', changes: ['content', 'mode'], risk: 'high' }] } }));
    assert.ok(ev && ev.body === 'events');
    assert.deepEqual([ev.events.events[0]?.actorJson, ev.events.events[0]?.changes, ev.events.events[0]?.risk], [actor, ['content', 'mode'], 'high']);
    const old = decodeAgentMessage(encodeAgentMessage({ events: { events: [{ ...base, event: 'repaired' }] } }));
    assert.ok(old && old.body === 'events');
    assert.deepEqual([old.events.events[0]?.actorJson, old.events.events[0]?.changes, old.events.events[0]?.risk], ['', [], ''], 'an older agent\'s event: unknown');
  });

  it('refuses a malformed frame with HS_PROTOCOL', () => {
    assert.throws(() => decodeAgentMessage(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f])), (e: unknown) => e instanceof HsError && e.code === 'HS_PROTOCOL');
    assert.throws(() => decodeDecisionDoc(encodeDecisionDoc({ escalationId: '1', agentId: 'a', resource: 'r', action: 'approve', reason: '', expiresAt: 0, issuedAt: 0, decidedBy: '' }).slice(0, 3)));
  });

  it('ignores fields and messages from a newer peer', () => {
    // A newer agent's schema: an extra hello field and a new body kind.
    const newer = protobuf.parse(`${PROTO_TEXT.replace('repeated Applied enforcing = 8;', 'repeated Applied enforcing = 8;\n  string future = 99;')}
      message Future { string x = 1; }
      message AgentMessage2 { oneof body { Hello hello = 1; Future future = 77; } }`).root;
    const Hello2 = newer.lookupType('homeostat.v1.AgentMessage2');
    const withField = Hello2.encode({ hello: { protocolVersion: 1, agentId: 'a', future: 'yes' } }).finish();
    const m = decodeAgentMessage(withField);
    assert.ok(m && m.body === 'hello');
    assert.equal(m.hello.agentId, 'a');
    assert.equal(decodeAgentMessage(Hello2.encode({ future: { x: 'y' } }).finish()), null, 'an unknown body is ignored, not fatal');
  });
});
