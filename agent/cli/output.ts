// How agent commands speak: one JSON document on stdout with --json, plain lines otherwise; errors to stderr.
import { BaselineInvalidError, HsError, errorMessage } from '../../lib/errors.js';

export const EXIT = { ok: 0, error: 1, drift: 2 } as const;

export function printJson(doc: unknown): void {
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
}

export function println(line = ''): void {
  process.stdout.write(`${line}\n`);
}

/** Reports a failure of the command itself (not drift) and returns the exit code 1. */
export function reportError(err: unknown, json: boolean): number {
  if (json) {
    const body = err instanceof HsError ? err.toJSON() : { code: 'HS_INTERNAL', message: errorMessage(err) };
    printJson({ error: body });
  }
  if (err instanceof BaselineInvalidError) process.stderr.write(`${err.describe()}\n`);
  else process.stderr.write(`homeostat-agent: ${errorMessage(err)}\n`);
  return EXIT.error;
}

/** One-shot commands need at least one baseline file, from --baseline or the config file. */
export function requireBaselines(files: string[]): string[] {
  if (files.length === 0) throw new HsError('HS_CONFIG', 'no baseline given: pass --baseline FILE (or list baselines in the config file)');
  return files;
}
