// The one codec of the wire contract: typed shapes of the messages in homeostat.proto and their binary encoding.
import protobuf from 'protobufjs';
import { HsError } from '../lib/errors.js';
import { PROTO_TEXT } from './schema.js';

/**
 * The protocol version this build speaks. History (one line per bump; never reuse a number):
 *   1: hello/welcome with join token or credential, signed baseline assignments, event batches with acks, signed decisions.
 *   2: plan requests and results (what a version would change), convergence reports after assignments (rollout health).
 *   3: signed plan requests (PlanDoc, per agent, expiring); signed removals (RemovalDoc) and held issue times; hello labels
 *      are only requests (facts no longer folded in) and the welcome carries the trusted labels.
 *   4: signed policy documents and their removals in assignments, held and acknowledged like baselines; events carry the
 *      actor, the decision, the changed fields and the risk.
 */
export const PROTOCOL_VERSION = 4;
/** The first protocol whose agents are sent policies. */
export const POLICY_PROTOCOL_VERSION = 4;
/** The oldest agent protocol the controller still serves. */
export const MIN_PROTOCOL_VERSION = 1;

/** Default hard limit on one frame either way; a larger frame closes the connection (WebSocket code 1009). */
export const DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

export interface HostFacts {
  hostname: string;
  os: string;
  osRelease: string;
  kernel: string;
  arch: string;
  cpu: string;
  cpuCores: number;
  memoryBytes: number;
}

export interface Applied {
  name: string;
  version: number;
  sha256: string;
}

export interface Rejected {
  name: string;
  version: number;
  code: string;
  message: string;
}

export interface Held {
  name: string;
  version: number;
  issuedAt: number;
  removed: boolean;
}

export interface Hello {
  protocolVersion: number;
  agentVersion: string;
  joinToken: string;
  agentId: string;
  credential: string;
  labels: Record<string, string>;
  facts: HostFacts | null;
  enforcing: Applied[];
  held: Held[];
  policies: Applied[];
  policyHeld: Held[];
}

export interface Heartbeat {
  time: number;
  outboxPending: number;
  outboxDropped: number;
  enforcementPaused: boolean;
}

export interface AssignmentAck {
  enforcing: Applied[];
  rejected: Rejected[];
  enforcementPaused: boolean;
  held: Held[];
  policies: Applied[];
  policiesRejected: Rejected[];
  policyHeld: Held[];
}

/** One audit record on the wire; empty strings and 0 stand for "none". */
export interface WireEvent {
  seq: number;
  time: number;
  resource: string;
  event: string;
  trigger: string;
  baseline: string;
  version: number;
  observedJson: string;
  desiredJson: string;
  diff: string;
  detail: string;
  prevHash: string;
  hash: string;
  /** Protocol 4 (decoded as '' and [] from older agents): the actor and decision as JSON, the changed fields, the risk. */
  actorJson?: string;
  decisionJson?: string;
  changes?: string[];
  risk?: string;
}

export interface EventBatch {
  events: WireEvent[];
}

export interface DecisionAck {
  escalationId: string;
  ok: boolean;
  error: string;
}

export interface WireError {
  code: string;
  message: string;
  retryable: boolean;
}

export interface Welcome {
  protocolVersion: number;
  agentId: string;
  credential: string;
  signingPublicKey: Uint8Array;
  heartbeatIntervalMs: number;
  maxMessageBytes: number;
  lastEventSeq: number;
  labels: Record<string, string>;
}

export interface SignedBaseline {
  payload: Uint8Array;
  signature: Uint8Array;
  keyId: string;
}

/** A document signed in a domain (lib/signing.ts): plan requests and removals. */
export interface SignedDoc {
  payload: Uint8Array;
  signature: Uint8Array;
  keyId: string;
}

export interface Assignment {
  baselines: SignedBaseline[];
  removals: SignedDoc[];
  /** Encoded PolicyDocs signed in the policy domain (protocol 4). */
  policies: SignedDoc[];
  /** Encoded RemovalDocs of policy names, signed in the policy-removal domain. */
  policyRemovals: SignedDoc[];
}

export interface RemovalDoc {
  agentId: string;
  name: string;
  version: number;
  issuedAt: number;
}

export interface PlanDoc {
  planId: string;
  agentId: string;
  baseline: Uint8Array;
  issuedAt: number;
  expiresAt: number;
  requestedBy: string;
}

export interface BaselineDoc {
  name: string;
  version: number;
  sha256: string;
  yaml: string;
  sources: Record<string, Uint8Array>;
  file: string;
  issuedAt: number;
  expiresAt: number;
  rollback: boolean;
}

export interface PolicyDoc {
  name: string;
  version: number;
  sha256: string;
  yaml: string;
  file: string;
  issuedAt: number;
  expiresAt: number;
  rollback: boolean;
}

export interface EventAck {
  uptoSeq: number;
}

export interface Decision {
  payload: Uint8Array;
  signature: Uint8Array;
  keyId: string;
}

export type DecisionAction = 'approve' | 'reject';

export interface DecisionDoc {
  escalationId: string;
  agentId: string;
  resource: string;
  action: DecisionAction;
  reason: string;
  expiresAt: number;
  issuedAt: number;
  decidedBy: string;
}

export type PlanAction = 'create' | 'change' | 'remove' | 'unknown';

export interface PlannedChange {
  resource: string;
  action: PlanAction;
  fields: string[];
  diff: string;
  error: string;
}

export interface PlanResult {
  planId: string;
  ok: boolean;
  error: string;
  currentVersion: number;
  resources: number;
  changes: PlannedChange[];
}

export interface BaselineOutcome {
  name: string;
  version: number;
  outcome: string;
  failed: string[];
  detail: string;
}

export interface Convergence {
  baselines: BaselineOutcome[];
}

export interface PlanRequest {
  planId: string;
  /** Protocol 2 only: an unsigned BaselineDoc. */
  baseline: Uint8Array;
  signed: SignedDoc | null;
}

export type AgentMessage =
  | { body: 'hello'; hello: Hello }
  | { body: 'heartbeat'; heartbeat: Heartbeat }
  | { body: 'assignmentAck'; assignmentAck: AssignmentAck }
  | { body: 'events'; events: EventBatch }
  | { body: 'decisionAck'; decisionAck: DecisionAck }
  | { body: 'error'; error: WireError }
  | { body: 'planResult'; planResult: PlanResult }
  | { body: 'convergence'; convergence: Convergence };

export type ControllerMessage =
  | { body: 'welcome'; welcome: Welcome }
  | { body: 'assignment'; assignment: Assignment }
  | { body: 'eventAck'; eventAck: EventAck }
  | { body: 'decision'; decision: Decision }
  | { body: 'error'; error: WireError }
  | { body: 'planRequest'; planRequest: PlanRequest };

/** What an encoder accepts: the body tag is implied by the one key set, and any field may be left out. */
type Outgoing<M> = M extends { body: infer B extends string } ? { [K in B]: K extends keyof M ? Partial<M[K]> : never } : never;
export type OutgoingAgentMessage = Outgoing<AgentMessage>;
export type OutgoingControllerMessage = Outgoing<ControllerMessage>;

const root = protobuf.parse(PROTO_TEXT).root;
const types = {
  agent: root.lookupType('homeostat.v1.AgentMessage'),
  controller: root.lookupType('homeostat.v1.ControllerMessage'),
  baselineDoc: root.lookupType('homeostat.v1.BaselineDoc'),
  decisionDoc: root.lookupType('homeostat.v1.DecisionDoc'),
  planDoc: root.lookupType('homeostat.v1.PlanDoc'),
  removalDoc: root.lookupType('homeostat.v1.RemovalDoc'),
  policyDoc: root.lookupType('homeostat.v1.PolicyDoc'),
};
const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, defaults: true, oneofs: true };

function decodeWith(type: protobuf.Type, bytes: Uint8Array, what: string): Record<string, unknown> {
  try {
    return type.toObject(type.decode(bytes), TO_OBJECT);
  } catch (err) {
    throw new HsError('HS_PROTOCOL', `malformed ${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** null when the frame is well-formed but carries no body this side knows: a newer peer's message, to be ignored. */
function decodeEnvelope(type: protobuf.Type, bytes: Uint8Array, what: string): Record<string, unknown> | null {
  const obj = decodeWith(type, bytes, what);
  return typeof obj.body === 'string' ? obj : null;
}

export function encodeAgentMessage(msg: OutgoingAgentMessage): Uint8Array {
  return types.agent.encode(msg).finish();
}

/** Throws HS_PROTOCOL on a malformed frame; null for a message from a newer agent that this controller does not know. */
export function decodeAgentMessage(bytes: Uint8Array): AgentMessage | null {
  return decodeEnvelope(types.agent, bytes, 'agent message') as unknown as AgentMessage | null;
}

export function encodeControllerMessage(msg: OutgoingControllerMessage): Uint8Array {
  return types.controller.encode(msg).finish();
}

/** Throws HS_PROTOCOL on a malformed frame; null for a message from a newer controller that this agent does not know. */
export function decodeControllerMessage(bytes: Uint8Array): ControllerMessage | null {
  return decodeEnvelope(types.controller, bytes, 'controller message') as unknown as ControllerMessage | null;
}

export function encodeBaselineDoc(doc: BaselineDoc): Uint8Array {
  return types.baselineDoc.encode(doc).finish();
}

/**
 * `sources` comes back with every file name as a key of its own: the protobufjs that package.json requires (^7.6.6)
 * defines a `__proto__` map key as a property instead of assigning it, so a signed name can never set the map's prototype
 * (test/unit/baseline-doc-sources.test.ts). Read it by own keys only (lib/baseline/sources.ts sourcesFromMap).
 */
export function decodeBaselineDoc(bytes: Uint8Array): BaselineDoc {
  return decodeWith(types.baselineDoc, bytes, 'baseline document') as unknown as BaselineDoc;
}

export function encodeDecisionDoc(doc: DecisionDoc): Uint8Array {
  return types.decisionDoc.encode(doc).finish();
}

export function decodeDecisionDoc(bytes: Uint8Array): DecisionDoc {
  const doc = decodeWith(types.decisionDoc, bytes, 'decision document') as unknown as DecisionDoc;
  if (doc.action !== 'approve' && doc.action !== 'reject') throw new HsError('HS_PROTOCOL', `unknown decision action ${JSON.stringify(doc.action)}`);
  return doc;
}

export function encodePlanDoc(doc: PlanDoc): Uint8Array {
  return types.planDoc.encode(doc).finish();
}

export function decodePlanDoc(bytes: Uint8Array): PlanDoc {
  return decodeWith(types.planDoc, bytes, 'plan document') as unknown as PlanDoc;
}

export function encodeRemovalDoc(doc: RemovalDoc): Uint8Array {
  return types.removalDoc.encode(doc).finish();
}

export function decodeRemovalDoc(bytes: Uint8Array): RemovalDoc {
  return decodeWith(types.removalDoc, bytes, 'removal document') as unknown as RemovalDoc;
}

export function encodePolicyDoc(doc: PolicyDoc): Uint8Array {
  return types.policyDoc.encode(doc).finish();
}

export function decodePolicyDoc(bytes: Uint8Array): PolicyDoc {
  return decodeWith(types.policyDoc, bytes, 'policy document') as unknown as PolicyDoc;
}
