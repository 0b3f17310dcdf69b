// homeostatctl's rollouts: start one in waves (or all at once), list them, follow one (waves counted from 1, and when a
// soak ends), and the operator's pause, resume, abort and rollback.
import type { Command } from 'commander';
import { HsError } from '../../lib/errors.js';
import { parseLabels } from '../../lib/labels.js';
import { parseWave } from '../rollouts/waves.js';
import { client, out, type Row } from './helpers.js';
import { clockTime, oneLine, span, table, time } from './format.js';

/** `--waves 1host,10%,50,100` as the API takes it. */
export function parseWaves(text: string): (number | { hosts: number })[] {
  const parts = text.split(',').map((w) => w.trim());
  if (parts.some((w) => w === '')) throw new HsError('HS_CONFIG', `--waves ${JSON.stringify(text)}: an empty wave; write e.g. 1host,10%,50%,100%`);
  return parts.map((w, i) => parseWave(w, `--waves (wave ${i + 1})`));
}

function head(r: Row, now: number): string {
  const what = r.document === 'policy' ? `policy ${String(r.policy)}` : String(r.baseline);
  const wave = Number(r.currentWave) > 0 ? `wave ${String(r.currentWave)}/${String(r.waveCount)}` : `${String(r.waveCount)} wave${r.waveCount === 1 ? '' : 's'}`;
  const soak = typeof r.soakingUntil === 'number' ? `, soaking until ${clockTime(r.soakingUntil)} (${span(r.soakingUntil - now)} more)` : '';
  const counts = [
    `${String(r.converged)}/${String(r.targeted)} converged`,
    `${String(r.failed)} failed`,
    `${String(r.offline)} offline`,
    ...(Number(r.awaitingDecision) > 0 ? [`${String(r.awaitingDecision)} awaiting decisions`] : []),
    ...(Number(r.unsupported) > 0 ? [`${String(r.unsupported)} unsupported`] : []),
  ];
  return `rollout ${String(r.id)}: ${what} v${String(r.version)}${r.rollback ? ' (rollback)' : ''} ${String(r.state)}, ${wave}${soak} — ${counts.join(', ')}`;
}

export function rolloutText(r: Row, now = Date.now()): string {
  const hosts = Array.isArray(r.hosts) ? (r.hosts as Row[]) : [];
  const bad = hosts.filter((h) => h.reason).map((h) => `  ${String(h.agentId)}  wave ${String(h.wave)}  ${String(h.status)}${h.rolledBack ? ' (rolled back)' : ''}: ${oneLine(h.reason, 300)}`);
  const escalations = (Array.isArray(r.escalations) ? (r.escalations as Row[]) : [])
    .filter((e) => e.status === 'open' || e.status === 'not yet opened')
    .map((e) => `  escalation ${e.id === null ? '(not yet opened)' : String(e.id)}  ${String(e.agentId)}  ${String(e.resource)}: see it with \`homeostatctl escalations show ${e.id === null ? 'ID' : String(e.id)}\`, decide with \`homeostatctl approve|reject ID\``);
  return [head(r, now), ...(r.reason ? [`  ${oneLine(r.reason, 600)}`] : []), ...bad, ...escalations].join('\n');
}

export function addRolloutCommands(p: Command): void {
  const rollout = p.command('rollout').description('staged rollouts of baselines and policies in waves with health gates');
  rollout
    .command('start <name> <version>')
    .description('roll a baseline (or, with --policy, a policy) version out in waves; an unhealthy wave rolls back')
    .option('--policy', 'NAME is a policy, not a baseline')
    .option('--waves <list>', 'cumulative waves: N% (or N) of the targeted hosts, Nhost(s) or hosts:N for a number of hosts; the last reaches everyone', '1host,10%,50%,100%')
    .option('--max-failed <n>', 'failed hosts tolerated before the gate stops the rollout', '0')
    .option('--soak <duration>', 'how long a converged wave must stay healthy before the next starts', '60s')
    .option('--ack-timeout <duration>', 'how long a host may take to acknowledge and converge', '300s')
    .option('--canary <labels>', 'hosts with these labels go first, e.g. canary=yes')
    .option('--on-failure <what>', 'rollback or pause', 'rollback')
    .option('--on-escalation <what>', "pause (the wave waits for the operator's decisions on what the new version escalates), ignore, or fail", 'pause')
    .option('--all-at-once', 'every host at once, ungated (ignores the options above)')
    .option('--supersede', 'replace a rollout of this baseline that is still running or paused')
    .action(async (name: string, version: string, o: { policy?: boolean; waves: string; maxFailed: string; soak: string; ackTimeout: string; canary?: string; onFailure: string; onEscalation: string; allAtOnce?: boolean; supersede?: boolean }, cmd: Command) => {
      const v = Number(version);
      if (!Number.isSafeInteger(v) || v < 1) throw new HsError('HS_CONFIG', `version ${JSON.stringify(version)}: expected a version number (homeostatctl ${o.policy ? 'policy' : 'baseline'} list shows them)`);
      const maxFailed = Number(o.maxFailed);
      if (!Number.isSafeInteger(maxFailed) || maxFailed < 0) throw new HsError('HS_CONFIG', `--max-failed ${JSON.stringify(o.maxFailed)}: expected a whole number, 0 or more`);
      const strategy = o.allAtOnce
        ? 'all-at-once'
        : {
            waves: parseWaves(o.waves),
            gate: { maxFailedHosts: maxFailed, soakSeconds: o.soak, ackTimeoutSeconds: o.ackTimeout },
            ...(o.canary ? { canary: { matchLabels: parseLabels(o.canary) } } : {}),
            onFailure: o.onFailure,
            onEscalation: o.onEscalation,
          };
      const { api, json } = client(cmd);
      const r = await api.call<Row>('POST', '/api/v1/rollouts', { [o.policy ? 'policy' : 'baseline']: name, version: v, strategy, supersede: o.supersede ?? false });
      out(json, r, () => rolloutText(r));
    });
  rollout
    .command('list')
    .description('every rollout, the newest first')
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const rows = (await api.call<Row[]>('GET', '/api/v1/rollouts')).sort((a, b) => Number(b.id) - Number(a.id));
      out(json, rows, () =>
        rows.length === 0
          ? 'no rollouts yet (homeostatctl rollout start NAME VERSION)'
          : table([
              ['ID', 'DOCUMENT', 'VERSION', 'FROM', 'STATE', 'WAVE', 'STARTED', 'FINISHED', 'REASON'],
              ...rows.map((r) => [
                String(r.id),
                r.document === 'policy' ? `policy ${String(r.policy)}` : String(r.baseline),
                `${String(r.version)}${r.rollback ? ' (rollback)' : ''}`,
                r.previousVersion === null ? '-' : String(r.previousVersion),
                String(r.state),
                r.strategy === 'all-at-once' ? 'all at once' : Number(r.currentWave) > 0 ? String(r.currentWave) : '-',
                time(r.createdAt),
                time(r.finishedAt),
                oneLine(r.reason ?? '', 120),
              ]),
            ]),
      );
    });
  rollout
    .command('status <id>')
    .description('one rollout: its wave, when a soak ends, hosts that failed or wait, escalations to decide')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const r = await api.call<Row>('GET', `/api/v1/rollouts/${encodeURIComponent(id)}`);
      out(json, r, () => rolloutText(r));
    });
  for (const action of ['pause', 'resume', 'abort', 'rollback'] as const) {
    rollout
      .command(`${action} <id>`)
      .description(
        { pause: 'stop starting new waves', resume: 'continue a paused rollout', abort: 'stop for good, leaving hosts on the version they have', rollback: 'send the hosts that got the version back to the previous one' }[action],
      )
      .action(async (id: string, _o: unknown, cmd: Command) => {
        const { api, json } = client(cmd);
        const r = await api.call<Row>('POST', `/api/v1/rollouts/${encodeURIComponent(id)}/${action}`, { by: process.env.USER ?? 'operator' });
        out(json, r, () => rolloutText(r));
      });
  }
}
