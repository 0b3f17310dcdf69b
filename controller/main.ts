#!/usr/bin/env node
// Entry point of `homeostat-controller`: `run` starts the controller until SIGTERM.
import { Command, Option } from 'commander';
import { errorMessage } from '../lib/errors.js';
import { exitAfterOutput, guardOutput } from '../lib/exit.js';
import type { LogLevel } from '../lib/log.js';
import { createLogger } from '../lib/logger.js';
import { parseDuration } from '../lib/clock.js';
import { versionLine } from '../lib/version.js';
import { startController } from './server.js';

interface RunFlags {
  dataDir: string;
  listen: string;
  insecureHttp?: boolean;
  adminToken?: string;
  tlsCert?: string;
  tlsKey?: string;
  database?: string;
  signatureValidity: string;
  heartbeatInterval: string;
  maxMessageBytes: string;
  rotateSigningKey?: boolean;
  logLevel: LogLevel;
}

async function run(flags: RunFlags): Promise<number> {
  const log = createLogger('homeostat-controller', flags.logLevel);
  const validity = parseDuration(flags.signatureValidity);
  const heartbeat = parseDuration(flags.heartbeatInterval);
  const maxBytes = Number(flags.maxMessageBytes);
  if (!validity || !heartbeat || !Number.isInteger(maxBytes) || maxBytes < 1024) {
    process.stderr.write('homeostat-controller: --signature-validity and --heartbeat-interval take durations (30d, 30s); --max-message-bytes an integer >= 1024\n');
    return 1;
  }
  const c = await startController({
    dataDir: flags.dataDir,
    listen: flags.listen,
    insecureHttp: flags.insecureHttp ?? false,
    adminToken: flags.adminToken ?? process.env.HOMEOSTAT_ADMIN_TOKEN,
    tlsCert: flags.tlsCert,
    tlsKey: flags.tlsKey,
    database: flags.database,
    signatureValidityMs: validity,
    rotateSigningKey: flags.rotateSigningKey ?? false,
    gateway: { heartbeatIntervalMs: heartbeat, maxMessageBytes: maxBytes },
    log,
  });
  log.info({ url: c.url, agents: `${c.agentUrl}/agent`, fingerprint: c.fingerprint, adminTokenFile: c.core.adminTokenFile }, 'controller listening');
  if (c.core.adminTokenFile) process.stderr.write(`homeostat-controller: operator token in ${c.core.adminTokenFile}\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      log.info({ signal }, 'stopping');
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await c.stop();
  log.info('controller stopped');
  return 0;
}

export function program(): Command {
  const p = new Command('homeostat-controller').version(versionLine()).description('Homeostat fleet controller');
  p.command('run')
    .description('serve the API, the dashboard and the agent gateway')
    .requiredOption('--data-dir <dir>', 'where the database, keys and certificate live')
    .requiredOption('--listen <host:port>', 'address to listen on, e.g. 0.0.0.0:7400')
    .option('--insecure-http', 'serve plain HTTP and ws:// (tests, or TLS terminated by a proxy)')
    .option('--admin-token <token>', 'operator bearer token (default: $HOMEOSTAT_ADMIN_TOKEN, else generated into DATA_DIR/admin.token)')
    .option('--tls-cert <file>', 'PEM certificate (default: one generated at first start into DATA_DIR/tls.crt)')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--database <url>', 'store: a SQLite path (default DATA_DIR/controller.db); postgres:// is reserved for the PostgreSQL store')
    .option('--signature-validity <duration>', 'how long a signed baseline stays enforceable without word from the controller', '30d')
    .option('--heartbeat-interval <duration>', 'how often agents send heartbeats', '30s')
    .option('--max-message-bytes <n>', 'largest WebSocket frame accepted from an agent', String(8 * 1024 * 1024))
    .option('--rotate-signing-key', 'make a new signing key although agents pinned the current (or lost) one; every agent enrolled so far must enroll again')
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'))
    .action(async (flags: RunFlags) => {
      process.exitCode = await run(flags);
    });
  return p;
}

guardOutput();
program()
  .parseAsync(process.argv)
  .then(
    () => exitAfterOutput(Number(process.exitCode ?? 0)),
    (err: unknown) => {
      process.stderr.write(`homeostat-controller: ${errorMessage(err)}\n`);
      exitAfterOutput(1);
    },
  );
