// Plans: ask every agent a baseline version targets what applying it would change (computed by each agent from its real
// state, changing nothing), collect the answers within a deadline, and summarise them fleet-wide. Each request is signed
// for one agent and expires with the plan, so only this controller can make an agent look, and each look is in its audit.
import { HsError } from '../lib/errors.js';
import type { Clock } from '../lib/clock.js';
import { selectorMatches } from '../lib/labels.js';
import type { Logger } from '../lib/log.js';
import { signInDomain, type SigningKey } from '../lib/signing.js';
import { encodeBaselineDoc, encodePlanDoc, type PlanResult, type PlannedChange, type SignedDoc } from '../proto/codec.js';
import { baselineDocOf, type BaselineService } from './baselines.js';
import type { AgentGateway } from './gateway/gateway.js';
import type { ControllerStore, PlanRecord } from './store/types.js';

export const DEFAULT_PLAN_TIMEOUT_MS = 15_000;
/** A plan request stays valid this long past the plan's deadline (clock differences between controller and hosts). */
const PLAN_VALIDITY_SLACK_MS = 60_000;

export type PlanHostStatus = 'planned' | 'offline' | 'no_answer' | 'unsupported' | 'error';

export interface PlanHost {
  agentId: string;
  hostname: string | null;
  status: PlanHostStatus;
  currentVersion: number | null;
  resources: number;
  changes: PlannedChange[];
  error: string | null;
}

interface Waiting {
  expect: Set<string>;
  answers: Map<string, PlanResult>;
  done: () => void;
}

const VERB: Record<PlannedChange['action'], string> = { create: 'created', change: 'changes', remove: 'removed', unknown: 'unreadable' };

export class PlanService {
  private readonly waiting = new Map<string, Waiting>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly deps: { store: ControllerStore; baselines: BaselineService; gateway: AgentGateway; clock: Clock; log: Logger; signingKey: SigningKey },
  ) {
    this.unsubscribe = deps.gateway.onReport((rep) => {
      if (rep.kind !== 'planned') return;
      const w = this.waiting.get(rep.result.planId);
      if (!w || !w.expect.has(rep.agentId)) return;
      w.answers.set(rep.agentId, rep.result);
      if (w.answers.size === w.expect.size) w.done();
    });
  }

  close(): void {
    this.unsubscribe();
    for (const w of this.waiting.values()) w.done();
  }

  /** Asks the connected targeted agents, waits for every answer or the deadline, stores and returns the plan. */
  async create(name: string, version: number, timeoutMs = DEFAULT_PLAN_TIMEOUT_MS, requestedBy = 'operator'): Promise<PlanRecord> {
    const { store, baselines, gateway, clock } = this.deps;
    const v = await baselines.version(name, version);
    const agents = (await store.listAgents()).filter((a) => a.revokedAt === null && selectorMatches(v.selector ?? undefined, a.labels));
    const plan = await store.addPlan({ baseline: name, version, createdAt: clock.now(), state: 'collecting', result: {} });
    const planId = String(plan.id);
    const now = clock.now();
    // The planned version travels inside a signed plan, never as a signed BaselineDoc: it cannot be replayed as an assignment.
    const doc = encodeBaselineDoc(baselineDocOf(v, { issuedAt: now, expiresAt: now, rollback: false }));
    const sign = (agentId: string): SignedDoc => {
      const payload = Buffer.from(encodePlanDoc({ planId, agentId, baseline: doc, issuedAt: now, expiresAt: now + timeoutMs + PLAN_VALIDITY_SLACK_MS, requestedBy }));
      return { payload, signature: signInDomain(this.deps.signingKey, 'plan', payload), keyId: this.deps.signingKey.keyId };
    };
    const asked = new Set<string>();
    const unsupported = new Set<string>();
    for (const a of agents) {
      const s = gateway.session(a.id);
      if (!s) continue;
      // Agents before protocol 3 would answer an unsigned request: they are not asked (upgrade them).
      if (s.protocolVersion < 3) {
        unsupported.add(a.id);
        continue;
      }
      asked.add(a.id);
    }
    const w: Waiting = { expect: asked, answers: new Map(), done: () => undefined };
    const finished = new Promise<void>((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      w.done = () => {
        clearTimeout(t);
        resolve();
      };
    });
    this.waiting.set(planId, w);
    for (const id of asked) gateway.session(id)?.send({ planRequest: { planId, signed: sign(id) } });
    if (asked.size === 0) w.done();
    await finished;
    this.waiting.delete(planId);
    const hosts: PlanHost[] = agents.map((a) => {
      const base = { agentId: a.id, hostname: a.facts?.hostname ?? null, currentVersion: null, resources: 0, changes: [], error: null };
      const ans = w.answers.get(a.id);
      if (ans) {
        if (!ans.ok) return { ...base, status: 'error', error: ans.error };
        return { ...base, status: 'planned', currentVersion: ans.currentVersion || null, resources: ans.resources, changes: ans.changes };
      }
      return { ...base, status: unsupported.has(a.id) ? 'unsupported' : asked.has(a.id) ? 'no_answer' : 'offline' };
    });
    const result = { ...summarise(hosts), hosts };
    await store.updatePlan(plan.id, { state: 'done', result });
    this.deps.log.info({ plan: plan.id, baseline: name, version, hosts: hosts.length, answered: w.answers.size }, 'plan done');
    await store.addControllerEvent({ time: clock.now(), kind: 'plan_created', rolloutId: null, baseline: name, detail: { plan: plan.id, version, summary: result.summary } });
    return { ...plan, state: 'done', result };
  }
}

/** Per resource, how many hosts would see each kind of change, and one line for humans. */
export function summarise(hosts: PlanHost[]): { summary: string; targeted: number; answered: number; changing: number; byStatus: Record<string, number>; resources: Record<string, unknown>[] } {
  const byStatus: Record<string, number> = {};
  for (const h of hosts) byStatus[h.status] = (byStatus[h.status] ?? 0) + 1;
  const per = new Map<string, Record<PlannedChange['action'], number> & { hosts: string[] }>();
  for (const h of hosts) {
    for (const c of h.changes) {
      const e = per.get(c.resource) ?? { create: 0, change: 0, remove: 0, unknown: 0, hosts: [] };
      e[c.action]++;
      if (e.hosts.length < 100) e.hosts.push(h.agentId);
      per.set(c.resource, e);
    }
  }
  const resources = [...per.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([resource, e]) => ({ resource, ...e }));
  const parts: string[] = [];
  for (const r of resources) {
    for (const action of ['create', 'change', 'remove', 'unknown'] as const) {
      if (r[action] > 0) parts.push(`${r.resource} ${VERB[action]} on ${r[action]}`);
    }
  }
  const planned = byStatus.planned ?? 0;
  const tail = (['offline', 'no_answer', 'unsupported', 'error'] as const)
    .filter((s) => (byStatus[s] ?? 0) > 0)
    .map((s) => `${byStatus[s] ?? 0} host${byStatus[s] === 1 ? '' : 's'} ${s.replace('_', ' ')}`);
  const changing = hosts.filter((h) => h.changes.length > 0).length;
  const head = `${hosts.length} host${hosts.length === 1 ? '' : 's'}: ${parts.length ? parts.join(', ') : 'no changes'}`;
  const unchanged = planned - changing > 0 && parts.length ? `; unchanged on ${planned - changing}` : '';
  return { summary: `${head}${unchanged}${tail.length ? `; ${tail.join(', ')}` : ''}`, targeted: hosts.length, answered: planned, changing, byStatus, resources };
}

export function planNotFound(id: number): HsError {
  return new HsError('HS_NOT_FOUND', `no plan ${id}`);
}
