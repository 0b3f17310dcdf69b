// homeostatctl's baselines and policies: push (validated locally first, with the agent's own validator), list, diff,
// and plans of what a version would change.
import path from 'node:path';
import type { Command } from 'commander';
import { loadBaselineFile } from '../../lib/baseline/index.js';
import { loadPolicyFile } from '../../lib/policy/index.js';
import { client, out, type Row } from './helpers.js';
import { indented, table } from './format.js';

export function addDocumentCommands(p: Command): void {
  const baseline = p.command('baseline').description('baseline versions');
  baseline
    .command('push <file>')
    .description('validate locally, then store a new version (source: files are sent along)')
    .option('--rollout', 'also roll the new version out (default waves; see rollout start for others)')
    .action(async (file: string, o: { rollout?: boolean }, cmd: Command) => {
      const b = loadBaselineFile(file);
      const { api, json } = client(cmd);
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
      out(json, rows, () =>
        rows.length === 0 ? 'no baselines yet (homeostatctl baseline push FILE)' : table([['NAME', 'LATEST', 'ROLLED OUT'], ...rows.map((r) => [r.name, String(r.latest), r.target ? String(r.target.version) : '-'])]),
      );
    });
  baseline
    .command('diff <name> <from> <to>')
    .description('unified diff between two versions')
    .action(async (name: string, from: string, to: string, _o: unknown, cmd: Command) => {
      const { api, json } = client(cmd);
      const res = await api.call<{ diff: string }>('GET', `/api/v1/baselines/${encodeURIComponent(name)}/diff?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
      out(json, res, () => res.diff || '(no difference)');
    });

  const policy = p.command('policy').description('policy versions (governance rules the agents decide drift by)');
  policy
    .command('push <file>')
    .description('validate locally, then store a new version')
    .option('--rollout', 'also roll the new version out (default waves)')
    .action(async (file: string, o: { rollout?: boolean }, cmd: Command) => {
      const doc = loadPolicyFile(file);
      const { api, json } = client(cmd);
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
        rows.length === 0
          ? 'no policies yet (homeostatctl policy push FILE)'
          : table([['NAME', 'LATEST', 'ROLLED OUT', 'RULES'], ...rows.map((r) => [r.name, String(r.latest), r.target ? String(r.target.version) : '-', String(r.versions[r.versions.length - 1]?.rules ?? '-')])]),
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

  p.command('plan <name> <version>')
    .description('what a baseline version would change on every targeted host, asked of the agents; changes nothing')
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
            if (o.diff && c.diff) lines.push(indented(c.diff, '    '));
          }
        }
        return lines.join('\n');
      });
    });
}
