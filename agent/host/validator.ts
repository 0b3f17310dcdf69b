// Runs a file resource's `validate:` command on a candidate file: as words (argv), never through a shell, with `%s` replaced
// by the candidate's path inside whichever word holds it. Tells "the command refused the content" apart from "the command
// could not run" and "it did not finish in time".
import { spawn } from 'node:child_process';
import { HsError } from '../../lib/errors.js';
import { commandFor } from '../../lib/baseline/command.js';

export const VALIDATE_TIMEOUT_MS = 30_000;
/** Output kept for the message; the rest is read and dropped so a chatty validator never blocks on a full pipe. */
const KEEP_OUTPUT = 4096;

export function runValidator(words: readonly string[], candidate: string, resource: string, timeoutMs = VALIDATE_TIMEOUT_MS): Promise<void> {
  const argv = commandFor(words, candidate);
  const [program, ...args] = argv;
  const shown = words.map((w) => (/^[\w@%+=:,./-]+$/.test(w) ? w : JSON.stringify(w))).join(' ');
  return new Promise((resolve, reject) => {
    if (program === undefined || program === '') {
      reject(new HsError('HS_VALIDATE_UNAVAILABLE', 'validate has no program to run', { resource, retryable: false }));
      return;
    }
    let output = '';
    const keep = (d: Buffer): void => {
      if (output.length < KEEP_OUTPUT) output += d.toString('utf8', 0, Math.min(d.length, KEEP_OUTPUT - output.length));
    };
    let timedOut = false;
    // Its own process group, so a timeout ends whatever it started too (and its pipes close).
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/', shell: false, detached: true });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let settled = false;
    const settle = (err: HsError | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve();
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' ? 'not found' : err.code === 'EACCES' ? 'not executable' : err.message;
      settle(new HsError('HS_VALIDATE_UNAVAILABLE', `validate command ${program} cannot run (${why}); the new content was not installed`, { resource, retryable: true, cause: err }));
    });
    child.on('close', (code, signal) => {
      const said = output.trim();
      const tail = said ? `: ${said}` : '';
      if (timedOut) {
        settle(new HsError('HS_HOST_TIMEOUT', `validate command ${shown} did not finish within ${timeoutMs} ms; the new content was not installed`, { resource, retryable: true }));
      } else if (code === 126 || code === 127) {
        // What a wrapper (env, sh -c) answers when the program it was told to run is missing or not executable.
        settle(new HsError('HS_VALIDATE_UNAVAILABLE', `validate command ${shown} exited ${code}: a program it runs was not found or is not executable${tail}`, { resource, retryable: true }));
      } else if (code !== 0) {
        const how = code === null ? `was killed by ${String(signal)}` : `exited ${code}`;
        settle(new HsError('HS_VALIDATE_REJECTED', `validate command refused the new content: ${shown} ${how}${tail}`, { resource, retryable: false }));
      } else {
        settle(undefined);
      }
    });
  });
}
