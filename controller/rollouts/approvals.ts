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
 * Where a host stands on its escalations. An escalation is found by agent and resource once the controller opened it
 * (an escalation decided before the rollout saw the resource escalate is an older one and does not count). Resolves
 * each pending entry's id in place; `waitMs` bounds how long a resource may stay without any escalation opened for it.
 */
export async function hostDecisions(store: ControllerStore, h: RolloutHostRecord, now: number, waitMs: number): Promise<{ decisions: HostDecisions; changed: boolean }> {
  let changed = false;
  const waiting: number[] = [];
  const next: RolloutEscalation[] = [];
  for (const x of h.escalations) {
    let rec: EscalationRecord | undefined;
    if (x.id === null) {
      const latest = await store.findLatestEscalation(h.agentId, x.resource);
      if (latest && (latest.status === 'open' || (latest.decidedAt ?? 0) >= x.seenAt)) {
        changed = true;
        // A repeat of an escalation already listed (the same drift escalated again while it is open) is listed once.
        if (h.escalations.some((y) => y.id === latest.id) || next.some((y) => y.id === latest.id)) continue;
        rec = latest;
        next.push({ ...x, id: latest.id });
      } else {
        if (now - x.seenAt > waitMs) {
          return { decisions: { state: 'failed', reason: `escalated ${x.resource}, but no escalation was opened for it at the controller within ${Math.round(waitMs / 1000)} s` }, changed };
        }
        next.push(x);
        continue;
      }
    } else {
      next.push(x);
      rec = await store.getEscalation(x.id);
      // Removed by retention: it was decided and carried out long ago.
      if (!rec) continue;
    }
    if (rec.outcome === 'failed') return { decisions: { state: 'failed', reason: `the decision on escalation ${rec.id} (${rec.resource}) failed on the agent: ${rec.outcomeError ?? 'no reason given'}` }, changed };
    if (rec.status === 'open' || rec.outcome === 'pending') waiting.push(rec.id);
  }
  if (changed) h.escalations = next;
  if (waiting.length > 0 || h.escalations.some((x) => x.id === null)) return { decisions: { state: 'waiting', ids: waiting }, changed };
  return { decisions: { state: 'done' }, changed };
}
