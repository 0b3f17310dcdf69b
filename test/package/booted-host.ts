// A whole booted Debian 12 host for install, start and reboot tests: systemd as PID 1 in a systemd-nspawn container made from a pristine debootstrap root (cached under packaging/build/), commands run inside with nsenter, a veth to reach it.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { processStartTime } from '../helpers/netns.js';
import { BUILD, sh, type Ran } from './artifacts.js';

/** The pristine root: `debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm`, made once and never booted. */
export const PRISTINE_ROOT = path.join(BUILD, 'bookworm-root');
const DEBIAN_MIRROR = process.env.HOMEOSTAT_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';

/** Makes the pristine root when it is missing (about 40–70 s and 240 MB, from the Debian archive); returns its path. */
export async function ensurePristineRoot(): Promise<string> {
  if (existsSync(path.join(PRISTINE_ROOT, 'lib/systemd/systemd'))) return PRISTINE_ROOT;
  const tmp = `${PRISTINE_ROOT}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  const r = await sh('debootstrap', ['--variant=minbase', '--include=systemd,systemd-sysv,dbus', 'bookworm', tmp, DEBIAN_MIRROR], { timeoutMs: 15 * 60_000 });
  if (r.code !== 0) throw new Error(`debootstrap bookworm failed (${r.code}):\n${r.stdout.slice(-2000)}${r.stderr.slice(-2000)}`);
  renameSync(tmp, PRISTINE_ROOT);
  return PRISTINE_ROOT;
}

let serial = 0;

/** One file per running host: who booted it, its nspawn process, its root; a run that died leaves them for the next to clear. */
const OWNER_DIR = '/run/hs-test/boot';

interface Owner {
  owner: number;
  ownerStart: string;
  nspawn: number;
  nspawnStart: string;
  dir: string;
}

/** The process that was recorded, still there and not a zombie waiting to be reaped. */
function alive(pid: number, start: string): boolean {
  if (pid <= 0 || processStartTime(pid) !== start) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Powers off (SIGKILL) and deletes the hosts of test runs that are gone; returns their machine names. */
export function cleanupLeftoverHosts(): string[] {
  const removed: string[] = [];
  for (const name of existsSync(OWNER_DIR) ? readdirSync(OWNER_DIR) : []) {
    let o: Owner;
    try {
      o = JSON.parse(readFileSync(path.join(OWNER_DIR, name), 'utf8')) as Owner;
    } catch {
      rmSync(path.join(OWNER_DIR, name), { force: true });
      continue;
    }
    if (alive(o.owner, o.ownerStart)) continue;
    if (alive(o.nspawn, o.nspawnStart)) process.kill(o.nspawn, 'SIGKILL');
    if (o.dir.startsWith(path.join(tmpdir(), 'hs-boot-'))) rmSync(o.dir, { recursive: true, force: true });
    rmSync(path.join(OWNER_DIR, name), { force: true });
    removed.push(name);
  }
  return removed;
}

export interface BootOptions {
  /** A veth between this machine and the host, with an address on each end (default true). */
  network?: boolean;
  /** How long the boot may take until `systemctl is-system-running --wait` answers (default 60 s). */
  timeoutMs?: number;
}

/**
 * One booted host: a copy of the pristine root under /tmp, `systemd-nspawn --boot` on it. Names are per process
 * (`hsbPID-N`, veth `ve-hsbPID-N`) so parallel test runs never collide. `stop()` powers it off cleanly and keeps the
 * root, so `start()` boots it again (a reboot); `destroy()` powers off and deletes the copy.
 */
export class BootedHost {
  readonly machine: string;
  /** This machine's end of the veth, e.g. 10.85.17.1: where a controller listens for the host. */
  readonly outsideAddress: string;
  /** The host's own address on host0, e.g. 10.85.17.2. */
  readonly insideAddress: string;
  private nspawn: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  /** The container's PID 1 as this machine sees it; commands enter its namespaces. */
  leader = 0;

  private constructor(
    readonly root: string,
    readonly consoleLog: string,
    private readonly opts: BootOptions,
  ) {
    serial += 1;
    this.machine = `hsb${process.pid % 100_000}-${serial}`;
    const subnet = `10.85.${1 + ((process.pid * 7 + serial) % 250)}`;
    this.outsideAddress = `${subnet}.1`;
    this.insideAddress = `${subnet}.2`;
  }

  /** Copies the pristine root and boots it; resolves once its system manager is up. */
  static async boot(opts: BootOptions = {}): Promise<BootedHost> {
    cleanupLeftoverHosts();
    const pristine = await ensurePristineRoot();
    const dir = mkdtempSync(path.join(tmpdir(), 'hs-boot-'));
    const root = path.join(dir, 'root');
    cpSync(pristine, root, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
    const host = new BootedHost(root, path.join(dir, 'console.log'), opts);
    try {
      await host.start();
    } catch (err) {
      await host.destroy();
      throw err;
    }
    return host;
  }

  /** The veth's name on this machine (nspawn names it ve-MACHINE). */
  get veth(): string {
    return `ve-${this.machine}`.slice(0, 15);
  }

  /** Boots the root (again). */
  async start(): Promise<void> {
    if (this.nspawn) throw new Error(`${this.machine} is already running`);
    const network = this.opts.network ?? true;
    // /run is no tmpfs on this machine and nspawn needs /run/systemd/nspawn to be one: mount it in a private mount
    // namespace of nspawn's own, which leaves this machine's /run as it is.
    const script = 'mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn && exec "$@"';
    const args = ['-D', this.root, '--boot', '--register=no', '--keep-unit', '-M', this.machine, '--console=pipe', ...(network ? ['--network-veth'] : [])];
    const log = openSync(this.consoleLog, 'a');
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'hs-boot', 'systemd-nspawn', ...args], {
      stdio: ['ignore', log, log],
      detached: true,
    });
    closeSync(log);
    this.nspawn = child;
    mkdirSync(OWNER_DIR, { recursive: true });
    const owner: Owner = { owner: process.pid, ownerStart: processStartTime(process.pid) ?? '', nspawn: child.pid ?? 0, nspawnStart: processStartTime(child.pid ?? 0) ?? '', dir: path.dirname(this.root) };
    writeFileSync(path.join(OWNER_DIR, this.machine), JSON.stringify(owner));
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const deadline = Date.now() + (this.opts.timeoutMs ?? 60_000);
    // The container's PID 1 is the child of nspawn that has become systemd (a helper process comes first).
    while (!this.leader) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${this.machine} did not boot:\n${this.console()}`);
      const ps = await sh('ps', ['-o', 'pid=,comm=', '--ppid', String(child.pid)]);
      const pid1 = ps.stdout.split('\n').map((l) => l.trim().split(/\s+/)).find(([, comm]) => comm === 'systemd');
      this.leader = Number(pid1?.[0]) || 0;
      if (!this.leader) await new Promise((r) => setTimeout(r, 50));
    }
    // systemctl cannot connect until PID 1 has made its private socket; then --wait answers once the boot is done.
    let state = await this.exec(['systemctl', 'is-system-running', '--wait'], { timeoutMs: Math.max(5_000, deadline - Date.now()) });
    while (/Failed to connect/.test(state.stderr) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      state = await this.exec(['systemctl', 'is-system-running', '--wait'], { timeoutMs: Math.max(5_000, deadline - Date.now()) });
    }
    if (!['running', 'degraded'].includes(state.stdout.trim())) throw new Error(`${this.machine}: system ${state.stdout.trim() || state.stderr}\n${this.console()}`);
    if (network) {
      await must(sh('ip', ['addr', 'add', `${this.outsideAddress}/30`, 'dev', this.veth]));
      await must(sh('ip', ['link', 'set', this.veth, 'up']));
      await must(sh('nsenter', ['-t', String(this.leader), '-n', 'ip', 'addr', 'add', `${this.insideAddress}/30`, 'dev', 'host0']));
      await must(sh('nsenter', ['-t', String(this.leader), '-n', 'ip', 'link', 'set', 'host0', 'up']));
    }
  }

  /** Runs a command inside the host: its mount, PID, network, IPC and UTS namespaces, as root. */
  exec(cmd: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<Ran> {
    return sh('nsenter', ['-t', String(this.leader), '-a', ...cmd], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' }, ...opts });
  }

  /** Runs a shell script inside the host. */
  shell(script: string, opts: { timeoutMs?: number } = {}): Promise<Ran> {
    return this.exec(['sh', '-c', script], opts);
  }

  /** `systemctl show -p ...` of a unit inside, as a record. */
  async show(unit: string, props: string[]): Promise<Record<string, string>> {
    const r = await this.exec(['systemctl', 'show', '-p', props.join(','), unit]);
    return Object.fromEntries(r.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  }

  /** A path inside the host, as seen from this machine. */
  path(inside: string): string {
    return path.join(this.root, inside);
  }

  /** What the container's console printed (boot messages, a power-off). */
  console(): string {
    try {
      return readFileSync(this.consoleLog, 'utf8').slice(-4000);
    } catch {
      return '';
    }
  }

  /** A clean power-off (SIGTERM to nspawn asks systemd inside to shut down); SIGKILL after the timeout. */
  async stop(timeoutMs = 30_000): Promise<void> {
    const child = this.nspawn;
    if (!child) return;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await this.exited;
      clearTimeout(timer);
    }
    this.nspawn = undefined;
    this.leader = 0;
  }

  /** Powers off and deletes the copy of the root. */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(path.dirname(this.root), { recursive: true, force: true });
    rmSync(path.join(OWNER_DIR, this.machine), { force: true });
  }
}

async function must(p: Promise<Ran>): Promise<Ran> {
  const r = await p;
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`);
  return r;
}
