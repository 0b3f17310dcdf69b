// What an operator on the host may ask of the agent — approve or reject an escalation, forget a baseline — carried out
// the same way by the running daemon (over the control socket, server.ts) and by a one-shot command when no daemon runs.
// Every answer is audited with the local user as its author.
import os from 'node:os';
import { loadBaselineFile, parseBaseline } from '../../lib/baseline/index.js';
import type { Baseline, ResourceDecl } from '../../lib/baseline/types.js';
import { HsError } from '../../lib/errors.js';
import type { Agent } from '../agent.js';
import { finishedWithin } from '../engine/reconcile.js';
import { dropCachedBaseline } from '../link/assignments.js';
import type { ResourceResult } from '../engine/engine.js';
import { registry } from '../resources/registry.js';
import type { AgentStore } from '../store/store.js';
import type { AuditEvent, LocalEscalation } from '../store/types.js';
import type { BaselineSource, ControlRequest } from './protocol.js';

/** How long an approval waits for its repair before answering (the repair goes on either way). */
const APPROVAL_WAIT_MS = 30_000;

/** What the operations act on: the daemon's live agent, or one composed for a single command. */
export interface ControlTarget {
  store: AgentStore;
  agent: Agent;
  /** The daemon: its agent enforces the active set. A one-shot agent manages nothing until `manage` gives it a baseline. */
  live: boolean;
  /** Local baseline files configured (the daemon's, or the command's --config/--baseline): `forget` says if one names it. */
  configuredFiles: string[];
  /** The daemon only: stops enforcing `name` of `origin` (the rest of that origin's set stays). */
  stopEnforcing?: (origin: BaselineSource, name: string) => Promise<void>;
  /** The daemon's controller link, if any: a forget runs between its assignments and a controller baseline forgotten is reported to it. */
  link?: { forgetting(carryOut: () => Promise<ForgetResult>): Promise<ForgetResult> };
}

export interface DecisionResult {
  escalation: number;
  resource: string;
  action: 'approve' | 'reject';
  by: string;
  outcome: ResourceResult['outcome'] | 'pending';
  error?: { code: string; message: string };
  expiresAt?: number;
}

export interface ForgetResult {
  name: string;
  origin: BaselineSource;
  by: string;
  versions: number[];
  wasActive: boolean;
  /** Configured local files that still name it: it is enforced again at the next reload or start. */
  stillConfigured: string[];
}

/** The local user an answer is recorded under: the sudo caller, else the login name, else the uid. */
export function localAuthor(env: NodeJS.ProcessEnv = process.env): string {
  const sudo = env.SUDO_USER;
  if (sudo) return sudo;
  const login = env.LOGNAME ?? env.USER;
  if (login) return login;
  try {
    return os.userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}

/** Open escalations of baselines still active here, each with the place its baseline comes from. */
export function listEscalations(store: AgentStore): (LocalEscalation & { managedBy: BaselineSource })[] {
  const origins = new Map(store.getActive().map((b) => [b.name, b.origin]));
  return store.openEscalations().flatMap((e) => {
    const origin = e.baseline ? origins.get(e.baseline) : undefined;
    return origin ? [{ ...e, managedBy: origin }] : [];
  });
}

function findEscalation(store: AgentStore, id: number): LocalEscalation & { managedBy: BaselineSource } {
  const e = listEscalations(store).find((x) => x.id === id);
  if (!e) throw new HsError('HS_NOT_FOUND', `no open escalation ${id} on this host (homeostat-agent escalations lists them)`);
  if (e.managedBy === 'controller') {
    const url = store.getMeta('controller.url');
    throw new HsError(
      'HS_CONFLICT',
      `escalation ${id} (${e.resource}) belongs to baseline '${e.baseline}' from the controller${url ? ` ${url}` : ''}: decide it there (homeostatctl escalations, then homeostatctl approve|reject ID), where the fleet's record of it is kept`,
      { resource: e.resource },
    );
  }
  return e;
}

export async function runControl(t: ControlTarget, req: ControlRequest): Promise<DecisionResult | ForgetResult> {
  switch (req.op) {
    case 'approve':
    case 'reject':
      return decideEscalation(t, req);
    case 'forget':
      return t.link ? t.link.forgetting(() => forgetBaseline(t, req)) : forgetBaseline(t, req);
  }
}

async function decideEscalation(t: ControlTarget, req: Extract<ControlRequest, { op: 'approve' | 'reject' }>): Promise<DecisionResult> {
  const e = findEscalation(t.store, req.id);
  if (!t.live) await manageCached(t, e.baseline ?? '');
  const engine = t.agent.engine;
  if (!engine.resourceIds().includes(e.resource)) throw new HsError('HS_NOT_FOUND', `${e.resource} of escalation ${req.id} is not managed here any more`, { resource: e.resource });
  const base = { escalation: req.id, resource: e.resource, action: req.op, by: req.by };
  if (req.op === 'reject') {
    await engine.reject(e.resource, `${req.reason} (escalation ${req.id})`, req.expiresAt, 'manual', `${req.by} on the host`);
    return { ...base, outcome: 'excepted', expiresAt: req.expiresAt };
  }
  engine.approve(e.resource, 'manual', `approved by ${req.by} on the host (escalation ${req.id}): repair once`);
  const settled = await finishedWithin(engine.idle(), APPROVAL_WAIT_MS);
  const r = engine.results().find((x) => x.id === e.resource);
  if (!settled || !r) return { ...base, outcome: 'pending' };
  return { ...base, outcome: r.outcome, ...(r.error ? { error: r.error } : {}) };
}

/** A one-shot agent: manages the cached active version of `name` (nothing is recorded for it: it is not an activation). */
async function manageCached(t: ControlTarget, name: string): Promise<void> {
  const stored = t.store.getActive().find((b) => b.name === name);
  if (!stored) throw new HsError('HS_NOT_FOUND', `baseline '${name}' is not active in this agent's cache`);
  const b = parseBaseline(stored.text, { file: `cache:${stored.name}@${stored.version}`, sources: stored.sources });
  const baseline = { name: b.name, version: stored.version };
  // The engine is not running: nothing is armed or looked at until the decision asks for it.
  await t.agent.engine.setResources(declsOf(b, t.agent).map((decl) => ({ decl, baseline })), 'manual');
}

function declsOf(b: Baseline, agent: Agent): ResourceDecl[] {
  const out: ResourceDecl[] = [...b.resources];
  for (const kind of registry.values()) out.push(...(kind.derive?.(b, agent.host.settings) ?? []));
  return out;
}

async function forgetBaseline(t: ControlTarget, req: Extract<ControlRequest, { op: 'forget' }>): Promise<ForgetResult> {
  const held = t.store.storedVersions(req.name);
  if (held.length === 0) throw new HsError('HS_NOT_FOUND', `no baseline '${req.name}' in this agent's cache (homeostat-agent status lists the active ones)`);
  const describe = (h: (typeof held)[number]): string =>
    `${h.origin === 'local' ? 'locally' : `from the controller (signing key ${h.signedBy ?? '?'})`} (version ${h.versions.join(', ')}${h.active ? `; v${h.active} active` : '; none active'})`;
  const chosen = req.source ? held.filter((h) => h.origin === req.source) : held;
  if (chosen.length === 0) throw new HsError('HS_NOT_FOUND', `baseline '${req.name}' is not held from ${req.source === 'local' ? 'this host' : 'a controller'}; it is held ${held.map(describe).join('; ')}`);
  const origins = new Set(chosen.map((h) => h.origin));
  if (origins.size > 1) {
    throw new HsError('HS_CONFLICT', `baseline '${req.name}' is held ${chosen.map(describe).join(' and ')}: pass --source local or --source controller to say which to forget`);
  }
  const origin = chosen[0]?.origin ?? 'local';
  const active = chosen.find((h) => h.active !== null)?.active ?? null;
  if (t.live && active !== null) await t.stopEnforcing?.(origin, req.name);
  const versions = t.store.transaction(() => {
    const dropped = chosen.flatMap((h) => t.store.forgetBaseline(origin, h.signedBy, req.name));
    // The link's own signed copy goes too, or its next start would report the name as held (its replay guard stays).
    if (origin === 'controller') dropCachedBaseline(t.store, req.name);
    return dropped;
  });
  const detail = `${req.name}${active !== null ? ` v${active}` : ''} (${origin}) forgotten by ${req.by} on the host: ${active !== null ? 'no longer enforced, ' : ''}cached version(s) ${versions.join(', ')} dropped`;
  record(t, 'baseline_forgotten', detail, { name: req.name, version: active ?? versions.at(-1) ?? 0 });
  const stillConfigured = origin === 'local' ? t.configuredFiles.filter((f) => nameOf(f) === req.name) : [];
  return { name: req.name, origin, by: req.by, versions, wasActive: active !== null, stillConfigured };
}

function nameOf(file: string): string | undefined {
  try {
    return loadBaselineFile(file).name;
  } catch {
    return undefined;
  }
}

function record(t: ControlTarget, event: AuditEvent, detail: string, baseline: { name: string; version: number }): void {
  t.agent.engine.recordAgentEvent(event, 'manual', detail, baseline);
}
