#!/usr/bin/env node
// Entry point of `homeostat-controller`: `run` starts the controller until SIGTERM.
import { Command, Option } from 'commander';
import { errorMessage } from '../lib/errors.js';
import { exitAfterOutput, guardOutput } from '../lib/exit.js';
import { setProcessTitle } from '../lib/proctitle.js';
import type { LogLevel } from '../lib/log.js';
import { createLogger } from '../lib/logger.js';
import { parseDuration } from '../lib/clock.js';
import { versionLine } from '../lib/version.js';
import { readAdminTokenFile } from './identity.js';
import { DEFAULT_ESCALATION_LIMITS } from './escalations.js';
import { DEFAULT_EVENT_LIMITS } from './event-limits.js';
import { DEFAULT_CONNECTION_LIMITS } from './http/connections.js';
import { startController } from './server.js';
import { DEFAULT_RETENTION } from './store/retention.js';
import { AUTOTUNE_MODES, type AutotuneMode } from './tuning/settings.js';

interface RunFlags {
  dataDir: string;
  listen: string;
  insecureHttp?: boolean;
  adminToken?: string;
  adminTokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  database?: string;
  signatureValidity: string;
  heartbeatInterval: string;
  maxMessageBytes: string;
  rotateSigningKey?: boolean;
  eventRetention: string;
  eventQuota: string;
  escalationRetention: string;
  agentEventRate: string;
  agentEventBurst: string;
  maxOpenEscalations: string;
  maxConnectionsPerAddress: string;
  maxUnauthenticatedConnections: string;
  autotune?: AutotuneMode;
  logLevel: LogLevel;
}

/** `64MiB`, `512KiB`, `1GiB` or a plain number of bytes. */
function parseBytes(text: string): number | undefined {
  const m = /^(\d+)\s*(B|KiB|MiB|GiB)?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[(m[2] ?? 'B') as 'B'];
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

const positiveInt = (text: string): number | undefined => {
  const n = Number(text);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
};

/** The operator token from exactly one place: a file, the command line (visible in `ps`: warned), or the environment. */
function adminToken(flags: RunFlags, log: ReturnType<typeof createLogger>): string | undefined {
  if (flags.adminToken !== undefined && flags.adminTokenFile !== undefined) throw new Error('give --admin-token or --admin-token-file, not both');
  if (flags.adminTokenFile !== undefined) return readAdminTokenFile(flags.adminTokenFile);
  if (flags.adminToken !== undefined) {
    // The process title (set at start) no longer shows it, but it was readable while the process started.
    log.warn({}, '--admin-token puts the operator token where every local user can read it (ps, /proc); use --admin-token-file or HOMEOSTAT_ADMIN_TOKEN');
    return flags.adminToken;
  }
  return process.env.HOMEOSTAT_ADMIN_TOKEN || undefined;
}

/**
 * Last resort: every request, connection and background task handles its own errors, so an error reaching the process
 * is a defect whose effect on state is unknown. It is logged as one JSON line and the process exits, for the service
 * manager to start a clean one (agents reconnect and resend what was not acknowledged).
 */
function exitOnUnexpected(log: ReturnType<typeof createLogger>): void {
  const fatal = (kind: string) => (err: unknown): void => {
    log.fatal({ err: errorMessage(err), stack: err instanceof Error ? err.stack : undefined, kind }, 'unexpected error: exiting');
    process.exit(70);
  };
  process.on('uncaughtException', fatal('uncaughtException'));
  process.on('unhandledRejection', fatal('unhandledRejection'));
}

async function run(flags: RunFlags): Promise<number> {
  const log = createLogger('homeostat-controller', flags.logLevel);
  exitOnUnexpected(log);
  const validity = parseDuration(flags.signatureValidity);
  const heartbeat = parseDuration(flags.heartbeatInterval);
  const maxBytes = Number(flags.maxMessageBytes);
  if (!validity || !heartbeat || !Number.isInteger(maxBytes) || maxBytes < 1024) {
    process.stderr.write('homeostat-controller: --signature-validity and --heartbeat-interval take durations (30d, 30s); --max-message-bytes an integer >= 1024\n');
    return 1;
  }
  const numbers = {
    eventRetention: parseDuration(flags.eventRetention),
    escalationRetention: parseDuration(flags.escalationRetention),
    eventQuota: parseBytes(flags.eventQuota),
    agentEventRate: positiveInt(flags.agentEventRate),
    agentEventBurst: positiveInt(flags.agentEventBurst),
    maxOpenEscalations: positiveInt(flags.maxOpenEscalations),
    maxConnectionsPerAddress: positiveInt(flags.maxConnectionsPerAddress),
    maxUnauthenticatedConnections: positiveInt(flags.maxUnauthenticatedConnections),
  };
  const bad = Object.entries(numbers).find(([, v]) => v === undefined || v <= 0);
  if (bad) {
    const flag = `--${bad[0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    process.stderr.write(`homeostat-controller: ${flag} ${String(flags[bad[0] as keyof RunFlags])}: expected ${/retention/i.test(bad[0]) ? 'a duration like 90d' : /quota/i.test(bad[0]) ? 'a size like 64MiB' : 'a positive integer'}\n`);
    return 1;
  }
  const n = numbers as { [K in keyof typeof numbers]: number };
  const c = await startController({
    dataDir: flags.dataDir,
    listen: flags.listen,
    insecureHttp: flags.insecureHttp ?? false,
    adminToken: adminToken(flags, log),
    tlsCert: flags.tlsCert,
    tlsKey: flags.tlsKey,
    database: flags.database,
    signatureValidityMs: validity,
    rotateSigningKey: flags.rotateSigningKey ?? false,
    gateway: { heartbeatIntervalMs: heartbeat, maxMessageBytes: maxBytes },
    events: { ratePerAgent: n.agentEventRate, burstPerAgent: n.agentEventBurst },
    escalations: { maxOpenPerAgent: n.maxOpenEscalations },
    retention: { eventMaxAgeMs: n.eventRetention, eventBytesPerAgent: n.eventQuota, escalationMaxAgeMs: n.escalationRetention },
    limits: { perAddress: n.maxConnectionsPerAddress, unauthenticated: n.maxUnauthenticatedConnections },
    ...(flags.autotune !== undefined ? { autotune: flags.autotune } : {}),
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
    .option('--admin-token-file <file>', 'read the operator bearer token from this file (default: $HOMEOSTAT_ADMIN_TOKEN, else generated into DATA_DIR/admin.token)')
    .option('--admin-token <token>', 'the operator token itself (visible to local users in ps: prefer --admin-token-file)')
    .option('--tls-cert <file>', 'PEM certificate (default: one generated at first start into DATA_DIR/tls.crt)')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--database <url>', 'store: a SQLite path (default DATA_DIR/controller.db); postgres:// is reserved for the PostgreSQL store')
    .option('--signature-validity <duration>', 'how long a signed baseline stays enforceable without word from the controller', '30d')
    .option('--heartbeat-interval <duration>', 'how often agents send heartbeats', '30s')
    .option('--max-message-bytes <n>', 'largest WebSocket frame accepted from an agent', String(8 * 1024 * 1024))
    .option('--rotate-signing-key', 'make a new signing key although agents pinned the current (or lost) one; every agent enrolled so far must enroll again')
    .option('--event-retention <duration>', 'events received longer ago are deleted', `${DEFAULT_RETENTION.eventMaxAgeMs / 86_400_000}d`)
    .option('--event-quota <size>', 'event storage per agent; past it its oldest events are deleted', `${DEFAULT_RETENTION.eventBytesPerAgent / 1024 ** 2}MiB`)
    .option('--escalation-retention <duration>', 'decided escalations older than this are deleted', `${DEFAULT_RETENTION.escalationMaxAgeMs / 86_400_000}d`)
    .option('--agent-event-rate <n>', 'events per second one agent may deliver (one per started KiB); the rest waits in its outbox', String(DEFAULT_EVENT_LIMITS.ratePerAgent))
    .option('--agent-event-burst <n>', 'events one agent may deliver at once after a quiet spell', String(DEFAULT_EVENT_LIMITS.burstPerAgent))
    .option('--max-open-escalations <n>', 'open escalations one agent may have', String(DEFAULT_ESCALATION_LIMITS.maxOpenPerAgent))
    .option('--max-connections-per-address <n>', 'connections one address (IPv6: one /64) may hold before authenticating', String(DEFAULT_CONNECTION_LIMITS.perAddress))
    .option('--max-unauthenticated-connections <n>', 'connections all addresses together may hold before authenticating', String(DEFAULT_CONNECTION_LIMITS.unauthenticated))
    .addOption(new Option('--autotune <mode>', 'bounded: apply tuning proposals within their bounds by itself; off: never (default: the stored setting, off unless changed)').choices([...AUTOTUNE_MODES]))
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'))
    .action(async (flags: RunFlags) => {
      process.exitCode = await run(flags);
    });
  return p;
}

setProcessTitle('homeostat-controller', process.argv.slice(2), ['--admin-token']);
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
