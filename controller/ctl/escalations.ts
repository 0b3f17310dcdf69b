// homeostatctl's escalations: the list, one escalation in full (what an approval would repair: the latest observed
// state and diff, who made the drift, every sighting), and the operator's approve and reject.
import type { Command } from 'commander';
import { agentId, agentLabel, client, out, type AgentSummary } from './helpers.js';
import { resourceIds } from './filters.js';
import { fields, indented, oneLine, stateText, table, time } from './format.js';

interface Sighting {
  time: number;
  event: string;
  trigger: string | null;
  baseline: string | null;
  version: number | null;
  detail: string | null;
  actor: string | null;
}

export interface EscalationView {
  id: number;
  agentId: string;
  resource: string;
  baseline: string | null;
  version: number | null;
  kind: string;
  detail: string | null;
  actor: Record<string, unknown> | null;
  actorLabel: string | null;
  decision: { action?: string; cause?: string; reason?: string; rule?: Record<string, unknown> } | null;
  opponent: string | null;
  observed: unknown;
  desired: unknown;
  diff: string | null;
  openedAt: number;
  lastSeenAt?: number;
  repeats: number;
  history?: Sighting[];
  status: string;
  decidedAt: number | null;
  decidedBy: string | null;
  reason: string | null;
  expiresAt: number | null;
  outcome: string | null;
  outcomeError: string | null;
}

const STATUSES = ['open', 'approved', 'rejected', 'resolved', 'all'];
const versionText = (baseline: string | null, version: number | null): string => (baseline === null ? '-' : `${baseline}${version === null ? '' : ` v${version}`}`);

/** Who made the drift, with what the agent knows of them. */
function actorText(e: EscalationView): string | undefined {
  if (e.opponent) return `fighting ${e.opponent}`;
  const a = e.actor;
  if (!a) return undefined;
  const parts = [e.actorLabel ?? (typeof a.exe === 'string' ? a.exe : 'unknown')];
  const user = typeof a.user === 'string' ? a.user : undefined;
  if (user !== undefined || typeof a.uid === 'number') parts.push(`user ${user ?? ''}${typeof a.uid === 'number' ? `${user ? ' ' : ''}(uid ${a.uid})` : ''}`);
  if (typeof a.loginUser === 'string' && a.loginUser !== user) parts.push(`logged in as ${a.loginUser}`);
  if (typeof a.pid === 'number') parts.push(`pid ${a.pid}`);
  if (typeof a.source === 'string') parts.push(`known from ${a.source}`);
  return oneLine(parts.join(', '), 300);
}

function decisionText(e: EscalationView): string | undefined {
  if (e.status === 'open') return undefined;
  if (e.status === 'resolved') return `resolved ${time(e.decidedAt)}: ${e.reason ?? 'the agent repaired it'}`;
  const verb = e.status === 'approved' ? 'approved' : 'rejected';
  const until = e.status === 'rejected' && e.expiresAt ? `, drift accepted until ${time(e.expiresAt)}` : '';
  const outcome = e.outcome === 'failed' ? `; the agent could not carry it out: ${e.outcomeError ?? 'no reason given'}` : e.outcome === 'pending' ? '; the agent has not carried it out yet' : e.outcome === 'done' ? '; carried out by the agent' : '';
  return oneLine(`${verb} by ${e.decidedBy ?? '?'} ${time(e.decidedAt)}${e.reason ? `: ${e.reason}` : ''}${until}${outcome}`, 600);
}

/** One escalation for a person deciding it: the latest state first, the diff once, then every sighting. */
export function escalationText(e: EscalationView, agent: AgentSummary | undefined): string {
  const history = e.history ?? [];
  const first = history[0];
  const opened = first && (first.version !== e.version || first.baseline !== e.baseline) ? ` (opened under ${versionText(first.baseline, first.version)})` : '';
  const lines = [
    `escalation ${e.id}: ${e.resource} on ${agentLabel(agent, e.agentId)}, ${e.status}`,
    fields([
      ['baseline', `${versionText(e.baseline, e.version)}${opened}`],
      ['kind', `${e.kind}${e.detail ? `: ${oneLine(e.detail, 300)}` : ''}`],
      ['opened', time(e.openedAt)],
      ['last seen', `${time(e.lastSeenAt ?? e.openedAt)}${e.repeats > 0 ? `, ${e.repeats} repeat${e.repeats === 1 ? '' : 's'} since it opened` : ', once'}`],
      ['actor', actorText(e) ?? 'unknown'],
      ['rule', e.decision?.reason ? oneLine(e.decision.reason, 300) : undefined],
      ['observed', stateText(e.observed)],
      ['desired', stateText(e.desired)],
      ['decision', decisionText(e)],
    ]),
  ];
  if (e.diff) lines.push('diff (observed -> desired):', indented(e.diff, '  '));
  if (history.length > 0) {
    const shown = history.length < e.repeats + 1 ? `the first and the latest ${history.length - 1} of ${e.repeats + 1}` : `${history.length}`;
    lines.push(`sightings (${shown}):`);
    lines.push(
      indented(
        table([
          ['TIME', 'EVENT', 'TRIGGER', 'VERSION', 'ACTOR', 'DETAIL'],
          ...history.map((h) => [time(h.time), h.event, h.trigger ?? '-', versionText(h.baseline, h.version), h.actor ?? '-', oneLine(h.detail ?? '', 120)]),
        ]),
      ),
    );
  }
  if (e.status === 'open') lines.push(`decide: homeostatctl approve ${e.id} (the agent repairs it once) | homeostatctl reject ${e.id} --reason TEXT [--expires 7d]`);
  return lines.join('\n');
}

export function addEscalationCommands(p: Command): void {
  const escalations = p
    .command('escalations')
    .description('escalations waiting for a decision (or, with --status, decided ones); `escalations show ID` shows one in full')
    .option('--status <status>', `${STATUSES.join(' | ')}`, 'open')
    .option('--agent <id>', 'only this agent (its id or hostname)')
    .option('--resource <id>', 'only this resource (file:/etc/motd, or a path; service:nginx, sysctl:net.ipv4.ip_forward)')
    .action(async (o: { status: string; agent?: string; resource?: string }, cmd: Command) => {
      const { api, json } = client(cmd);
      if (!STATUSES.includes(o.status)) throw new Error(`--status ${o.status}: expected one of ${STATUSES.join(', ')}`);
      const resources = o.resource === undefined ? undefined : resourceIds(o.resource);
      const agent = o.agent === undefined ? undefined : await agentId(api, o.agent);
      const q = new URLSearchParams({ ...(o.status === 'all' ? {} : { status: o.status }), ...(agent ? { agent } : {}) });
      const rows = (await api.call<EscalationView[]>('GET', `/api/v1/escalations${q.size > 0 ? `?${q}` : ''}`)).filter((e) => resources === undefined || resources.includes(e.resource));
      out(json, rows, () =>
        rows.length === 0
          ? `no ${o.status === 'all' ? '' : `${o.status} `}escalations${agent ? ` of ${agent}` : ''}${resources ? ` for ${resources.join(' or ')}` : ''}`
          : table([
              ['ID', 'AGENT', 'RESOURCE', 'KIND', 'VERSION', 'OPENED', 'LAST SEEN', 'REPEATS', 'STATUS', 'ACTOR'],
              ...rows.map((e) => [String(e.id), e.agentId, e.resource, e.kind, versionText(e.baseline, e.version), time(e.openedAt), time(e.lastSeenAt ?? e.openedAt), String(e.repeats), e.status, e.opponent ? `fighting ${e.opponent}` : (e.actorLabel ?? '-')]),
            ]),
      );
    });
  escalations
    .command('show <id>')
    .description('one escalation in full: the latest observed state and diff, who made the drift, its version, and every sighting')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const e = await api.call<EscalationView>('GET', `/api/v1/escalations/${encodeURIComponent(id)}`);
      const agent = await api.call<AgentSummary>('GET', `/api/v1/agents/${encodeURIComponent(e.agentId)}`).catch(() => undefined);
      out(json, e, () => escalationText(e, agent));
    });

  p.command('approve <id>')
    .description('the agent repairs the drift once, back to its baseline (an escalation whose drift is gone is refused)')
    .option('--reason <text>', 'why (recorded)', '')
    .action(async (id: string, o: { reason: string }, cmd: Command) => {
      const { api, json } = client(cmd);
      const r = await api.call<EscalationView>('POST', `/api/v1/escalations/${encodeURIComponent(id)}/approve`, { reason: o.reason, by: process.env.USER ?? 'operator' });
      out(json, r, () => `escalation ${id} approved: ${r.agentId} repairs ${r.resource} once, back to ${versionText(r.baseline, r.version)}; \`homeostatctl escalations show ${id}\` shows when it is done`);
    });
  p.command('reject <id>')
    .description('accept the drift as an exception until it expires, then it is enforced again')
    .requiredOption('--reason <text>', 'why the drift is acceptable (required, recorded)')
    .option('--expires <duration>', 'how long the exception lasts', '7d')
    .action(async (id: string, o: { reason: string; expires: string }, cmd: Command) => {
      const { api, json } = client(cmd);
      const r = await api.call<EscalationView>('POST', `/api/v1/escalations/${encodeURIComponent(id)}/reject`, { reason: o.reason, expiresIn: o.expires, by: process.env.USER ?? 'operator' });
      out(json, r, () => `escalation ${id} rejected: ${r.resource} on ${r.agentId} left as it is until ${time(r.expiresAt)}, then enforced again`);
    });
}
