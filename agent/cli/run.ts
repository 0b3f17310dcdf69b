// `homeostat-agent run`: the daemon (agent/daemon.ts); exit 0 once SIGTERM or SIGINT has stopped it.
import { createLogger } from '../../lib/logger.js';
import { loadConfig, type CommonFlags } from '../config.js';
import { runDaemon } from '../daemon.js';
import { reportError } from './output.js';

export async function runCommand(flags: CommonFlags): Promise<number> {
  try {
    const config = loadConfig(flags);
    return await runDaemon(config, createLogger('homeostat-agent', config.logLevel));
  } catch (err) {
    return reportError(err, false);
  }
}
