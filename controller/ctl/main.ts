#!/usr/bin/env node
// Entry point of `homeostatctl`: every operator action of the controller API, human-readable by default, `--json` for scripts.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { loadBaselineFile } from '../../lib/baseline/index.js';
import { loadPolicyFile } from '../../lib/policy/index.js';
import { BaselineInvalidError, errorMessage } from '../../lib/errors.js';
import { exitAfterOutput, guardOutput } from '../../lib/exit.js';
import { parseLabelAllowance, parseLabels } from '../../lib/labels.js';
import { versionLine } from '../../lib/version.js';
import { ApiClient } from './client.js';
import { addTuningCommands } from './tuning.js';

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

// Times come from agents: one a Date cannot hold (past 8.64e15 ms) is printed as the number it is.
const time = (ms: unknown): string =>
  typeof ms !== 'number' || ms <= 0 ? '-' : ms > 8.64e15 || !Number.isFinite(ms) ? String(ms) : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
}

export function program(): Command {
  const p = new Command('homeostatctl')
    .version(versionLine())
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

  const policy = p.command('policy').description('policy versions (governance rules the agents decide drift by)');
  policy
    .command('push <file>')
    .description('validate locally, then store a new version')
    .option('--rollout', 'also roll the new version out to every selected agent')
    .action(async (file: string, o: { rollout?: boolean }, cmd: Command) => {
      const { api, json } = client(cmd);
      const doc = loadPolicyFile(file);
      const res = await api.call<{ name: string; version: number; created: boolean }>('POST', '/api/v1/policies', { yaml: doc.origin.text, file: path.basename(file) });
      const rollout = o.rollout ? await api.call<Row>('POST', '/api/v1/rollouts', { policy: res.name, version: res.version }) : undefined;
      out(json, { ...res, rollout }, () => `policy ${res.name} version ${res.version}${res.created ? '' : ' (unchanged)'}${rollout ? `, rollout ${String(rollout.id)} started` : ''}`);
    });
  policy
    .command('list')
    .description('names, versions and what is rolled out')
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const rows = await api.call<{ name: string; latest: number; target: { version: number } | null; versions: { rules: number }[] }[]>('GET', '/api/v1/policies');
      out(json, rows, () =>
        table([['NAME', 'LATEST', 'ROLLED OUT', 'RULES'], ...rows.map((r) => [r.name, String(r.latest), r.target ? String(r.target.version) : '-', String(r.versions[r.versions.length - 1]?.rules ?? '-')])]),
      );
    });
  policy
    .command('diff <name> <from> <to>')
    .description('unified diff between two versions')
    .action(async (name: string, from: string, to: string, _o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const res = await api.call<{ diff: string }>('GET', `/api/v1/policies/${encodeURIComponent(name)}/diff?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
      out(json, res, () => res.diff || '(no difference)');
    });

  const rollout = p.command('rollout').description('staged rollouts of baselines and policies in waves with health gates');
  const showRollout = (r: Row): string => {
    const what = r.document === 'policy' ? `policy ${String(r.policy)}` : String(r.baseline);
    const head = `rollout ${String(r.id)}: ${what} v${String(r.version)}${r.rollback ? ' (rollback)' : ''} ${String(r.state)}, wave ${Number(r.currentWave) + 1}/${String(r.waveCount)} — ${String(r.converged)}/${String(r.targeted)} converged, ${String(r.failed)} failed, ${String(r.offline)} offline${Number(r.awaitingDecision) > 0 ? `, ${String(r.awaitingDecision)} awaiting decisions` : ''}${Number(r.unsupported) > 0 ? `, ${String(r.unsupported)} unsupported` : ''}`;
    const hosts = Array.isArray(r.hosts) ? (r.hosts as Row[]) : [];
    const bad = hosts.filter((h) => h.reason).map((h) => `  ${String(h.agentId)}  wave ${Number(h.wave) + 1}  ${String(h.status)}${h.rolledBack ? ' (rolled back)' : ''}: ${String(h.reason)}`);
    const escalations = (Array.isArray(r.escalations) ? (r.escalations as Row[]) : [])
      .filter((e) => e.status === 'open' || e.status === 'not yet opened')
      .map((e) => `  escalation ${e.id === null ? '(not yet opened)' : String(e.id)}  ${String(e.agentId)}  ${String(e.resource)}: decide with \`homeostatctl approve|reject ID\``);
    return [head, ...(r.reason ? [`  ${String(r.reason)}`] : []), ...bad, ...escalations].join('\n');
  };
  rollout
    .command('start <name> <version>')
    .description('roll a baseline (or, with --policy, a policy) version out in waves (default 1 host, 10 %, 50 %, 100 %); an unhealthy wave rolls back')
    .option('--policy', 'NAME is a policy, not a baseline')
    .option('--waves <list>', 'cumulative waves, e.g. 1h,10,50,100 (N% of the hosts, or Nh for N hosts)')
    .option('--max-failed <n>', 'failed hosts tolerated before the gate stops the rollout', '0')
    .option('--soak <duration>', 'how long a converged wave must stay healthy, e.g. 60s')
    .option('--ack-timeout <duration>', 'how long a host may take to acknowledge and converge')
    .option('--canary <labels>', 'hosts with these labels go first, e.g. canary=yes')
    .option('--on-failure <what>', 'rollback (default) or pause')
    .option('--on-escalation <what>', "pause (default: the wave waits for the operator's decisions on what the new version escalates), ignore, or fail")
    .option('--all-at-once', 'every host at once, ungated')
    .option('--supersede', 'replace a rollout of this baseline that is still running or paused')
    .action(async (name: string, version: string, o: { policy?: boolean; waves?: string; maxFailed: string; soak?: string; ackTimeout?: string; canary?: string; onFailure?: string; onEscalation?: string; allAtOnce?: boolean; supersede?: boolean }, cmd: Command) => {
      const { api, json } = client(cmd);
      const waves = o.waves?.split(',').map((w) => (/^\d+h$/.test(w.trim()) ? { hosts: Number(w.trim().slice(0, -1)) } : Number(w.replace('%', ''))));
      const strategy = o.allAtOnce
        ? 'all-at-once'
        : {
            ...(waves ? { waves } : {}),
            gate: { maxFailedHosts: Number(o.maxFailed), ...(o.soak ? { soakSeconds: o.soak } : {}), ...(o.ackTimeout ? { ackTimeoutSeconds: o.ackTimeout } : {}) },
            ...(o.canary ? { canary: { matchLabels: parseLabels(o.canary) } } : {}),
            ...(o.onFailure ? { onFailure: o.onFailure } : {}),
            ...(o.onEscalation ? { onEscalation: o.onEscalation } : {}),
          };
      const r = await api.call<Row>('POST', '/api/v1/rollouts', { [o.policy ? 'policy' : 'baseline']: name, version: Number(version), strategy, supersede: o.supersede ?? false });
      out(json, r, () => showRollout(r));
    });
  rollout
    .command('status <id>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const r = await api.call<Row>('GET', `/api/v1/rollouts/${id}`);
      out(json, r, () => showRollout(r));
    });
  for (const action of ['pause', 'resume', 'abort', 'rollback'] as const) {
    rollout
      .command(`${action} <id>`)
      .description(
        { pause: 'stop starting new waves', resume: 'continue a paused rollout', abort: 'stop for good, leaving hosts on the version they have', rollback: 'send the hosts that got the version back to the previous one' }[action],
      )
      .action(async (id: string, _o: unknown, cmd: Command) => {
        const { api, json } = client(cmd);
        const r = await api.call<Row>('POST', `/api/v1/rollouts/${id}/${action}`, {});
        out(json, r, () => showRollout(r));
      });
  }

  p.command('plan <name> <version>')
    .description('what a version would change on every targeted host, asked of the agents; changes nothing')
    .option('--timeout <duration>', 'how long to wait for the agents', '15s')
    .option('--diff', 'show the diffs')
    .action(async (name: string, version: string, o: { timeout: string; diff?: boolean }, cmd: Command) => {
      const { api, json } = client(cmd);
      type PlanHost = { agentId: string; hostname: string | null; status: string; changes: { resource: string; action: string; fields: string[]; diff: string; error: string }[] };
      const r = await api.call<Row & { summary: string; hosts: PlanHost[] }>('POST', '/api/v1/plans', { baseline: name, version: Number(version), timeout: o.timeout });
      out(json, r, () => {
        const lines = [`plan ${String(r.id)}: ${r.summary}`];
        for (const h of r.hosts) {
          if (h.changes.length === 0 && h.status === 'planned') continue;
          lines.push(`${h.hostname ?? h.agentId} (${h.agentId}) ${h.status}`);
          for (const c of h.changes) {
            lines.push(`  ${c.action.padEnd(7)} ${c.resource}${c.fields.length ? `  ${c.fields.join(', ')}` : ''}${c.error ? `  ${c.error}` : ''}`);
            if (o.diff && c.diff) lines.push(c.diff.replace(/^/gm, '    ').trimEnd());
          }
        }
        return lines.join('\n');
      });
    });

  const agents = p
    .command('agents')
    .description('the fleet')
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const rows = await api.call<{ id: string; connected: boolean; labels: Record<string, string>; facts: { hostname?: string } | null; lastSeen: number; baselines: { name: string; version: number }[]; outboxPending: number; revokedAt: number | null }[]>('GET', '/api/v1/agents');
      out(json, rows, () =>
        table([
          ['ID', 'HOST', 'STATE', 'LAST SEEN', 'BASELINES', 'OUTBOX'],
          ...rows.map((a) => [a.id, a.facts?.hostname ?? '-', a.revokedAt ? 'revoked' : a.connected ? 'connected' : 'offline', time(a.lastSeen), a.baselines.map((b) => `${b.name}@${b.version}`).join(',') || '-', String(a.outboxPending)]),
        ]),
      );
    });
  agents
    .command('label <id> <labels>')
    .description("set an agent's operator labels (k=v,...; '' clears them): they win over the token's and the agent's own")
    .action(async (id: string, labels: string, _o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const r = await api.call<{ labels: Record<string, string> }>('PUT', `/api/v1/agents/${encodeURIComponent(id)}/labels`, { labels: parseLabels(labels) });
      out(json, r, () => `${id} labels: ${Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(',') || 'none'}`);
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
      const rows = await api.call<{ id: number; agentId: string; resource: string; kind: string; openedAt: number; status: string; repeats: number; actorLabel: string | null; opponent: string | null }[]>(
        'GET',
        `/api/v1/escalations${o.status === 'all' ? '' : `?status=${encodeURIComponent(o.status)}`}`,
      );
      out(json, rows, () =>
        table([
          ['ID', 'AGENT', 'RESOURCE', 'KIND', 'OPENED', 'STATUS', 'ACTOR'],
          ...rows.map((e) => [String(e.id), e.agentId, e.resource, e.kind, time(e.openedAt), e.status, e.opponent ? `fighting ${e.opponent}` : (e.actorLabel ?? '-')]),
        ]),
      );
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
    .option('--allow-labels <patterns>', 'labels agents may ask for with --labels: key, key=value or key=pattern with * (e.g. role,zone=eu-*)')
    .option('--description <text>')
    .action(async (o: { ttl: string; maxUses?: string; labels?: string; allowLabels?: string; description?: string }, cmd: Command) => {
      const { api, json } = client(cmd);
      const r = await api.call<{ token: string; expiresAt: number }>('POST', '/api/v1/enrollment-tokens', {
        ttl: o.ttl,
        ...(o.maxUses ? { maxUses: Number(o.maxUses) } : {}),
        ...(o.labels ? { labels: parseLabels(o.labels) } : {}),
        ...(o.allowLabels ? { allowLabels: parseLabelAllowance(o.allowLabels) } : {}),
        ...(o.description ? { description: o.description } : {}),
      });
      out(json, r, () => `${r.token}\n(expires ${time(r.expiresAt)}; agents: homeostat-agent run --controller URL --token TOKEN)`);
    });
  addTuningCommands(p, { client, out, table, time });
  return p;
}

guardOutput();
program()
  .parseAsync(process.argv)
  .then(
    () => exitAfterOutput(Number(process.exitCode ?? 0)),
    (err: unknown) => {
      process.stderr.write(`homeostatctl: ${err instanceof BaselineInvalidError ? err.describe() : errorMessage(err)}\n`);
      exitAfterOutput(1);
    },
  );
