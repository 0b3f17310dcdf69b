// Test hosts as network namespaces: create one (optionally joined to the machine by a veth pair), run commands inside it,
// give a process a private mount namespace with per-host folders bound over paths, and clean up, also after crashed runs.
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

/** Every namespace and link the tests create starts with this, so leftovers are recognisable. */
export const NETNS_PREFIX = 'hs-';
/** Who created each namespace (pid and process start time), so cleanup never touches a namespace of a live test run. */
const OWNER_DIR = '/run/hs-test/netns';
/** Interface names are at most 15 bytes; the namespace name leaves room for the `-a`/`-b` suffix of its veth ends. */
const MAX_NAME = 13;

export interface VethSpec {
  /** The machine side's address with prefix length, e.g. `10.77.1.1/30`. */
  hostAddress: string;
  /** The namespace side's address with prefix length, e.g. `10.77.1.2/30`. */
  nsAddress: string;
}

export interface BindMount {
  /** A folder (or file) on the machine, e.g. a per-host temp dir. */
  source: string;
  /** The path it is mounted over, inside the process's private mount namespace only. */
  target: string;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface InsideOptions {
  /** Folders bound over paths in a private mount namespace, seen by this process and its children only. */
  binds?: BindMount[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs a command to completion; rejects on a non-zero exit unless `allowFail`. */
export function run(cmd: string, args: string[], opts: { allowFail?: boolean; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      if (code !== 0 && !opts.allowFail) {
        reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${stderr.trim() || (err?.message ?? '')}`));
        return;
      }
      resolve({ code, stdout, stderr });
    });
  });
}

/** A fresh namespace name: `hs-TAG-xxxx`, short enough for its veth names. */
export function uniqueNetnsName(tag: string): string {
  const suffix = randomBytes(3).toString('hex').slice(0, 4);
  const room = MAX_NAME - NETNS_PREFIX.length - 1 - suffix.length;
  const t = tag.replace(/[^a-z0-9]/gi, '').toLowerCase().slice(0, Math.max(1, room)) || 'x';
  return `${NETNS_PREFIX}${t}-${suffix}`;
}

export class Netns {
  /** The machine-side veth end (in the root namespace) and the namespace-side one, when created with a veth. */
  readonly hostIf: string | undefined;
  readonly nsIf: string | undefined;
  private destroyed = false;

  private constructor(
    readonly name: string,
    readonly veth: VethSpec | undefined,
  ) {
    this.hostIf = veth ? `${name}-a` : undefined;
    this.nsIf = veth ? `${name}-b` : undefined;
  }

  /**
   * Creates a namespace named `hs-TAG-xxxx` (or exactly `name` when given) with loopback up, and optionally a veth pair with
   * the given addresses. On failure everything created so far is removed.
   */
  static async create(tag: string, opts: { name?: string; veth?: VethSpec } = {}): Promise<Netns> {
    const name = opts.name ?? uniqueNetnsName(tag);
    if (!name.startsWith(NETNS_PREFIX) || name.length > MAX_NAME) throw new Error(`namespace name '${name}' must start with ${NETNS_PREFIX} and be at most ${MAX_NAME} chars`);
    const ns = new Netns(name, opts.veth);
    // Owner first: a namespace is never on the machine without a record that keeps other runs' cleanup off it.
    recordOwner(name);
    try {
      await run('ip', ['netns', 'add', name]);
    } catch (err) {
      rmSync(path.join(OWNER_DIR, name), { force: true });
      throw err;
    }
    try {
      await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
      if (opts.veth && ns.hostIf && ns.nsIf) {
        await run('ip', ['link', 'add', ns.hostIf, 'type', 'veth', 'peer', 'name', ns.nsIf]);
        await run('ip', ['link', 'set', ns.nsIf, 'netns', name]);
        await run('ip', ['addr', 'add', opts.veth.hostAddress, 'dev', ns.hostIf]);
        await run('ip', ['link', 'set', ns.hostIf, 'up']);
        await run('ip', ['-n', name, 'addr', 'add', opts.veth.nsAddress, 'dev', ns.nsIf]);
        await run('ip', ['-n', name, 'link', 'set', ns.nsIf, 'up']);
      }
    } catch (err) {
      await ns.destroy();
      throw err;
    }
    return ns;
  }

  /** The machine side's address without prefix length (where a controller listens for this host). */
  get hostIp(): string | undefined {
    return this.veth?.hostAddress.split('/')[0];
  }

  get nsIp(): string | undefined {
    return this.veth?.nsAddress.split('/')[0];
  }

  /** The argv that runs `cmd args` inside the namespace (and, with binds, in a private mount namespace). */
  argv(cmd: string, args: string[], opts: InsideOptions = {}): string[] {
    return [...this.prefix(opts), cmd, ...args];
  }

  /** The words to put before a command to run it inside (for helpers that take a prefix, like startAgentDaemon). */
  prefix(opts: InsideOptions = {}): string[] {
    const inside = ['ip', 'netns', 'exec', this.name];
    const binds = opts.binds ?? [];
    if (binds.length === 0) return inside;
    for (const b of binds) {
      // The mount point has to exist; creating it on the shared filesystem is harmless for tests.
      if (!existsSync(b.target) && statSync(b.source).isDirectory()) mkdirSync(b.target, { recursive: true });
    }
    // Positional arguments carry the paths, so nothing is quoted into the script.
    const script = 'n=$1; shift; while [ "$n" -gt 0 ]; do mount --bind "$1" "$2" || exit 125; shift 2; n=$((n-1)); done; exec "$@"';
    return [
      ...inside,
      'unshare', '-m', '--propagation', 'private',
      'sh', '-c', script, 'hs-bind',
      String(binds.length), ...binds.flatMap((b) => [b.source, b.target]),
    ];
  }

  /** Runs a command inside to completion. */
  exec(cmd: string, args: string[], opts: InsideOptions & { allowFail?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
    const [c, ...rest] = this.argv(cmd, args, opts);
    return run(c ?? cmd, rest, { ...(opts.allowFail ? { allowFail: true } : {}), ...(opts.env ? { env: opts.env } : {}), ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}) });
  }

  /** Starts a long-running process inside. `ip netns exec`, `unshare` and `sh` all exec, so the child's pid is the command's own. */
  spawn(cmd: string, args: string[], opts: InsideOptions & { stdio?: SpawnOptions['stdio'] } = {}): ChildProcess {
    const [c, ...rest] = this.argv(cmd, args, opts);
    return spawn(c ?? cmd, rest, { env: { ...process.env, ...opts.env }, stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'], ...(opts.cwd ? { cwd: opts.cwd } : {}) });
  }

  /** Reads a sysctl of this namespace as the kernel prints it. */
  async sysctl(key: string): Promise<string> {
    const r = await this.exec('sysctl', ['-n', key]);
    return r.stdout.replace(/\n$/, '');
  }

  /** Sets a sysctl of this namespace the way an administrator would (the drift the tests inflict). */
  async sysctlWrite(key: string, value: string): Promise<void> {
    await this.exec('sysctl', ['-q', '-w', `${key}=${value}`]);
  }

  /** Cuts or restores the host's link (the machine-side veth end). */
  async setLink(up: boolean): Promise<void> {
    if (!this.hostIf) throw new Error(`${this.name} has no veth`);
    await run('ip', ['link', 'set', this.hostIf, up ? 'up' : 'down']);
  }

  /** Removes the namespace (its veth pair goes with it). Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await removeNetns(this.name);
  }
}

async function removeNetns(name: string): Promise<void> {
  await run('ip', ['netns', 'del', name], { allowFail: true });
  // A veth end left in the root namespace (creation failed half-way) would block the name for the next run.
  for (const ifname of [`${name}-a`, `${name}-b`]) await run('ip', ['link', 'del', ifname], { allowFail: true });
  rmSync(path.join(OWNER_DIR, name), { force: true });
}

/** Every namespace present whose name starts with the prefix. */
export async function listNetns(): Promise<string[]> {
  const r = await run('ip', ['netns', 'list'], { allowFail: true });
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(NETNS_PREFIX));
}

/**
 * Removes namespaces (and their links) left behind by crashed runs: those whose creating process is gone. Namespaces of live
 * runs (other test processes share the machine) are kept; `includeUnowned` also removes `hs-` namespaces nobody recorded,
 * for a fresh CI machine. Returns the names removed.
 */
export async function cleanupLeftoverNetns(opts: { includeUnowned?: boolean } = {}): Promise<string[]> {
  const removed: string[] = [];
  const present = new Set(await listNetns());
  const owned = existsSync(OWNER_DIR) ? readdirSync(OWNER_DIR).filter((n) => n.startsWith(NETNS_PREFIX)) : [];
  for (const name of owned) {
    if (ownerAlive(name)) continue;
    await removeNetns(name);
    if (present.has(name)) removed.push(name);
    present.delete(name);
  }
  if (opts.includeUnowned) {
    for (const name of present) {
      if (ownerAlive(name)) continue;
      await removeNetns(name);
      removed.push(name);
    }
  }
  return removed;
}

/** Written whole or not at all (a temporary name, then a rename): a cleanup reading it half-written would take it for dead. */
function recordOwner(name: string): void {
  mkdirSync(OWNER_DIR, { recursive: true });
  const tmp = path.join(OWNER_DIR, `.${name}.${process.pid}`);
  writeFileSync(tmp, `${process.pid} ${processStartTime(process.pid) ?? ''}\n`);
  renameSync(tmp, path.join(OWNER_DIR, name));
}

function ownerAlive(name: string): boolean {
  let text: string;
  try {
    text = readFileSync(path.join(OWNER_DIR, name), 'utf8');
  } catch {
    return false;
  }
  const [pidText, start] = text.trim().split(' ');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const now = processStartTime(pid);
  // The same pid with another start time is a different process that reused the number.
  return now !== undefined && (start === undefined || start === '' || start === now);
}

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot); undefined when the process is gone. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses; the fields after its last ')' are plain.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}
