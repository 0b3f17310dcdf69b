#!/usr/bin/env node
// Entry point of `homeostatctl`: every operator action of the controller API, human-readable by default, `--json` for scripts.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { loadBaselineFile } from '../../lib/baseline/index.js';
import { BaselineInvalidError, errorMessage } from '../../lib/errors.js';
import { parseLabels } from '../../lib/labels.js';
import { VERSION } from '../../lib/version.js';
import { ApiClient } from './client.js';

interface Globals {
  server: string;
  token?: string;
  tokenFile?: string;
  ca?: string;
  fingerprint?: string;
  json?: boolean;
}

type Row = Record<string, unknown>;

function client(p: Command): { api: ApiClient; json: boolean } {
  const g = p.optsWithGlobals<Globals>();
  const token = g.token ?? process.env.HOMEOSTAT_ADMIN_TOKEN ?? (g.tokenFile ? readFileSync(g.tokenFile, 'utf8').trim() : undefined);
  if (!token) throw new Error('no operator token: --token, --token-file or $HOMEOSTAT_ADMIN_TOKEN');
  return {
    api: new ApiClient({ server: g.server, token, ...(g.ca ? { ca: readFileSync(g.ca, 'utf8') } : {}), ...(g.fingerprint ? { fingerprint: g.fingerprint } : {}) }),
    json: g.json ?? false,
  };
}

function out(json: boolean, data: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : `${human()}\n`);
}

const time = (ms: unknown): string => (typeof ms === 'number' && ms > 0 ? new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z') : '-');

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
}

export function program(): Command {
  const p = new Command('homeostatctl')
    .version(VERSION)
    .description('operate a Homeostat controller')
    .option('--server <url>', 'controller base URL', process.env.HOMEOSTAT_SERVER ?? 'https://127.0.0.1:7400')
    .option('--token <token>', 'operator token (default $HOMEOSTAT_ADMIN_TOKEN)')
    .option('--token-file <file>', 'read the operator token from a file (e.g. DATA_DIR/admin.token)')
    .option('--ca <file>', 'trust this certificate (e.g. DATA_DIR/tls.crt)')
    .option('--fingerprint <sha256>', 'trust the certificate with this fingerprint (the last part of an enrollment token)')
    .option('--json', 'one JSON document on stdout');

  const baseline = p.command('baseline').description('baseline versions');
  baseline
    .command('push <file>')
    .description('validate locally, then store a new version (source: files are sent along)')
    .option('--rollout', 'also roll the new version out to every selected agent')
    .action(async (file: string, o: { rollout?: boolean }, cmd: Command) => {
      const { api, json } = client(cmd);
      const b = loadBaselineFile(file);
      const res = await api.call<{ name: string; version: number; created: boolean }>('POST', '/api/v1/baselines', { yaml: b.origin.text, file: path.basename(file), sources: b.origin.sources });
      const rollout = o.rollout ? await api.call<Row>('POST', '/api/v1/rollouts', { baseline: res.name, version: res.version }) : undefined;
      out(json, { ...res, rollout }, () => `${res.name} version ${res.version}${res.created ? '' : ' (unchanged)'}${rollout ? `, rollout ${String(rollout.id)} started` : ''}`);
    });
  baseline
    .command('list')
    .description('names, versions and what is rolled out')
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const rows = await api.call<{ name: string; latest: number; target: { version: number } | null }[]>('GET', '/api/v1/baselines');
      out(json, rows, () => table([['NAME', 'LATEST', 'ROLLED OUT'], ...rows.map((r) => [r.name, String(r.latest), r.target ? String(r.target.version) : '-'])]));
    });
  baseline
    .command('diff <name> <from> <to>')
    .description('unified diff between two versions')
    .action(async (name: string, from: string, to: string, _o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const res = await api.call<{ diff: string }>('GET', `/api/v1/baselines/${encodeURIComponent(name)}/diff?from=${from}&to=${to}`);
      out(json, res, () => res.diff || '(no difference)');
    });

  const rollout = p.command('rollout').description('rollouts');
  const showRollout = (r: Row): string =>
    `rollout ${String(r.id)}: ${String(r.baseline)} v${String(r.version)}${r.rollback ? ' (rollback)' : ''} ${String(r.state)} — ${String(r.acknowledged)}/${String(r.targeted)} acknowledged, ${String(r.rejected)} rejected, ${String(r.pending)} pending`;
  rollout
    .command('start <name> <version>')
    .description('make a version the one selected agents enforce')
    .action(async (name: string, version: string, _o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const r = await api.call<Row>('POST', '/api/v1/rollouts', { baseline: name, version: Number(version) });
      out(json, r, () => showRollout(r));
    });
  rollout
    .command('status <id>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const r = await api.call<Row>('GET', `/api/v1/rollouts/${id}`);
      out(json, r, () => showRollout(r));
    });

  const agents = p
    .command('agents')
    .description('the fleet')
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const rows = await api.call<{ id: string; connected: boolean; labels: Record<string, string>; lastSeen: number; baselines: { name: string; version: number }[]; outboxPending: number; revokedAt: number | null }[]>('GET', '/api/v1/agents');
      out(json, rows, () =>
        table([
          ['ID', 'HOST', 'STATE', 'LAST SEEN', 'BASELINES', 'OUTBOX'],
          ...rows.map((a) => [a.id, a.labels.hostname ?? '-', a.revokedAt ? 'revoked' : a.connected ? 'connected' : 'offline', time(a.lastSeen), a.baselines.map((b) => `${b.name}@${b.version}`).join(',') || '-', String(a.outboxPending)]),
        ]),
      );
    });
  agents
    .command('revoke <id>')
    .description('refuse this agent from now on')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const r = await api.call<Row>('POST', `/api/v1/agents/${encodeURIComponent(id)}/revoke`);
      out(json, r, () => `${id} revoked`);
    });

  p.command('events')
    .description('fleet events')
    .option('--agent <id>')
    .option('--resource <id>')
    .option('--kind <event>')
    .option('--since <time>', 'epoch ms, ISO time or a duration back (10m)')
    .option('--limit <n>', 'at most n', '100')
    .action(async (o: { agent?: string; resource?: string; kind?: string; since?: string; limit: string }, cmd: Command) => {
      const { api, json } = client(cmd);
      const q = new URLSearchParams({ limit: o.limit, ...(o.agent ? { agent: o.agent } : {}), ...(o.resource ? { resource: o.resource } : {}), ...(o.kind ? { kind: o.kind } : {}), ...(o.since ? { since: o.since } : {}) });
      const rows = await api.call<{ time: number; agentId: string; seq: number; event: string; resource: string | null; detail: string | null }[]>('GET', `/api/v1/events?${q}`);
      out(json, rows, () => table([['TIME', 'AGENT', 'SEQ', 'EVENT', 'RESOURCE'], ...rows.map((e) => [time(e.time), e.agentId, String(e.seq), e.event, e.resource ?? '-'])]));
    });

  p.command('escalations')
    .description('escalations (open ones by default)')
    .option('--status <status>', 'open | approved | rejected | resolved | all', 'open')
    .action(async (o: { status: string }, cmd: Command) => {
      const { api, json } = client(cmd);
      const rows = await api.call<{ id: number; agentId: string; resource: string; kind: string; openedAt: number; status: string; repeats: number }[]>('GET', `/api/v1/escalations${o.status === 'all' ? '' : `?status=${o.status}`}`);
      out(json, rows, () => table([['ID', 'AGENT', 'RESOURCE', 'KIND', 'OPENED', 'STATUS'], ...rows.map((e) => [String(e.id), e.agentId, e.resource, e.kind, time(e.openedAt), e.status])]));
    });
  p.command('approve <id>')
    .description('the agent repairs the drift, once')
    .option('--reason <text>', 'why', '')
    .action(async (id: string, o: { reason: string }, cmd: Command) => {
      const { api, json } = client(cmd);
      const r = await api.call<Row>('POST', `/api/v1/escalations/${id}/approve`, { reason: o.reason, by: process.env.USER ?? 'operator' });
      out(json, r, () => `escalation ${id} approved: ${String(r.agentId)} will repair ${String(r.resource)}`);
    });
  p.command('reject <id>')
    .description('accept the drift as an exception until it expires')
    .requiredOption('--reason <text>', 'why the drift is acceptable (recorded)')
    .option('--expires <duration>', 'how long the exception lasts', '7d')
    .action(async (id: string, o: { reason: string; expires: string }, cmd: Command) => {
      const { api, json } = client(cmd);
      const r = await api.call<Row>('POST', `/api/v1/escalations/${id}/reject`, { reason: o.reason, expiresIn: o.expires, by: process.env.USER ?? 'operator' });
      out(json, r, () => `escalation ${id} rejected: ${String(r.resource)} left as is until ${time(r.expiresAt)}`);
    });

  const token = p.command('token').description('enrollment tokens');
  token
    .command('create')
    .description('a join token for new agents (shown once)')
    .option('--ttl <duration>', 'valid for', '24h')
    .option('--max-uses <n>', 'how many agents may enroll with it')
    .option('--labels <k=v,...>', 'labels every agent enrolled with it gets')
    .option('--description <text>')
    .action(async (o: { ttl: string; maxUses?: string; labels?: string; description?: string }, cmd: Command) => {
      const { api, json } = client(cmd);
      const r = await api.call<{ token: string; expiresAt: number }>('POST', '/api/v1/enrollment-tokens', {
        ttl: o.ttl,
        ...(o.maxUses ? { maxUses: Number(o.maxUses) } : {}),
        ...(o.labels ? { labels: parseLabels(o.labels) } : {}),
        ...(o.description ? { description: o.description } : {}),
      });
      out(json, r, () => `${r.token}\n(expires ${time(r.expiresAt)}; agents: homeostat-agent run --controller URL --token TOKEN)`);
    });
  return p;
}

program()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    process.stderr.write(`homeostatctl: ${err instanceof BaselineInvalidError ? err.describe() : errorMessage(err)}\n`);
    process.exitCode = 1;
  });
