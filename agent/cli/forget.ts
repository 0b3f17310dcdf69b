// `homeostat-agent forget NAME [--source local|controller]`: stops enforcing a baseline and drops it from the cache,
// audited with the local user as author; through the running daemon when there is one (agent/control/).
import { HsError } from '../../lib/errors.js';
import { loadConfig, type CommonFlags } from '../config.js';
import type { ForgetResult } from '../control/operations.js';
import { localAuthor } from '../control/operations.js';
import { carryOut } from './decide.js';
import { EXIT, printJson, println, reportError } from './output.js';

export async function forgetCommand(name: string, flags: CommonFlags & { json?: boolean; source?: string }): Promise<number> {
  const json = flags.json ?? false;
  try {
    const source = flags.source;
    if (source !== undefined && source !== 'local' && source !== 'controller') throw new HsError('HS_CONFIG', `--source '${source}': local or controller`);
    const by = localAuthor();
    const result = (await carryOut(loadConfig(flags), { op: 'forget', name, by, ...(source ? { source } : {}) })) as ForgetResult;
    if (json) {
      printJson(result);
      return EXIT.ok;
    }
    const from = result.origin === 'local' ? "this host's own baselines" : "the controller's baselines";
    println(`${name} forgotten by ${by} from ${from}: ${result.wasActive ? 'no longer enforced; ' : ''}cached version(s) ${result.versions.join(', ')} dropped`);
    for (const f of result.stillConfigured) {
      process.stderr.write(`homeostat-agent: warning: ${f} still defines ${name} and is configured: it is enforced again at the next reload (SIGHUP) or start unless you remove it from the configuration (baselines: in the config file, or --baseline)\n`);
    }
    if (result.origin === 'controller') {
      println(
        `the controller learns ${name} is no longer held here (at once from a connected daemon, else at the next connection) and sends it again with its next assignment that changes anything or at the next reconnection (recorded as baseline_activated); end its assignment at the controller to keep it away`,
      );
    }
    return EXIT.ok;
  } catch (err) {
    return reportError(err, json);
  }
}
