// `homeostat-agent check`: one-shot read of every resource against its baseline; changes nothing, records nothing.
import { loadBaselineFiles } from '../../lib/baseline/index.js';
import { silentLogger } from '../../lib/log.js';
import { composeAgent } from '../compose.js';
import { loadConfig, type CommonFlags } from '../config.js';
import type { ResourceResult } from '../engine/engine.js';
import { EXIT, printJson, println, reportError, requireBaselines } from './output.js';

export async function checkCommand(flags: CommonFlags & { json?: boolean }): Promise<number> {
  const json = flags.json ?? false;
  try {
    const config = loadConfig(flags);
    const baselines = loadBaselineFiles(requireBaselines(config.baselines));
    const agent = composeAgent({ settings: config.settings, log: silentLogger });
    await agent.activate(baselines, { origin: 'local' });
    const results = await agent.engine.check();
    const drifted = results.filter((r) => r.outcome === 'drifted');
    const failed = results.filter((r) => r.outcome === 'failed');
    if (json) {
      printJson({ compliant: drifted.length === 0 && failed.length === 0, summary: summary(results), resources: results });
    } else {
      for (const r of [...drifted, ...failed]) println(describe(r));
      println(`${results.length} resources: ${results.length - drifted.length - failed.length} compliant, ${drifted.length} drifted, ${failed.length} failed`);
    }
    if (failed.length) return EXIT.error;
    return drifted.length ? EXIT.drift : EXIT.ok;
  } catch (err) {
    return reportError(err, json);
  }
}

export function summary(results: ResourceResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of results) out[r.outcome] = (out[r.outcome] ?? 0) + 1;
  return out;
}

export function describe(r: ResourceResult): string {
  if (r.error) return `${r.id}  ${r.outcome}  ${r.error.code}: ${r.error.message}`;
  const changes = r.changes.map((c) => `${c.field}: ${show(c.observed)} -> ${show(c.desired)}`).join('; ');
  return `${r.id}  ${r.outcome}${changes ? `  ${changes}` : ''}`;
}

function show(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}
