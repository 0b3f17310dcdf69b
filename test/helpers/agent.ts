// Test helpers that run the real agent CLI and daemon from dist/, and wait on the state of the world.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const AGENT_MAIN = fileURLToPath(new URL('../../agent/main.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `homeostat-agent ARGS` to completion. `prefix` runs it under another command (e.g. `ip netns exec NS`). */
export function runAgent(args: string[], opts: { prefix?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const [cmd, ...rest] = [...(opts.prefix ?? []), process.execPath, AGENT_MAIN, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd ?? process.execPath, rest, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

export class DaemonProcess {
  stderr = '';
  private exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  async ready(timeoutMs = 15_000): Promise<void> {
    await waitFor(() => this.stderr.includes('"agent ready"') || this.child.exitCode !== null, timeoutMs, 'agent ready');
    if (this.child.exitCode !== null) throw new Error(`agent exited ${this.child.exitCode}:\n${this.stderr}`);
  }

  /** SIGTERM and wait; resolves with the exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }

  kill9(): Promise<number | null> {
    this.child.kill('SIGKILL');
    return this.exited;
  }
}

export function startAgentDaemon(args: string[], opts: { prefix?: string[]; env?: NodeJS.ProcessEnv } = {}): DaemonProcess {
  const [cmd, ...rest] = [...(opts.prefix ?? []), process.execPath, AGENT_MAIN, 'run', '--log-level', 'info', ...args];
  const child = spawn(cmd ?? process.execPath, rest, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'ignore', 'pipe'] });
  return new DaemonProcess(child);
}

export async function waitFor(pred: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function tempDir(prefix = 'hs-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes a baseline YAML file and returns its path. */
export function writeBaseline(dir: string, name: string, yaml: string): string {
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(file, yaml);
  return file;
}

export interface AuditLine {
  seq: number;
  resource: string | null;
  event: string;
  trigger: string | null;
  observed: Record<string, unknown> | null;
  desired: Record<string, unknown> | null;
  detail: string | null;
}

/** The audit log as `homeostat-agent audit --json` prints it, for one resource. */
export async function auditOf(stateDir: string, resource: string, opts: { prefix?: string[] } = {}): Promise<AuditLine[]> {
  const r = await runAgent(['audit', '--json', '--state-dir', stateDir], opts);
  if (r.code !== 0) throw new Error(`audit exited ${r.code}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { entries: AuditLine[] }).entries.filter((e) => e.resource === resource);
}
