// homeostatctl's view of the fleet: agents (the list, one in full, labels, revocation), the events they sent, and the
// join tokens that enroll new ones.
import type { Command } from 'commander';
import { parseLabelAllowance, parseLabels } from '../../lib/labels.js';
import { agentId, agentLabel, client, out, type AgentSummary } from './helpers.js';
import type { EscalationView } from './escalations.js';
import { count, eventName, resourceIds, timeFilter } from './filters.js';
import { fields, indented, oneLine, table, time } from './format.js';

interface Held {
  name: string;
  version: number;
  at?: number;
  error?: string | null;
}

interface AgentView extends AgentSummary {
  connected: boolean;
  connectedAt: number | null;
  remote: string | null;
  labels: Record<string, string>;
  facts: { hostname?: string; os?: string; osRelease?: string; kernel?: string; arch?: string } | null;
  lastSeen: number;
  enrolledAt: number;
  revokedAt: number | null;
  protocolVersion: number;
  agentVersion: string;
  outboxPending: number;
  outboxDropped: number;
  enforcementPaused: boolean;
  lastError: string | null;
  baselines: Held[];
  rejected: Held[];
  policies: Held[];
  policiesRejected: Held[];
}

interface EventView {
  id: number;
  time: number;
  agentId: string;
  seq: number;
  event: string;
  resource: string | null;
  trigger: string | null;
  baseline: string | null;
  version: number | null;
  detail: string | null;
}

const held = (rows: Held[], refused: Held[]): string =>
  [...rows.map((b) => `${b.name}@${b.version}`), ...refused.map((b) => `${b.name}@${b.version} refused`)].join(', ') || '-';
const state = (a: AgentView): string => (a.revokedAt ? 'revoked' : a.connected ? 'connected' : 'offline');
const labelText = (labels: Record<string, string>): string => Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(', ') || '-';

function eventsTable(rows: EventView[], withAgent: boolean): string {
  return table([
    ['TIME', ...(withAgent ? ['AGENT'] : []), 'SEQ', 'EVENT', 'RESOURCE', 'TRIGGER', 'VERSION', 'DETAIL'],
    ...rows.map((e) => [
      time(e.time),
      ...(withAgent ? [e.agentId] : []),
      String(e.seq),
      e.event,
      e.resource ?? '-',
      e.trigger ?? '-',
      e.baseline ? `${e.baseline}${e.version === null ? '' : ` v${e.version}`}` : '-',
      oneLine(e.detail ?? '', 200),
    ]),
  ]);
}

function agentText(a: AgentView, sources: { token: Record<string, string>; requested: Record<string, string>; operator: Record<string, string> } | undefined, open: EscalationView[], recent: EventView[]): string {
  const status = a.revokedAt
    ? `revoked ${time(a.revokedAt)}`
    : a.connected
      ? `connected since ${time(a.connectedAt)}${a.remote ? ` from ${a.remote}` : ''}`
      : `offline, last seen ${time(a.lastSeen)}`;
  const f = a.facts;
  const from = sources
    ? Object.entries({ operator: sources.operator, token: sources.token, requested: sources.requested })
        .filter(([, l]) => Object.keys(l).length > 0)
        .map(([k, l]) => `${k}: ${labelText(l)}`)
        .join('; ')
    : '';
  const lines = [
    `agent ${agentLabel(a, a.id)}: ${status}`,
    fields([
      ['labels', `${labelText(a.labels)}${from ? ` (${from})` : ''}`],
      ['host', f ? [f.os && `${f.os}${f.osRelease ? ` ${f.osRelease}` : ''}`, f.kernel && `kernel ${f.kernel}`, f.arch].filter(Boolean).join(', ') || '-' : '-'],
      ['agent', `${a.agentVersion || '?'}, protocol ${a.protocolVersion}`],
      ['enrolled', time(a.enrolledAt)],
      ['baselines', a.baselines.map((b) => `${b.name} v${b.version}${b.at ? ` since ${time(b.at)}` : ''}`).join(', ') || 'none acknowledged'],
      ['refused', a.rejected.length > 0 ? a.rejected.map((b) => `${b.name} v${b.version}: ${oneLine(b.error ?? '', 300)}`).join('; ') : undefined],
      ['policies', a.policies.map((b) => `${b.name} v${b.version}`).join(', ') || undefined],
      ['refused policies', a.policiesRejected.length > 0 ? a.policiesRejected.map((b) => `${b.name} v${b.version}: ${oneLine(b.error ?? '', 300)}`).join('; ') : undefined],
      ['outbox', `${a.outboxPending} event${a.outboxPending === 1 ? '' : 's'} waiting to be sent${a.outboxDropped > 0 ? `, ${a.outboxDropped} dropped when it was full` : ''}`],
      ['enforcement', a.enforcementPaused ? 'PAUSED: a signature it holds is past its expiry (it detects and reports, changes nothing)' : 'running'],
      ['last error', a.lastError ? oneLine(a.lastError, 300) : undefined],
    ]),
  ];
  lines.push(open.length === 0 ? 'open escalations: none' : `open escalations (${open.length}):`);
  if (open.length > 0) lines.push(indented(table([['ID', 'RESOURCE', 'KIND', 'LAST SEEN', 'REPEATS'], ...open.map((e) => [String(e.id), e.resource, e.kind, time(e.lastSeenAt ?? e.openedAt), String(e.repeats)])])));
  lines.push(recent.length === 0 ? 'recent events: none' : `recent events (the latest ${recent.length}, newest first):`);
  if (recent.length > 0) lines.push(indented(eventsTable(recent, false)));
  return lines.join('\n');
}

export function addFleetCommands(p: Command): void {
  const agents = p
    .command('agents')
    .description('the fleet: every enrolled agent; `agents show ID` shows one in full')
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const rows = await api.call<AgentView[]>('GET', '/api/v1/agents');
      out(json, rows, () =>
        rows.length === 0
          ? 'no agents enrolled yet (homeostatctl token create makes a join token for them)'
          : table([
              ['ID', 'HOST', 'STATE', 'LAST SEEN', 'BASELINES', 'OUTBOX'],
              ...rows.map((a) => [a.id, a.facts?.hostname ?? '-', state(a), time(a.lastSeen), held(a.baselines, a.rejected), String(a.outboxPending)]),
            ]),
      );
    });
  agents
    .command('show <agent>')
    .description('one agent in full (by id or hostname): connection, labels and where they come from, baselines held and refused, outbox, open escalations, recent events')
    .action(async (which: string, _o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const id = await agentId(api, which);
      const enc = encodeURIComponent(id);
      const [a, labels, open, recent] = await Promise.all([
        api.call<AgentView>('GET', `/api/v1/agents/${enc}`),
        api.call<{ sources: { token: Record<string, string>; requested: Record<string, string>; operator: Record<string, string> } }>('GET', `/api/v1/agents/${enc}/labels`),
        api.call<EscalationView[]>('GET', `/api/v1/escalations?status=open&agent=${enc}`),
        api.call<EventView[]>('GET', `/api/v1/events?agent=${enc}&order=desc&limit=10`),
      ]);
      out(json, { ...a, labelSources: labels.sources, openEscalations: open, recentEvents: recent }, () => agentText(a, labels.sources, open, recent));
    });
  agents
    .command('label <agent> <labels>')
    .description("set an agent's operator labels (k=v,...; '' clears them): they win over the token's and the agent's own")
    .action(async (which: string, labels: string, _o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const id = await agentId(api, which);
      const r = await api.call<{ labels: Record<string, string> }>('PUT', `/api/v1/agents/${encodeURIComponent(id)}/labels`, { labels: parseLabels(labels) });
      out(json, r, () => `${id} labels: ${Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(',') || 'none'}`);
    });
  agents
    .command('revoke <agent>')
    .description('refuse this agent (by id or hostname) from now on')
    .action(async (which: string, _o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const id = await agentId(api, which);
      const r = await api.call<Record<string, unknown>>('POST', `/api/v1/agents/${encodeURIComponent(id)}/revoke`);
      out(json, r, () => `${id} revoked`);
    });

  p.command('events')
    .description('what the agents recorded, newest first (--tail: the latest, oldest first)')
    .option('--agent <agent>', 'only this agent (its id or hostname)')
    .option('--resource <id>', 'only this resource: file:/etc/motd (a bare path means its file or directory), service:nginx, sysctl:net.ipv4.ip_forward')
    .option('--event <name>', 'only this event (drift_detected, repaired, escalated, ...)')
    .option('--kind <name>', 'the same as --event')
    .option('--since <time>', 'from this time: a duration back (10m, 2h, 7d), an ISO time, or epoch ms')
    .option('--until <time>', 'up to this time, in the same forms')
    .option('--limit <n>', 'at most n events: the latest n in the window', '100')
    .option('--tail', 'print the latest events oldest first, the newest last (as tail does)')
    .action(async (o: { agent?: string; resource?: string; event?: string; kind?: string; since?: string; until?: string; limit: string; tail?: boolean }, cmd: Command) => {
      const { api, json } = client(cmd);
      if (o.event !== undefined && o.kind !== undefined && o.event !== o.kind) throw new Error('give --event or --kind, not both');
      const name = o.event ?? o.kind;
      const q = new URLSearchParams({ order: 'desc', limit: String(count(o.limit, '--limit', 10_000)) });
      if (name !== undefined) q.set('kind', eventName(name, o.event !== undefined ? '--event' : '--kind'));
      for (const r of o.resource === undefined ? [] : resourceIds(o.resource)) q.append('resource', r);
      if (o.since !== undefined) q.set('since', timeFilter(o.since, '--since'));
      if (o.until !== undefined) q.set('until', timeFilter(o.until, '--until'));
      if (o.agent !== undefined) q.set('agent', await agentId(api, o.agent));
      const newest = await api.call<EventView[]>('GET', `/api/v1/events?${q}`);
      const rows = o.tail ? [...newest].reverse() : newest;
      const filters = [...q.entries()].filter(([k]) => k !== 'order' && k !== 'limit').map(([k, v]) => `${k} ${v}`);
      out(json, rows, () => (rows.length === 0 ? `no events${filters.length > 0 ? ` match ${filters.join(', ')}` : ' yet'}` : eventsTable(rows, true)));
    });

  const token = p.command('token').description('enrollment tokens');
  token
    .command('create')
    .description('a join token for new agents, shown once: the token alone on stdout, when it expires on stderr')
    .option('--ttl <duration>', 'valid for', '24h')
    .option('--max-uses <n>', 'how many agents may enroll with it (default: no limit)')
    .option('--labels <k=v,...>', 'labels every agent enrolled with it gets')
    .option('--allow-labels <patterns>', 'labels agents may ask for with --labels: key, key=value or key=pattern with * (e.g. role,zone=eu-*)')
    .option('--description <text>')
    .action(async (o: { ttl: string; maxUses?: string; labels?: string; allowLabels?: string; description?: string }, cmd: Command) => {
      const { api, json } = client(cmd);
      const r = await api.call<{ token: string; expiresAt: number }>('POST', '/api/v1/enrollment-tokens', {
        ttl: o.ttl,
        ...(o.maxUses ? { maxUses: count(o.maxUses, '--max-uses', Number.MAX_SAFE_INTEGER) } : {}),
        ...(o.labels ? { labels: parseLabels(o.labels) } : {}),
        ...(o.allowLabels ? { allowLabels: parseLabelAllowance(o.allowLabels) } : {}),
        ...(o.description ? { description: o.description } : {}),
      });
      // The token alone on stdout, so TOKEN=$(homeostatctl token create) holds just the token; the hint goes to stderr.
      out(json, r, () => r.token);
      if (!json) process.stderr.write(`(expires ${time(r.expiresAt)}; on each host: homeostat-agent run --controller URL --token TOKEN)\n`);
    });
}
