// Logging types and the silent logger; the real logger (pino, JSON to stderr) is in lib/logger.ts, loaded only by commands that log.
import type { Logger } from 'pino';

export type { Logger };
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

const noop = (): void => undefined;

/**
 * A logger that drops everything, for tests and one-shot commands. Built without pino so that a one-shot `check`
 * does not pay for loading it; only the methods the code base calls exist.
 */
export const silentLogger: Logger = {
  level: 'silent',
  fatal: noop,
  error: noop,
  warn: noop,
  info: noop,
  debug: noop,
  trace: noop,
  silent: noop,
  child: () => silentLogger,
  isLevelEnabled: () => false,
} as unknown as Logger;
