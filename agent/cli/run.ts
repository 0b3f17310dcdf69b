// `homeostat-agent run`: starts the daemon and maps signals to a clean stop (exit 0 on SIGTERM).
import { createLogger } from '../../lib/logger.js';
import { loadConfig, type CommonFlags } from '../config.js';
import { startDaemon, type Daemon } from '../daemon.js';
import { reportError } from './output.js';

export async function runCommand(flags: CommonFlags): Promise<number> {
  try {
    const config = loadConfig(flags);
    const log = createLogger('homeostat-agent', config.logLevel);
    // Armed before the daemon announces readiness: without a listener, a SIGTERM that follows READY=1 at once would
    // end the process by the default action instead of stopping it. One that arrives while starting stops it once started.
    let daemon: Daemon | undefined;
    let stopAsked = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'stopping');
      stopAsked = true;
      if (daemon) void daemon.stop();
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    daemon = await startDaemon(config, log);
    if (stopAsked) void daemon.stop();
    return await daemon.done;
  } catch (err) {
    return reportError(err, false);
  }
}
