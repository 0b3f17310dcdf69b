// A real controller process and homeostatctl run as a process against it, with nothing from the machine's own
// environment or context file leaking in (each test names its own context file).
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './agent.js';

export const CONTROLLER_MAIN = fileURLToPath(new URL('../../controller/main.js', import.meta.url));
export const CTL_MAIN = fileURLToPath(new URL('../../controller/ctl/main.js', import.meta.url));

export interface ControllerProcess {
  child: ChildProcess;
  url: string;
  stderr: () => string;
  stop(): Promise<void>;
}

export async function startControllerProcess(args: string[]): Promise<ControllerProcess> {
  const child = spawn(process.execPath, [CONTROLLER_MAIN, 'run', '--listen', '127.0.0.1:0', '--log-level', 'info', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await waitFor(() => stderr.includes('"controller listening"') || child.exitCode !== null, 20_000, 'controller listening');
  if (child.exitCode !== null) throw new Error(`controller exited ${child.exitCode}: ${stderr}`);
  const line = stderr.split('\n').find((l) => l.includes('"controller listening"')) ?? '{}';
  const url = (JSON.parse(line) as { url: string }).url;
  return {
    child,
    url,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

export interface CtlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The machine's environment without anything that would point homeostatctl elsewhere. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('HOMEOSTAT_') && k !== 'XDG_CONFIG_HOME'));
  return { ...env, ...extra };
}

/** Runs homeostatctl with exactly these arguments and environment (start from cleanEnv). */
export function runCtl(args: string[], env: NodeJS.ProcessEnv): Promise<CtlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CTL_MAIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
