// homeostatctl's tuning commands: outcomes, proposals (refresh, show, accept, reject, revert), backtests of a policy file
// or a proposal, and the autotune setting.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { ApiClient } from './client.js';

export interface CtlHelpers {
  client(cmd: Command): { api: ApiClient; json: boolean };
  out(json: boolean, data: unknown, human: () => string): void;
  table(rows: string[][]): string;
  time(ms: unknown): string;
}

type Row = Record<string, unknown>;
interface Confidence {
  mean: number;
  low: number;
  high: number;
  n: number;
}
interface Backtest {
  drifts: number;
  escalationsBefore: number;
  escalationsAfter: number;
  autoRepairsBefore: number;
  autoRepairsAfter: number;
  deferralsAfter: number;
  overriddenRejections: number;
  criticalAutoRepaired: number;
  transitions: Record<string, number>;
  affected: number;
  events: { time: number; agentId: string; resource: string; before: string; after: string; rule: string; overriddenRejection?: boolean; criticalAutoRepaired?: boolean }[];
  eventsTruncated: boolean;
}
interface Proposal {
  id: number;
  kind: string;
  state: string;
  target: { baseline: string; resource: string; change: string[]; opponent?: string };
  rationale: string;
  confidence: Confidence;
  backtest: Backtest | null;
  autotune: { eligible: boolean; reasons: string[] };
  change: { rule: unknown; window: unknown };
  decidedBy: string | null;
  applied: { name: string; version: number } | null;
}

const conf = (c: Confidence): string => `${c.mean.toFixed(2)} [${c.low.toFixed(2)}-${c.high.toFixed(2)}] n=${c.n}`;
const minutes = (ms: number): string => (ms < 60_000 ? `${Math.round(ms / 1000)}s` : `${Math.round(ms / 60_000)}m`);

function backtestLines(b: Backtest, time: (ms: unknown) => string, events = 10): string[] {
  const lines = [
    `drifts replayed ${b.drifts}: escalations ${b.escalationsBefore} -> ${b.escalationsAfter}, auto-repairs ${b.autoRepairsBefore} -> ${b.autoRepairsAfter}, deferred ${b.deferralsAfter}`,
    `operator rejections overridden ${b.overriddenRejections}, critical-risk drifts auto-repaired ${b.criticalAutoRepaired}`,
  ];
  const moves = Object.entries(b.transitions).map(([t, n]) => `${t.replace('->', ' -> ')} ${n}`);
  if (moves.length > 0) lines.push(`decided differently: ${moves.join(', ')}`);
  for (const e of b.events.slice(0, events)) {
    const flag = e.overriddenRejection ? '  OVERRIDES A REJECTION' : e.criticalAutoRepaired ? '  CRITICAL' : '';
    lines.push(`  ${time(e.time)}  ${e.agentId}  ${e.resource}  ${e.before} -> ${e.after}  (${e.rule})${flag}`);
  }
  if (b.affected > Math.min(events, b.events.length)) lines.push(`  ... ${b.affected - Math.min(events, b.events.length)} more`);
  return lines;
}

function proposalLines(p: Proposal, time: (ms: unknown) => string): string[] {
  const head = `proposal ${p.id} (${p.kind}, ${p.state}${p.decidedBy ? ` by ${p.decidedBy}` : ''}${p.applied ? `, in ${p.applied.name} v${p.applied.version}` : ''}): ${p.rationale}`;
  const lines = [head, `confidence ${conf(p.confidence)}`];
  lines.push(p.autotune.eligible ? 'autotune: within its bounds' : `autotune: not applied automatically: ${p.autotune.reasons.join('; ')}`);
  lines.push(`change: ${JSON.stringify(p.change.rule)}${p.change.window ? ` with window ${JSON.stringify(p.change.window)}` : ''}`);
  if (p.backtest) lines.push(...backtestLines(p.backtest, time, 5).map((l) => `backtest: ${l}`));
  return lines;
}

export function addTuningCommands(p: Command, h: CtlHelpers): void {
  p.command('outcomes')
    .description('what the fleet history says about each kind of drift, with the confidence that auto-repair is right')
    .option('--group-by <what>', 'resource | rule | actor', 'resource')
    .option('--since <time>', 'epoch ms, ISO time or a duration back (30d)')
    .option('--until <time>')
    .option('--window <duration>', 'a repair held when the drift did not come back within this long')
    .option('--limit <n>', 'at most n rows', '50')
    .action(async (o: { groupBy: string; since?: string; until?: string; window?: string; limit: string }, cmd: Command) => {
      const { api, json } = h.client(cmd);
      const q = new URLSearchParams({ groupBy: o.groupBy, limit: o.limit, ...(o.since ? { since: o.since } : {}), ...(o.until ? { until: o.until } : {}), ...(o.window ? { window: o.window } : {}) });
      const r = await api.call<{ rows: (Row & { confidence: Confidence; timeToDecision: { medianMs: number } | null })[] }>('GET', `/api/v1/outcomes?${q}`);
      h.out(json, r, () =>
        h.table([
          [o.groupBy === 'resource' ? 'RESOURCE' : o.groupBy.toUpperCase(), ...(o.groupBy === 'resource' ? ['CHANGE'] : []), 'DRIFTS', 'ESCALATED', 'APPROVED', 'REJECTED', 'DECIDED IN', 'AUTO', 'HELD', 'RECURRED', 'FIGHTS', 'CONFIDENCE'],
          ...r.rows.map((x) => [
            String(x.resource ?? x.rule ?? x.actor),
            ...(o.groupBy === 'resource' ? [(x.change as string[]).join(',')] : []),
            String(x.drifts),
            String(x.escalations),
            String(x.approvals),
            String(x.rejections),
            x.timeToDecision ? minutes(x.timeToDecision.medianMs) : '-',
            String(x.autoRepairs),
            String(x.held),
            String(x.recurrences),
            String(x.fights),
            conf(x.confidence),
          ]),
        ]),
      );
    });

  p.command('proposals')
    .description('policy changes the history argues for (open ones by default)')
    .option('--state <state>', 'open | accepted | rejected | reverted | withdrawn | all', 'open')
    .option('--refresh', 'compute them again now (with autotune bounded, applies what its bounds allow)')
    .action(async (o: { state: string; refresh?: boolean }, cmd: Command) => {
      const { api, json } = h.client(cmd);
      const all = o.refresh ? await api.call<Proposal[]>('POST', '/api/v1/proposals/refresh', { by: process.env.USER ?? 'operator' }) : await api.call<Proposal[]>('GET', '/api/v1/proposals');
      const rows = o.state === 'all' ? all : all.filter((x) => x.state === o.state);
      h.out(json, rows, () =>
        rows.length === 0
          ? `no ${o.state === 'all' ? '' : `${o.state} `}proposals`
          : rows
              .map((x) => [
                `${x.id}  ${x.kind}  ${x.state}  confidence ${conf(x.confidence)}  autotune ${x.autotune.eligible ? 'yes' : 'no'}`,
                `    ${x.rationale}`,
                ...(x.backtest ? [`    backtest: escalations ${x.backtest.escalationsBefore} -> ${x.backtest.escalationsAfter}, auto-repairs ${x.backtest.autoRepairsBefore} -> ${x.backtest.autoRepairsAfter}, rejections overridden ${x.backtest.overriddenRejections}, critical auto-repaired ${x.backtest.criticalAutoRepaired}`] : []),
              ].join('\n'))
              .join('\n'),
      );
    });

  const proposal = p.command('proposal').description('one proposal: show it, accept, reject or revert it');
  proposal
    .command('show <id>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = h.client(cmd);
      const r = await api.call<Proposal>('GET', `/api/v1/proposals/${encodeURIComponent(id)}`);
      h.out(json, r, () => proposalLines(r, h.time).join('\n'));
    });
  for (const action of ['accept', 'reject', 'revert'] as const) {
    proposal
      .command(`${action} <id>`)
      .description(
        {
          accept: 'add its rule to the tuning policy: a new version, rolled out',
          reject: 'do not make this change (it is not proposed again)',
          revert: 'take an accepted change out again: a new version without its rule',
        }[action],
      )
      .option('--reason <text>', 'why (recorded)', '')
      .action(async (id: string, o: { reason: string }, cmd: Command) => {
        const { api, json } = h.client(cmd);
        const r = await api.call<Proposal>('POST', `/api/v1/proposals/${encodeURIComponent(id)}/${action}`, { reason: o.reason, by: process.env.USER ?? 'operator' });
        h.out(json, r, () => proposalLines(r, h.time)[0] ?? '');
      });
  }

  p.command('backtest')
    .description('replay the recorded drifts under a policy file or a proposal, and compare with what the hosts did')
    .option('--policy <file>', 'a policy document (YAML)')
    .option('--proposal <id>', 'a proposal, as if accepted')
    .option('--since <time>', 'epoch ms, ISO time or a duration back (30d)')
    .option('--until <time>')
    .option('--events <n>', 'affected drifts to list', '20')
    .action(async (o: { policy?: string; proposal?: string; since?: string; until?: string; events: string }, cmd: Command) => {
      const { api, json } = h.client(cmd);
      if ((o.policy === undefined) === (o.proposal === undefined)) throw new Error('give --policy FILE or --proposal ID');
      const body = {
        ...(o.policy ? { policy: readFileSync(o.policy, 'utf8') } : {}),
        ...(o.proposal ? { proposal: Number(o.proposal) } : {}),
        ...(o.since ? { since: o.since } : {}),
        ...(o.until ? { until: o.until } : {}),
        maxEvents: Number(o.events),
      };
      const r = await api.call<Backtest>('POST', '/api/v1/backtest', body);
      h.out(json, r, () => backtestLines(r, h.time, Number(o.events)).join('\n'));
    });

  p.command('autotune [mode]')
    .description('show bounded autotuning, or set it: off | bounded')
    .option('--min-confidence <n>', 'lower end of the credible interval a proposal needs, 0.5 to below 1')
    .option('--webhook <url>', "told of every automatic change ('none' for no webhook)")
    .action(async (mode: string | undefined, o: { minConfidence?: string; webhook?: string }, cmd: Command) => {
      const { api, json } = h.client(cmd);
      const patch = {
        ...(mode ? { mode } : {}),
        ...(o.minConfidence ? { minConfidence: Number(o.minConfidence) } : {}),
        ...(o.webhook ? { webhook: o.webhook === 'none' ? null : o.webhook } : {}),
      };
      const r =
        Object.keys(patch).length > 0
          ? await api.call<Row>('PUT', '/api/v1/settings/autotune', { ...patch, by: process.env.USER ?? 'operator' })
          : await api.call<Row>('GET', '/api/v1/settings/autotune');
      h.out(json, r, () => `autotune ${String(r.mode)}, minimum confidence ${String(r.minConfidence)}, webhook ${r.webhook === null ? 'none' : String(r.webhook)}; proposals every ${String(r.refreshInterval)} over ${String(r.lookback)}${r.updatedBy ? ` (set by ${String(r.updatedBy)} ${h.time(r.updatedAt)})` : ''}`);
    });
}
