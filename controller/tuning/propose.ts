// Proposals from outcomes: the policy changes the fleet's history argues for, each with its rationale, evidence and
// confidence. Pure: what it proposes depends only on the outcomes and the resources operators ever rejected. It never
// proposes to auto-repair (or defer, which ends in a repair) a drift an operator once rejected, nor any critical-risk drift.
import { createHash } from 'node:crypto';
import { CHANGE_KINDS } from '../../lib/policy/index.js';
import { confidence, type Confidence } from '../../lib/tuning/confidence.js';
import type { ProposalKind, ProposalTarget } from '../store/tuning.js';
import { driftWords } from './episodes.js';
import { quantile, rowOf, type OutcomeAcc, type Outcomes, type ResourceKey } from './outcomes.js';

export interface Draft {
  key: string;
  kind: ProposalKind;
  target: ProposalTarget;
  rationale: string;
  evidence: Record<string, unknown>;
  confidence: Confidence;
  /** The rule the change adds to the tuning document (without its description, which names the proposal). */
  rule: Record<string, unknown>;
  window: Record<string, unknown> | null;
}

export interface ProposeOptions {
  /** Resources an operator ever rejected a drift of, on any host. */
  rejectedResources: ReadonlySet<string>;
  /** Operator decisions, all approvals, before auto-repair or defer is proposed. */
  minApprovals?: number;
  /** Rejections, and no approval, before an exception is proposed. */
  minRejections?: number;
}

export const DEFAULT_MIN_APPROVALS = 3;
export const DEFAULT_MIN_REJECTIONS = 2;
const RULE_CHANGES = new Set<string>(CHANGE_KINDS);
/** Shortest and longest grace period proposed for hotfixes. */
const MIN_DEFER_MS = 5 * 60_000;
const MAX_DEFER_MS = 30 * 86_400_000;

/** A pattern that matches exactly this text: `*`, `?` and `\` escaped. */
export function literalPattern(text: string): string {
  return text.replace(/[\\*?]/g, '\\$&');
}

/** `42 s`, `42 min`, `5 h`, `3 d` */
export function durationWords(ms: number): string {
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 2 * 3_600_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < 2 * 86_400_000) return `${Math.round(ms / 3_600_000)} h`;
  return `${Math.round(ms / 86_400_000)} d`;
}

export function proposalKey(kind: ProposalKind, t: ProposalTarget): string {
  return [kind, t.baseline, t.resource, t.change.join(','), t.opponent ?? '', t.schedule?.cron ?? ''].join('\u0000');
}

export function propose(o: Outcomes, opts: ProposeOptions): Draft[] {
  const minApprovals = opts.minApprovals ?? DEFAULT_MIN_APPROVALS;
  const minRejections = opts.minRejections ?? DEFAULT_MIN_REJECTIONS;
  const out: Draft[] = [];
  for (const { key, acc } of o.byResource.values()) {
    // A rule can name only the kinds of change the policy format knows; a drift with others is not proposed for.
    if (key.change.length === 0 || key.change.some((c) => !RULE_CHANGES.has(c))) continue;
    const rejectedEver = acc.rejections > 0 || opts.rejectedResources.has(key.resource);
    const critical = acc.risk === 'critical';
    const evidence = { ...evidenceOf(acc, key), rejectedEver, since: o.since, until: o.until };
    const what = driftWords(key.change, key.resource);
    const decisions = acc.approvals + acc.rejections;
    const ms = [...acc.decisionMs].sort((a, b) => a - b);
    const median = ms.length > 0 ? `, median decision ${durationWords(quantile(ms, 0.5))}` : '';
    const hosts = acc.hosts.size === 1 ? '1 host' : `${acc.hosts.size} hosts`;
    const match = { baseline: key.baseline, resource: literalPattern(key.resource), change: [...key.change] };

    if (acc.approvals >= minApprovals && acc.rejections === 0 && !rejectedEver && !critical && acc.escalations > 0) {
      // Hotfixes: most attributed drifts were made by a person, and operators let them stand a while before the repair.
      const hotfix = acc.attributed > 0 && acc.byPerson * 2 > acc.attributed;
      if (hotfix) {
        const grace = deferText(quantile(ms, 0.75));
        const target: ProposalTarget = { baseline: key.baseline, resource: key.resource, change: [...key.change] };
        out.push({
          key: proposalKey('defer', target),
          kind: 'defer',
          target,
          rationale: `${what}: a person's hotfix in ${acc.byPerson} of ${acc.attributed} attributed drifts, approved ${acc.approvals} of ${decisions} times on ${hosts}${median}; let it stand ${grace}, then repair it unless an operator decides`,
          evidence,
          confidence: acc.confidence(),
          rule: { match, action: { defer: grace } },
          window: null,
        });
      } else {
        const target: ProposalTarget = { baseline: key.baseline, resource: key.resource, change: [...key.change] };
        out.push({
          key: proposalKey('auto-repair', target),
          kind: 'auto-repair',
          target,
          rationale: `${what} approved ${acc.approvals} of ${decisions} times on ${hosts}${median}; repair it without asking`,
          evidence,
          confidence: acc.confidence(),
          rule: { match, action: 'repair' },
          window: null,
        });
      }
    }

    if (acc.rejections >= minRejections && acc.approvals === 0) {
      const target: ProposalTarget = { baseline: key.baseline, resource: key.resource, change: [...key.change] };
      out.push({
        key: proposalKey('exception', target),
        kind: 'exception',
        target,
        rationale: `${what} rejected ${acc.rejections} of ${decisions} times on ${hosts}${median}; keep it as an exception (recorded, never changed), or change the baseline to the state operators keep accepting`,
        evidence,
        // Confidence that leaving it is right: the mirror of auto-repair's.
        confidence: confidence(acc.rejections + acc.recurrences, acc.approvals + acc.held),
        rule: { match, action: 'monitor' },
        window: null,
      });
    }

    const opponent = acc.topOpponents()[0];
    if (opponent && (opponent.actor.exe !== undefined || opponent.actor.unit !== undefined)) {
      const target: ProposalTarget = { baseline: key.baseline, resource: key.resource, change: [...key.change], opponent: opponent.opponent };
      const actor: Record<string, string> = {};
      if (opponent.actor.exe !== undefined) actor.exe = literalPattern(opponent.actor.exe);
      if (opponent.actor.unit !== undefined) actor.unit = literalPattern(opponent.actor.unit);
      out.push({
        key: proposalKey('coordination', target),
        kind: 'coordination',
        target,
        rationale: `${opponent.message} (${what}, on ${opponent.hosts} of ${acc.hosts.size} hosts); coordinate with whoever runs ${opponent.opponent}: until then its changes go to a human at once instead of being fought`,
        evidence: { ...evidence, opponents: acc.topOpponents().map(({ opponent: name, hosts: n, changes, message }) => ({ opponent: name, hosts: n, changes, message })) },
        confidence: confidence(opponent.hosts, acc.hosts.size - opponent.hosts),
        rule: { match: { baseline: key.baseline, resource: literalPattern(key.resource), actor }, action: 'escalate' },
        window: null,
      });
    }

    const schedule = acc.schedule();
    if (schedule && !critical) {
      const w = windowFor(schedule.period, schedule.phaseMs);
      const target: ProposalTarget = { baseline: key.baseline, resource: key.resource, change: [...key.change], schedule: w };
      const name = `w-${createHash('sha256').update(proposalKey('maintenance-window', target)).digest('hex').slice(0, 12)}`;
      out.push({
        key: proposalKey('maintenance-window', target),
        kind: 'maintenance-window',
        target,
        rationale: `${what}: ${schedule.message} on ${schedule.hosts} of ${acc.hosts.size} hosts; a maintenance window ${w.description} lets it happen, and decides it when the window ends`,
        evidence: { ...evidence, schedule },
        confidence: confidence(schedule.onSchedule, schedule.offSchedule),
        rule: { match: { ...match, window: name }, action: { defer: 'end-of-window' } },
        window: { name, cron: w.cron, duration: w.duration, timezone: 'UTC' },
      });
    }
  }
  return out;
}

function evidenceOf(acc: OutcomeAcc, key: ResourceKey): Record<string, unknown> {
  const { confidence: _c, ...row } = rowOf(acc, { baseline: key.baseline, resource: key.resource, change: key.change });
  return { ...row, attributed: acc.attributed, byPerson: acc.byPerson };
}

/** A grace period as a policy writes it: whole minutes (hours past a day), within 5 minutes and 30 days. */
function deferText(ms: number): string {
  const bounded = Math.min(MAX_DEFER_MS, Math.max(MIN_DEFER_MS, ms));
  return bounded >= 86_400_000 ? `${Math.ceil(bounded / 3_600_000)}h` : `${Math.ceil(bounded / 60_000)}m`;
}

/** A window around a schedule: 15 minutes either side of a daily time, 3 minutes either side of an hourly one (UTC). */
function windowFor(period: 'hour' | 'day', phaseMs: number): { cron: string; duration: string; description: string } {
  const margin = period === 'day' ? 15 * 60_000 : 3 * 60_000;
  const P = period === 'day' ? 86_400_000 : 3_600_000;
  const start = Math.floor((((phaseMs - margin) % P) + P) % P / 60_000) * 60_000;
  const end = (start + 2 * margin) % P;
  const hh = (t: number): string => String(Math.floor(t / 3_600_000)).padStart(2, '0');
  const mm = (t: number): string => String(Math.floor((t % 3_600_000) / 60_000)).padStart(2, '0');
  if (period === 'day') {
    return { cron: `${Number(mm(start))} ${Number(hh(start))} * * *`, duration: '30m', description: `${hh(start)}:${mm(start)}–${hh(end)}:${mm(end)} UTC every day` };
  }
  return { cron: `${Number(mm(start))} * * * *`, duration: '6m', description: `:${mm(start)}–:${mm(end)} every hour` };
}
