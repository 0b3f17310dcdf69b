// A real `systemd --user` manager for service tests: start it when it is not running, write and remove test units, read their
// state the way an administrator would (systemctl), and clean up units left behind by crashed runs.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { processStartTime, run, type RunResult } from './netns.js';

export const RUNTIME_DIR = process.env.XDG_RUNTIME_DIR ?? `/run/user/${process.getuid?.() ?? 0}`;
/**
 * Test units live in the user's data dir (like /usr/lib/systemd for the system manager), not in ~/.config/systemd/user:
 * `mask` writes its /dev/null link into ~/.config/systemd/user and refuses when a real unit file already sits there.
 */
export const USER_UNIT_DIR = path.join(homedir(), '.local/share/systemd/user');
export const USER_CONFIG_DIR = path.join(homedir(), '.config/systemd/user');
/** Unit names are `hs-test-PID-NAME.service`, so a crashed run's units can be told from those of a live one. */
export const TEST_UNIT_PREFIX = 'hs-test-';

const READY_STATES = new Set(['running', 'degraded']);

/** The environment a child needs to reach the user manager (systemctl --user, the agent with --systemd-scope user). */
export function userManagerEnv(): NodeJS.ProcessEnv {
  return { ...process.env, XDG_RUNTIME_DIR: RUNTIME_DIR };
}

export function systemctlUser(args: string[], opts: { allowFail?: boolean } = {}): Promise<RunResult> {
  return run('systemctl', ['--user', ...args], { env: userManagerEnv(), timeoutMs: 30_000, ...(opts.allowFail ? { allowFail: true } : {}) });
}

async function managerState(): Promise<string> {
  const r = await run('systemctl', ['--user', 'is-system-running'], { env: userManagerEnv(), allowFail: true, timeoutMs: 10_000 });
  return r.stdout.trim();
}

/**
 * Makes sure a user manager answers on $XDG_RUNTIME_DIR/bus, starting one as ENVIRONMENT.md describes when none does; sets
 * XDG_RUNTIME_DIR in this process so in-process clients find the bus. Idempotent; also removes units of crashed runs.
 */
export async function ensureUserManager(timeoutMs = 30_000): Promise<void> {
  process.env.XDG_RUNTIME_DIR = RUNTIME_DIR;
  if (!READY_STATES.has(await managerState())) {
    mkdirSync('/run/systemd/system', { recursive: true });
    mkdirSync(RUNTIME_DIR, { recursive: true, mode: 0o700 });
    const log = openSync('/tmp/systemd-user.log', 'a');
    const child = spawn('setsid', ['/lib/systemd/systemd', '--user'], { env: userManagerEnv(), detached: true, stdio: ['ignore', log, log] });
    child.unref();
    const deadline = Date.now() + timeoutMs;
    // The bus socket appears a moment after the manager starts; before that, systemctl only says it cannot connect.
    for (;;) {
      const state = existsSync(path.join(RUNTIME_DIR, 'bus')) ? await managerState() : '';
      if (READY_STATES.has(state)) break;
      if (state === 'starting' || state === 'initializing') {
        await run('systemctl', ['--user', 'is-system-running', '--wait'], { env: userManagerEnv(), allowFail: true, timeoutMs: Math.max(1000, deadline - Date.now()) });
      }
      if (Date.now() > deadline) throw new Error(`systemd --user did not come up within ${timeoutMs} ms (see /tmp/systemd-user.log)`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await cleanupLeftoverUnits();
}

export interface UnitView {
  loadState: string;
  activeState: string;
  subState: string;
  unitFileState: string;
}

/** The unit's state as `systemctl --user show` reports it. */
export async function unitView(unit: string): Promise<UnitView> {
  const r = await systemctlUser(['show', '-p', 'LoadState,ActiveState,SubState,UnitFileState', unit]);
  const props = new Map(r.stdout.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const));
  return {
    loadState: props.get('LoadState') ?? '',
    activeState: props.get('ActiveState') ?? '',
    subState: props.get('SubState') ?? '',
    unitFileState: props.get('UnitFileState') ?? '',
  };
}

/** The test's own units: unique names, written to USER_UNIT_DIR, all removed (stopped, unmasked, disabled) by `removeAll`. */
export class TestUnits {
  private readonly units = new Set<string>();

  /** `hs-test-PID-base.service` */
  name(base: string): string {
    return `${TEST_UNIT_PREFIX}${process.pid}-${base}.service`;
  }

  /** Writes a unit file and reloads the manager; returns the unit name. */
  async write(base: string, body: string): Promise<string> {
    const unit = this.name(base);
    mkdirSync(USER_UNIT_DIR, { recursive: true });
    writeFileSync(path.join(USER_UNIT_DIR, unit), body);
    this.units.add(unit);
    await systemctlUser(['daemon-reload']);
    return unit;
  }

  /** A unit that runs until stopped, wanted by default.target when enabled. */
  long(base: string): Promise<string> {
    return this.write(base, '[Unit]\nDescription=homeostat test unit\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=default.target\n');
  }

  /** A unit that dies 0.2 s after each start and is not restarted by systemd. */
  dying(base: string): Promise<string> {
    return this.write(base, "[Unit]\nDescription=homeostat test unit that dies\n\n[Service]\nExecStart=/bin/sh -c 'sleep 0.2; exit 1'\nRestart=no\n\n[Install]\nWantedBy=default.target\n");
  }

  async removeAll(): Promise<void> {
    await removeUnits([...this.units]);
    this.units.clear();
  }
}

async function removeUnits(units: string[]): Promise<void> {
  if (units.length === 0) return;
  await systemctlUser(['stop', ...units], { allowFail: true });
  await systemctlUser(['unmask', ...units], { allowFail: true });
  await systemctlUser(['unmask', '--runtime', ...units], { allowFail: true });
  await systemctlUser(['disable', ...units], { allowFail: true });
  for (const u of units) {
    rmSync(path.join(USER_UNIT_DIR, u), { force: true });
    rmSync(path.join(USER_CONFIG_DIR, u), { force: true });
    rmSync(path.join(USER_CONFIG_DIR, 'default.target.wants', u), { force: true });
  }
  await systemctlUser(['daemon-reload'], { allowFail: true });
  await systemctlUser(['reset-failed', ...units], { allowFail: true });
}

/** Removes test units whose creating process is gone (a crashed or killed run). */
export async function cleanupLeftoverUnits(): Promise<string[]> {
  const names = new Set<string>();
  for (const dir of [USER_UNIT_DIR, USER_CONFIG_DIR, path.join(USER_CONFIG_DIR, 'default.target.wants')]) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir)) if (f.startsWith(TEST_UNIT_PREFIX)) names.add(f);
  }
  const stale = [...names].filter((u) => {
    const pid = Number(/^hs-test-(\d+)-/.exec(u)?.[1]);
    return !Number.isInteger(pid) || processStartTime(pid) === undefined;
  });
  await removeUnits(stale);
  return stale;
}
