// `homeostat-agent apply`: one-shot converge of the given baselines, verified and recorded in the audit log.
import { loadBaselineFiles } from '../../lib/baseline/index.js';
import { createLogger } from '../../lib/logger.js';
import { composeAgent } from '../compose.js';
import { loadConfig, type CommonFlags } from '../config.js';
import { worstOutcome } from '../engine/engine.js';
import { storeOptions } from '../store/recovery.js';
import { AgentStore } from '../store/store.js';
import { describe, summary } from './check.js';
import { EXIT, printJson, println, reportError, requireBaselines } from './output.js';

export async function applyCommand(flags: CommonFlags & { json?: boolean }): Promise<number> {
  const json = flags.json ?? false;
  let store: AgentStore | undefined;
  try {
    const config = loadConfig(flags);
    const log = createLogger('homeostat-agent', config.logLevel === 'info' ? 'warn' : config.logLevel);
    const baselines = loadBaselineFiles(requireBaselines(config.baselines));
    store = AgentStore.open(config.settings.stateDir, storeOptions(config.settings));
    const agent = composeAgent({ settings: config.settings, log, store });
    await agent.activate(baselines, { origin: 'local' }, 'manual');
    const results = await agent.engine.converge('manual');
    await agent.stop();
    const unresolved = results.filter((r) => !['kept', 'repaired', 'excepted'].includes(r.outcome));
    if (json) {
      printJson({ converged: unresolved.length === 0, outcome: worstOutcome(results.map((r) => r.outcome)), summary: summary(results), resources: results });
    } else {
      for (const r of results) if (r.outcome !== 'kept') println(describe(r));
      println(`${results.length} resources: ${Object.entries(summary(results)).map(([k, v]) => `${v} ${k}`).join(', ')}`);
    }
    return unresolved.length ? EXIT.drift : EXIT.ok;
  } catch (err) {
    return reportError(err, json);
  } finally {
    store?.close();
  }
}
