// A rollout as the API shows it: named for what it rolls out, its waves (counted from 1) and hosts counted by status,
// when a soak ends, the escalations the new version raised with where each stands, and its steps. Pure: the engine
// reads the records, this shapes them.
import type { ControllerEventRecord, EscalationRecord, RolloutHostRecord, RolloutHostStatus, RolloutRecord } from '../store/types.js';
import { soakEnd } from './waves.js';

/** Escalations listed per rollout, at most. */
const MAX_LISTED = 1000;

/** The escalations a rollout lists: the first MAX_LISTED its hosts' new version raised. */
export function listedEscalations(hosts: RolloutHostRecord[]): { agentId: string; resource: string; id: number | null }[] {
  return hosts.flatMap((h) => h.escalations.map((x) => ({ agentId: h.agentId, resource: x.resource, id: x.id }))).slice(0, MAX_LISTED);
}

export function rolloutView(
  r: RolloutRecord,
  hosts: RolloutHostRecord[],
  steps: ControllerEventRecord[],
  escalations: EscalationRecord[],
  opts: { hosts: boolean; now: number },
): Record<string, unknown> {
  const count = (pred: (h: RolloutHostRecord) => boolean): number => hosts.reduce((n, h) => n + (pred(h) ? 1 : 0), 0);
  const waveCount = hosts.reduce((m, h) => Math.max(m, h.wave + 1), 0);
  const waves = Array.from({ length: waveCount }, (_, i) => {
    const in_ = hosts.filter((h) => h.wave === i);
    const by: Partial<Record<RolloutHostStatus, number>> = {};
    for (const h of in_) by[h.status] = (by[h.status] ?? 0) + 1;
    return { wave: i + 1, hosts: in_.length, state: i < r.currentWave ? 'done' : i === r.currentWave ? r.state : 'pending', ...by };
  });
  // The records count waves from 0 (-1 before the first); people, and so the API, from 1 (0 before the first).
  const soakingUntil = r.state === 'running' && r.currentWave >= 0 ? soakEnd(r, hosts.filter((h) => h.wave === r.currentWave), opts.now) : undefined;
  const known = new Map(escalations.map((e) => [e.id, e]));
  const { signed: _signed, baseline: name, ...rest } = r;
  return {
    ...rest,
    // Named for what it rolls out: {"baseline": NAME} or {"policy": NAME}.
    [r.document]: name,
    currentWave: r.currentWave + 1,
    waveCount,
    // While the current wave has settled and must stay healthy before the next one starts.
    soakingUntil: soakingUntil !== undefined && soakingUntil > opts.now ? soakingUntil : null,
    targeted: hosts.length,
    acknowledged: count((h) => h.status === 'acknowledged' || h.status === 'converged'),
    converged: count((h) => h.status === 'converged'),
    failed: count((h) => h.status === 'failed'),
    offline: count((h) => h.status === 'offline'),
    pending: count((h) => h.status === 'waiting' || h.status === 'sent' || h.status === 'offline'),
    rejected: count((h) => h.status === 'failed' && (h.reason ?? '').startsWith('rejected')),
    rolledBack: count((h) => h.rolledBack),
    awaitingDecision: count((h) => h.status === 'escalated'),
    unsupported: count((h) => h.status === 'unsupported'),
    // What the new version escalated, with the ids operators decide (POST /api/v1/escalations/:id/approve).
    escalations: listedEscalations(hosts).map((x) => {
      const e = x.id === null ? undefined : known.get(x.id);
      return { ...x, status: e?.status ?? (x.id === null ? 'not yet opened' : 'deleted'), outcome: e?.outcome ?? null, detail: e?.detail ?? null };
    }),
    waves,
    ...(opts.hosts ? { hosts: hosts.map(({ rolloutId: _r, ...h }) => ({ ...h, wave: h.wave + 1 })) } : {}),
    steps: steps.map((e) => ({ time: e.time, kind: e.kind, ...e.detail, ...(typeof e.detail.wave === 'number' ? { wave: e.detail.wave + 1 } : {}) })),
  };
}
