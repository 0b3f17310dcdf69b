// Structured logging: constant messages with fields, JSON to stderr (journald picks it up); stdout stays for --json output.
import { destination, pino } from 'pino';
import type { Logger, LogLevel } from './log.js';

export function createLogger(name: string, level: LogLevel = (process.env.HOMEOSTAT_LOG_LEVEL as LogLevel | undefined) ?? 'info'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, destination({ fd: 2, sync: true }));
}
