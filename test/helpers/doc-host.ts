// A scratch host for the docs' example commands: a network namespace of its own (its loopback, its port 7400, its
// net.* sysctls) and one shared mount namespace in which /etc and /var/lib are overlays on a tmpfs, so the commands
// write /etc/app, /etc/homeostat and /var/lib/homeostat as the docs say while nothing of the machine changes. The
// commands are typed into one bash, so variables carry from one to the next as in a terminal.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './agent.js';
import { AGENT_MAIN } from './agent.js';
import { CONTROLLER_MAIN, CTL_MAIN } from './ctl.js';

export const AGENT_UNIT = fileURLToPath(new URL('../../../packaging/systemd/homeostat-agent.service', import.meta.url));

export interface Typed {
  code: number;
  stdout: string;
  stderr: string;
}

interface Daemon {
  pid: number;
  log: string;
}

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error?.message || `exit ${r.status}`}`);
}

function gone(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

export class DocHost {
  private shell!: ChildProcessWithoutNullStreams;
  private shellOut = '';
  private shellErr = '';
  private seq = 0;
  readonly daemons = new Map<'agent' | 'controller', Daemon>();

  private constructor(
    readonly dir: string,
    readonly netns: string,
  ) {}

  get mountNs(): string {
    return path.join(this.dir, 'ns', 'mnt');
  }

  static async create(tag: string): Promise<DocHost> {
    const dir = mkdtempSync(path.join(tmpdir(), `hs-docs-${tag}-`));
    const host = new DocHost(dir, `hs-docs-${process.pid}-${tag}`);
    try {
      host.setUp();
    } catch (err) {
      await host.close();
      throw err;
    }
    return host;
  }

  private setUp(): void {
    const { dir, netns } = this;
    spawnSync('ip', ['netns', 'del', netns]);
    sh('ip', ['netns', 'add', netns]);
    sh('ip', ['netns', 'exec', netns, 'ip', 'link', 'set', 'lo', 'up']);
    // A persistent mount namespace needs its file on a private mount.
    const nsDir = path.join(dir, 'ns');
    mkdirSync(nsDir);
    sh('mount', ['--bind', nsDir, nsDir]);
    sh('mount', ['--make-private', nsDir]);
    writeFileSync(this.mountNs, '');
    sh('unshare', [`--mount=${this.mountNs}`, '--propagation', 'private', 'true']);
    const up = path.join(dir, 'upper');
    mkdirSync(up);
    const script = [
      'set -e',
      `mount -t tmpfs -o mode=0700 hs-docs ${up}`,
      ...['etc', 'var/lib'].map((d) => {
        const n = d.replace('/', '-');
        return `mkdir -p ${up}/${n}/u ${up}/${n}/w && mount -t overlay overlay -o lowerdir=/${d},upperdir=${up}/${n}/u,workdir=${up}/${n}/w /${d}`;
      }),
    ].join('\n');
    sh('nsenter', [`--mount=${this.mountNs}`, 'sh', '-c', script]);

    // The three commands as npm link would put them on PATH, on the project's Node.js.
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    for (const [name, main] of [['homeostat-agent', AGENT_MAIN], ['homeostat-controller', CONTROLLER_MAIN], ['homeostatctl', CTL_MAIN]] as const) {
      writeFileSync(path.join(bin, name), `#!/bin/sh\nexec '${process.execPath}' '${main}' "$@"\n`);
      chmodSync(path.join(bin, name), 0o755);
    }
    const home = path.join(dir, 'home');
    const work = path.join(dir, 'work');
    mkdirSync(home, { mode: 0o700 });
    mkdirSync(work);
    mkdirSync(path.join(dir, 'io'));
    const env: NodeJS.ProcessEnv = {
      PATH: [bin, path.dirname(process.execPath), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(':'),
      HOME: home,
      LANG: 'C.UTF-8',
      TERM: 'dumb',
      ...(process.env.XDG_RUNTIME_DIR ? { XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR } : {}),
    };
    this.shell = spawn('nsenter', [`--net=/run/netns/${netns}`, `--mount=${this.mountNs}`, '--', 'bash', '--noprofile', '--norc'], { cwd: work, env, stdio: 'pipe' });
    this.shell.stdout.on('data', (d: Buffer) => (this.shellOut += d.toString()));
    this.shell.stderr.on('data', (d: Buffer) => (this.shellErr += d.toString()));
    this.shell.stdin.write(`cd '${work}'\n`);
  }

  /** Types TEXT into the shell and waits for it to finish. */
  async type(text: string, timeoutMs = 60_000): Promise<Typed> {
    const n = ++this.seq;
    const io = path.join(this.dir, 'io', String(n));
    this.shell.stdin.write(`{ ${text}\n} >'${io}.out' 2>'${io}.err' </dev/null; printf '@@hs-docs %s %s\\n' ${n} $?\n`);
    const code = await this.marker(n, timeoutMs);
    return { code, stdout: readFileSync(`${io}.out`, 'utf8'), stderr: readFileSync(`${io}.err`, 'utf8') };
  }

  private async marker(n: number, timeoutMs: number): Promise<number> {
    const re = new RegExp(`^@@hs-docs ${n} (\\d+)$`, 'm');
    await waitFor(() => re.test(this.shellOut) || this.shell.exitCode !== null, timeoutMs, `command ${n} to finish`);
    const m = re.exec(this.shellOut);
    if (!m) throw new Error(`the shell ended: ${this.shellErr}`);
    return Number(m[1]);
  }

  /** Starts a daemon command in the background of the shell and waits until its log says READY. */
  async startDaemon(kind: 'agent' | 'controller', text: string, ready: string): Promise<Daemon> {
    const n = ++this.seq;
    const log = path.join(this.dir, 'io', `${n}.daemon.log`);
    this.shell.stdin.write(`${text} >'${log}' 2>&1 </dev/null &\nprintf '@@hs-docs %s %s\\n' ${n} $!\n`);
    const pid = await this.marker(n, 10_000);
    const daemon = { pid, log };
    this.daemons.set(kind, daemon);
    const logText = (): string => (existsSync(log) ? readFileSync(log, 'utf8') : '');
    await waitFor(() => logText().includes(ready) || gone(pid), 30_000, `${kind}: ${ready}`);
    if (!logText().includes(ready)) throw new Error(`${kind} ended before it was ready:\n${logText()}`);
    return daemon;
  }

  async stopDaemon(kind: 'agent' | 'controller'): Promise<void> {
    const d = this.daemons.get(kind);
    if (!d) throw new Error(`no ${kind} is running`);
    this.daemons.delete(kind);
    if (!gone(d.pid)) process.kill(d.pid, 'SIGTERM');
    await waitFor(() => gone(d.pid), 30_000, `${kind} to stop`);
  }

  daemonLog(kind: 'agent' | 'controller'): string {
    const d = this.daemons.get(kind);
    return d && existsSync(d.log) ? readFileSync(d.log, 'utf8') : '';
  }

  async close(): Promise<void> {
    for (const kind of [...this.daemons.keys()]) await this.stopDaemon(kind).catch(() => undefined);
    if (this.shell && this.shell.exitCode === null) {
      const ended = new Promise((r) => this.shell.once('exit', r));
      this.shell.stdin.end('exit\n');
      await ended;
    }
    // The overlays and their tmpfs go with the namespace once nothing holds it.
    spawnSync('umount', [this.mountNs]);
    spawnSync('umount', [path.join(this.dir, 'ns')]);
    spawnSync('ip', ['netns', 'del', this.netns]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
