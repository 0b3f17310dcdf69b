// Runs a command the way a shell user pipes it (`CMD | cat`, `| (sleep 2; cat)`, `| head -1`) or redirects it to a file, keeping the command's own exit code and stderr apart.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** What a shell user puts after `|`: a reader that keeps up, one that starts reading 2 s late, one that stops after a line. */
const READERS = { pipe: 'cat', slow: '(sleep 2; cat)', head: 'head -1' } as const;
export type Reader = keyof typeof READERS;

export interface Piped {
  /** What the reader printed. */
  out: string;
  /** The command's own exit code (PIPESTATUS[0]), not the reader's. */
  code: number;
  stderr: string;
}

/** Runs `CMD | READER` in bash, as a user would, and reports the command's exit code and stderr apart from the reader's output. */
export function throughPipe(reader: Reader, cmd: string[], dir: string, env: NodeJS.ProcessEnv = process.env): Promise<Piped> {
  const err = path.join(dir, `stderr-${process.hrtime.bigint()}`);
  const codeFile = `${err}.code`;
  const script = `"$@" 2>"$HS_ERR" | ${READERS[reader]}; echo "\${PIPESTATUS[0]}" >"$HS_CODE"`;
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script, 'hs-pipe', ...cmd], { env: { ...env, HS_ERR: err, HS_CODE: codeFile }, stdio: ['ignore', 'pipe', 'inherit'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => chunks.push(d));
    child.on('error', reject);
    child.on('close', () => resolve({ out: Buffer.concat(chunks).toString('utf8'), code: Number(readFileSync(codeFile, 'utf8').trim()), stderr: readFileSync(err, 'utf8') }));
  });
}

/** The same command with stdout redirected to a file: the complete output to compare with. */
export function toFile(cmd: string[], dir: string, env: NodeJS.ProcessEnv = process.env): Promise<Piped> {
  const file = path.join(dir, `stdout-${process.hrtime.bigint()}`);
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', '"$@" >"$HS_OUT"', 'hs-file', ...cmd], { env: { ...env, HS_OUT: file }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ out: readFileSync(file, 'utf8'), code: code ?? -1, stderr }));
  });
}

