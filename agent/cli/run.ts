// `homeostat-agent run`: starts the daemon and maps signals to a clean stop (exit 0 on SIGTERM).
import { createLogger } from '../../lib/logger.js';
import { loadConfig, type CommonFlags } from '../config.js';
import { startDaemon } from '../daemon.js';
import { reportError } from './output.js';

export async function runCommand(flags: CommonFlags): Promise<number> {
  try {
    const config = loadConfig(flags);
    const log = createLogger('homeostat-agent', config.logLevel);
    const daemon = await startDaemon(config, log);
    const onSignal = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'stopping');
      void daemon.stop();
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    return await daemon.done;
  } catch (err) {
    return reportError(err, false);
  }
}
