// Structured logging: constant messages with fields, JSON to stderr (journald picks it up); stdout stays for --json output.
import { pino, type Logger } from 'pino';

export type { Logger };
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export function createLogger(name: string, level: LogLevel = (process.env.HOMEOSTAT_LOG_LEVEL as LogLevel | undefined) ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything, for tests and one-shot library use. */
export const silentLogger: Logger = pino({ level: 'silent' });
