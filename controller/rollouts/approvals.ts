// Escalations a rollout waits on (onEscalation: pause): which agent events are the new version's own escalations, and
// where a host stands on the operator's decisions: still waiting, done (every escalation decided and carried out, or
// resolved by the agent), or failed (the agent could not carry a decision out, or no escalation was ever opened).
import type { ControllerStore, EscalationRecord, EventRecord, RolloutEscalation, RolloutHostRecord, RolloutRecord } from '../store/types.js';

/**
 * Whether an agent event concerns the rolled-out version: for a baseline, an event naming that baseline (any version, or
 * none); for a policy, an event whose decision names one of that policy's rules.
 */
export function concernsRollout(r: RolloutRecord, e: EventRecord): boolean {
  if (r.document === 'baseline') return e.baseline === null || e.baseline === r.baseline;
  const rule = ruleOf(e.decision);
  return rule !== null && rule.document === r.baseline;
}

/** Whether an `escalated` event was raised by the rolled-out version itself (its own pass, not an older version's). */
export function ownEscalation(r: RolloutRecord, e: EventRecord): boolean {
  if (e.event !== 'escalated' || e.resource === null) return false;
  if (r.document === 'baseline') return e.baseline === r.baseline && e.version === r.version;
  const rule = ruleOf(e.decision);
  return rule !== null && rule.document === r.baseline && rule.version === r.version;
}

/** The rule a decision record names, when it names a policy document's rule. */
function ruleOf(decision: string | null): { document: string; version: number } | null {
  if (decision === null || decision.length > 16 * 1024) return null;
  try {
    const d = JSON.parse(decision) as { rule?: { document?: unknown; version?: unknown } } | null;
    const rule = d?.rule;
    return typeof rule?.document === 'string' && typeof rule.version === 'number' ? { document: rule.document, version: rule.version } : null;
  } catch {
    return null;
  }
}

/** Adds resources to a host's pending escalations; true when one was new. */
export function addEscalations(h: RolloutHostRecord, resources: readonly string[], now: number): boolean {
  let added = false;
  for (const resource of resources) {
    if (h.escalations.some((x) => x.resource === resource && x.id === null)) continue;
    h.escalations = [...h.escalations, { resource, id: null, seenAt: now }];
    added = true;
  }
  return added;
}

export type HostDecisions = { state: 'waiting'; ids: number[] } | { state: 'done' } | { state: 'failed'; reason: string };

/**
 * Where each escalated host of a wave stands on its escalations. An escalation is found by agent and resource once the
 * controller opened it (one decided before the rollout saw the resource escalate is an older one and does not count); the
 * ids found are kept in the host's record (`changed`), then every listed escalation of the wave is read at once. `waitMs`
 * bounds how long a resource may stay without any escalation opened for it.
 */
export async function waveDecisions(
  store: ControllerStore,
  hosts: RolloutHostRecord[],
  now: number,
  waitMs: number,
): Promise<Map<string, { decisions: HostDecisions; changed: boolean }>> {
  const out = new Map<string, { decisions: HostDecisions; changed: boolean }>();
  const settled: RolloutHostRecord[] = [];
  for (const h of hosts) {
    let changed = false;
    let unopened: RolloutEscalation | undefined;
    const next: RolloutEscalation[] = [];
    for (const x of h.escalations) {
      if (x.id !== null) {
        next.push(x);
        continue;
      }
      const latest = await store.findLatestEscalation(h.agentId, x.resource);
      if (latest && (latest.status === 'open' || (latest.decidedAt ?? 0) >= x.seenAt)) {
        changed = true;
        // A repeat of an escalation already listed (the same drift escalated again while it is open) is listed once.
        if (!h.escalations.some((y) => y.id === latest.id) && !next.some((y) => y.id === latest.id)) next.push({ ...x, id: latest.id });
        continue;
      }
      next.push(x);
      if (now - x.seenAt > waitMs) unopened ??= x;
    }
    if (changed) h.escalations = next;
    if (unopened) {
      const reason = `escalated ${unopened.resource}, but no escalation was opened for it at the controller within ${Math.round(waitMs / 1000)} s`;
      out.set(h.agentId, { decisions: { state: 'failed', reason }, changed });
    } else {
      out.set(h.agentId, { decisions: { state: 'done' }, changed });
      settled.push(h);
    }
  }
  const ids = settled.flatMap((h) => h.escalations.flatMap((x) => (x.id === null ? [] : [x.id])));
  const byId = new Map((ids.length > 0 ? await store.getEscalations(ids) : []).map((e): [number, EscalationRecord] => [e.id, e]));
  for (const h of settled) {
    const entry = out.get(h.agentId);
    if (!entry) continue;
    const waiting: number[] = [];
    for (const x of h.escalations) {
      if (x.id === null) continue;
      // Gone from the store: retention removed it, decided and carried out long ago.
      const rec = byId.get(x.id);
      if (!rec) continue;
      if (rec.outcome === 'failed') {
        entry.decisions = { state: 'failed', reason: `the decision on escalation ${rec.id} (${rec.resource}) failed on the agent: ${rec.outcomeError ?? 'no reason given'}` };
        break;
      }
      if (rec.status === 'open' || rec.outcome === 'pending') waiting.push(rec.id);
    }
    if (entry.decisions.state === 'failed') continue;
    if (waiting.length > 0 || h.escalations.some((x) => x.id === null)) entry.decisions = { state: 'waiting', ids: waiting };
  }
  return out;
}
