// The systemd client: one D-Bus connection to the system or the user manager, shared by every service resource of the agent.
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import type * as dbus from 'dbus-next';

// Loaded on first connection: the D-Bus library is sizeable and a one-shot `check` of files alone should not pay for it.
let dbusLib: typeof import('dbus-next') | undefined;
function D(): typeof import('dbus-next') {
  if (!dbusLib) throw new Error('D-Bus library used before a connection was opened');
  return dbusLib;
}
import { HsError, type ErrorCode } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { SystemdScope } from '../settings.js';

const DEST = 'org.freedesktop.systemd1';
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER_IFACE = 'org.freedesktop.systemd1.Manager';
const UNIT_IFACE = 'org.freedesktop.systemd1.Unit';
const PROPS_IFACE = 'org.freedesktop.DBus.Properties';

/** What one unit looks like to the manager right now. */
export interface UnitStatus {
  unit: string;
  /** `loaded`, `not-found`, `masked`, `bad-setting`, `error`, `stub`. */
  loadState: string;
  /** `active`, `reloading`, `inactive`, `failed`, `activating`, `deactivating`. */
  activeState: string;
  subState: string;
  /** Read fresh from the unit files on disk: `enabled`, `disabled`, `masked`, `static`, ...; `''` when no unit file exists. */
  unitFileState: string;
  /** Set for units generated from a SysV init script: their enablement lives in /etc/rc?.d, outside the D-Bus API. */
  sysv: boolean;
}

export interface SystemdClientOptions {
  scope: SystemdScope;
  log: Logger;
  /** A D-Bus address (`unix:path=...`); by default the scope's bus. */
  busAddress?: string;
  /** Any one D-Bus call that takes longer fails with HS_HOST_TIMEOUT. */
  callTimeoutMs?: number;
  /** A start or stop job that takes longer fails with HS_HOST_TIMEOUT (the job itself keeps running). */
  jobTimeoutMs?: number;
}

type Listener = (reason: string) => void;

const DEFAULT_CALL_TIMEOUT_MS = 25_000;
const DEFAULT_JOB_TIMEOUT_MS = 90_000;
/** JobRemoved signals that arrived before their job's waiter was registered (kept briefly, bounded). */
const EARLY_JOBS_KEPT = 256;

/** systemd's object path for a unit: every byte outside [A-Za-z0-9] becomes `_xx` (sd_bus_path_encode). */
export function unitObjectPath(unit: string): string {
  if (unit === '') return `${MANAGER_PATH}/unit/_`;
  let out = '';
  for (const byte of Buffer.from(unit, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9]/.test(c) ? c : `_${byte.toString(16).padStart(2, '0')}`;
  }
  return `${MANAGER_PATH}/unit/${out}`;
}

/** The bus a scope talks to. `unix:path=` is rewritten to dbus-next's `unix:socket=` so its optional native addon is never needed. */
export function busSocketPath(scope: SystemdScope, env: NodeJS.ProcessEnv = process.env): string {
  const fromAddress = (addr: string | undefined): string | undefined => {
    const m = addr ? /^unix:path=([^,;]+)/.exec(addr) : null;
    return m?.[1];
  };
  if (scope === 'system') return fromAddress(env.DBUS_SYSTEM_BUS_ADDRESS) ?? '/run/dbus/system_bus_socket';
  const runtimeDir = env.XDG_RUNTIME_DIR ?? `/run/user/${process.getuid?.() ?? 0}`;
  return fromAddress(env.DBUS_SESSION_BUS_ADDRESS) ?? `${runtimeDir}/bus`;
}

interface Connection {
  bus: dbus.MessageBus;
  /** Rejects every call in flight when the connection fails, instead of leaving them to time out. */
  inflight: Set<(err: HsError) => void>;
  dead: boolean;
}

/**
 * A systemd manager over D-Bus. Connects lazily and again after a failure; keeps the signal subscriptions (Manager.Subscribe and
 * one match per watched unit) across reconnects, and tells every watcher after a reconnect because signals may have been missed.
 */
export class SystemdClient {
  readonly scope: SystemdScope;
  private readonly log: Logger;
  private readonly socketPath: string;
  private readonly callTimeoutMs: number;
  private readonly jobTimeoutMs: number;
  private conn: Connection | undefined;
  private connecting: Promise<Connection> | undefined;
  private closed = false;
  private readonly watchers = new Map<string, Set<Listener>>();
  private readonly unitByPath = new Map<string, string>();
  private readonly jobWaiters = new Map<string, (result: string) => void>();
  private readonly earlyJobs = new Map<string, string>();

  constructor(opts: SystemdClientOptions) {
    this.scope = opts.scope;
    this.log = opts.log;
    this.socketPath = opts.busAddress ? (/^unix:(?:path|socket)=([^,;]+)/.exec(opts.busAddress)?.[1] ?? opts.busAddress) : busSocketPath(opts.scope);
    this.callTimeoutMs = opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.jobTimeoutMs = opts.jobTimeoutMs ?? DEFAULT_JOB_TIMEOUT_MS;
  }

  /** The unit's load, active and unit-file state; a unit that does not exist reads as `loadState: 'not-found'`. */
  async status(unit: string): Promise<UnitStatus> {
    const path = unitObjectPath(unit);
    // Reading a unit's properties loads it on demand, so no LoadUnit round trip; the four calls go out together.
    const [loadState, activeState, subState, sourcePath, fileState] = await Promise.all([
      this.unitProperty(path, 'LoadState', unit),
      this.unitProperty(path, 'ActiveState', unit),
      this.unitProperty(path, 'SubState', unit),
      this.unitProperty(path, 'SourcePath', unit),
      // The unit's own UnitFileState property is cached until a reload; GetUnitFileState reads the links on disk now.
      this.call(MANAGER_PATH, MANAGER_IFACE, 'GetUnitFileState', 's', [unit], unit).then(
        (body) => stringAt(body, 0),
        (err: unknown) => {
          if (err instanceof HsError && err.code === 'HS_HOST_NOT_FOUND') return '';
          throw err;
        },
      ),
    ]);
    const sysv = this.scope === 'system' && fileState === 'generated' && sourcePath.startsWith('/etc/init.d/');
    const unitFileState = sysv ? await this.sysvEnablement(unit) : fileState;
    return { unit, loadState, activeState, subState, unitFileState, sysv };
  }

  /** Starts the unit (`replace` mode) and waits for its job to finish. */
  async start(unit: string): Promise<void> {
    await this.runJob(unit, 'StartUnit');
  }

  async stop(unit: string): Promise<void> {
    await this.runJob(unit, 'StopUnit');
  }

  /** Clears the `failed` state and systemd's start rate limit; the engine's flap policy limits restarts instead. */
  async resetFailed(unit: string): Promise<void> {
    await this.call(MANAGER_PATH, MANAGER_IFACE, 'ResetFailedUnit', 's', [unit], unit);
  }

  /** Enables or disables the unit's install links, then reloads the manager as `systemctl enable` does. */
  async setEnabled(unit: string, enabled: boolean, sysv: boolean): Promise<void> {
    if (sysv) {
      // D-Bus cannot serve this: EnableUnitFiles only manages unit-file links, while a SysV script's enablement is its
      // /etc/rc?.d links, which systemctl maintains through systemd-sysv-install. So this one case goes through systemctl.
      await this.systemctl([enabled ? 'enable' : 'disable', unit], unit);
      return;
    }
    if (enabled) {
      const body = await this.call(MANAGER_PATH, MANAGER_IFACE, 'EnableUnitFiles', 'asbb', [[unit], false, false], unit);
      if (body[0] === false) {
        throw new HsError('HS_HOST_IO', `cannot enable ${unit}: the unit has no [Install] section`, { resource: resourceId(unit) });
      }
    } else {
      await this.call(MANAGER_PATH, MANAGER_IFACE, 'DisableUnitFiles', 'asb', [[unit], false], unit);
    }
    await this.reload(unit);
  }

  /** Masks (links the unit to /dev/null) or unmasks it, persistently and in /run, then reloads so the loaded unit follows. */
  async setMasked(unit: string, masked: boolean): Promise<void> {
    if (masked) {
      await this.call(MANAGER_PATH, MANAGER_IFACE, 'MaskUnitFiles', 'asbb', [[unit], false, false], unit);
    } else {
      // A runtime mask (in /run) is removed by the runtime variant only; removing both is idempotent.
      await this.call(MANAGER_PATH, MANAGER_IFACE, 'UnmaskUnitFiles', 'asb', [[unit], false], unit);
      await this.call(MANAGER_PATH, MANAGER_IFACE, 'UnmaskUnitFiles', 'asb', [[unit], true], unit);
    }
    await this.reload(unit);
  }

  /** `daemon-reload`: the reply comes once the manager has re-read its units. */
  async reload(unit = ''): Promise<void> {
    await this.call(MANAGER_PATH, MANAGER_IFACE, 'Reload', '', [], unit);
  }

  /**
   * Calls `onChange` whenever the unit may have changed: its properties (active, sub and unit-file state), a job on it finishing,
   * unit files changing anywhere, the manager reloading, or the bus reconnecting. The match is armed when the promise resolves.
   */
  async watchUnit(unit: string, onChange: Listener): Promise<() => void> {
    const conn = await this.connection();
    let set = this.watchers.get(unit);
    if (!set) {
      set = new Set();
      this.watchers.set(unit, set);
      this.unitByPath.set(unitObjectPath(unit), unit);
      await this.busCall(conn, addMatchMessage(unitMatchRule(unit)), unit);
    }
    set.add(onChange);
    return () => {
      const s = this.watchers.get(unit);
      if (!s) return;
      s.delete(onChange);
      if (s.size > 0) return;
      this.watchers.delete(unit);
      this.unitByPath.delete(unitObjectPath(unit));
      const c = this.conn;
      if (c && !c.dead) this.busCall(c, removeMatchMessage(unitMatchRule(unit)), unit).catch(() => undefined);
    };
  }

  /** Whether a connection is open (for tests and status). */
  get connected(): boolean {
    return this.conn !== undefined && !this.conn.dead;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watchers.clear();
    this.unitByPath.clear();
    const c = this.conn;
    this.conn = undefined;
    if (c) this.drop(c, new HsError('HS_HOST_IO', 'the systemd client was closed', { retryable: true }));
  }

  // --- connection -------------------------------------------------------------------------------------------------

  private async connection(): Promise<Connection> {
    if (this.closed) throw new HsError('HS_HOST_IO', 'the systemd client was closed', { retryable: true });
    if (this.conn && !this.conn.dead) return this.conn;
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connect(): Promise<Connection> {
    const where = `${this.scope} manager at ${this.socketPath}`;
    // dbus-next never settles its handshake when the socket is missing; checking first makes that a clean retryable error.
    try {
      await fsp.stat(this.socketPath);
    } catch (err) {
      throw new HsError('HS_HOST_IO', `cannot reach the systemd ${where}: no D-Bus socket`, { cause: err, retryable: true });
    }
    dbusLib ??= await import('dbus-next');
    const bus = D().sessionBus({ busAddress: `unix:socket=${this.socketPath}` });
    const conn: Connection = { bus, inflight: new Set(), dead: false };
    // One error listener for the connection's whole life: an 'error' with no listener would throw and end the agent.
    let handshake: ((err: unknown) => void) | undefined;
    bus.on('error', (err: unknown) => {
      if (handshake) {
        handshake(err);
        return;
      }
      if (conn.dead) return;
      this.log.warn({ err: describe(err), scope: this.scope }, 'systemd bus connection failed');
      this.drop(conn, new HsError('HS_HOST_IO', `lost the systemd ${where}: ${describe(err)}`, { cause: err, retryable: true }));
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => handshake?.(new Error('no answer to Hello')), this.callTimeoutMs);
      handshake = (err: unknown): void => {
        handshake = undefined;
        clearTimeout(timer);
        const failure = new HsError('HS_HOST_IO', `cannot reach the systemd ${where}: ${describe(err)}`, { cause: err, retryable: true });
        this.drop(conn, failure);
        reject(failure);
      };
      bus.once('connect', () => {
        handshake = undefined;
        clearTimeout(timer);
        resolve();
      });
    });
    bus.on('message', (msg: dbus.Message) => this.onMessage(msg));
    // Arm before anyone relies on it: Manager signals (jobs, unit files, reloads), the unit matches kept from before, then
    // Subscribe so the manager emits unit signals at all.
    try {
      await this.busCall(conn, addMatchMessage(managerMatchRule()), '');
      for (const unit of this.watchers.keys()) await this.busCall(conn, addMatchMessage(unitMatchRule(unit)), unit);
      await this.busCall(conn, new (D().Message)({ destination: DEST, path: MANAGER_PATH, interface: MANAGER_IFACE, member: 'Subscribe' }), '');
    } catch (err) {
      // A bus without a systemd manager on it (or one that refuses us) is no connection at all: do not leave the socket open.
      const failure = dbusError(err, `subscribe to the systemd ${where}`, '');
      this.drop(conn, failure);
      throw failure;
    }
    const reconnect = this.conn !== undefined;
    this.conn = conn;
    this.log.debug({ scope: this.scope, socket: this.socketPath }, 'systemd bus connected');
    if (reconnect) this.notifyAll('bus-reconnected');
    return conn;
  }

  private drop(conn: Connection, err: HsError): void {
    if (conn.dead) return;
    conn.dead = true;
    for (const reject of conn.inflight) reject(err);
    conn.inflight.clear();
    for (const [job, resolve] of this.jobWaiters) {
      this.jobWaiters.delete(job);
      resolve('disconnected');
    }
    try {
      conn.bus.disconnect();
    } catch {
      // already closed
    }
  }

  private onMessage(msg: dbus.Message): void {
    if (msg.type !== D().MessageType.SIGNAL) return;
    const body: unknown[] = Array.isArray(msg.body) ? msg.body : [];
    if (msg.interface === PROPS_IFACE && msg.member === 'PropertiesChanged') {
      const unit = this.unitByPath.get(msg.path);
      if (unit) this.notify(unit, 'properties-changed');
      return;
    }
    if (msg.path !== MANAGER_PATH || msg.interface !== MANAGER_IFACE) return;
    switch (msg.member) {
      case 'JobRemoved': {
        // (u id, o job, s unit, s result)
        const job = stringAt(body, 1);
        const result = stringAt(body, 3);
        const waiter = this.jobWaiters.get(job);
        if (waiter) {
          this.jobWaiters.delete(job);
          waiter(result);
        } else {
          this.earlyJobs.set(job, result);
          if (this.earlyJobs.size > EARLY_JOBS_KEPT) {
            const oldest = this.earlyJobs.keys().next();
            if (!oldest.done) this.earlyJobs.delete(oldest.value);
          }
        }
        this.notify(stringAt(body, 2), `job-removed:${result}`);
        return;
      }
      // UnitNew and UnitRemoved are left out on purpose: reading an inactive unit loads it and systemd unloads it again
      // right after, so reacting to them would make every observe trigger the next one.
      case 'UnitFilesChanged':
        this.notifyAll('unit-files-changed');
        return;
      case 'Reloading':
        // Reloading(true) comes first; the state is only worth reading once it is done.
        if (body[0] === false) this.notifyAll('manager-reloaded');
        return;
      default:
        return;
    }
  }

  private notify(unit: string, reason: string): void {
    const set = this.watchers.get(unit);
    if (!set) return;
    for (const listener of [...set]) listener(reason);
  }

  private notifyAll(reason: string): void {
    for (const unit of [...this.watchers.keys()]) this.notify(unit, reason);
  }

  // --- calls ------------------------------------------------------------------------------------------------------

  private async runJob(unit: string, method: 'StartUnit' | 'StopUnit'): Promise<void> {
    const verb = method === 'StartUnit' ? 'start' : 'stop';
    const body = await this.call(MANAGER_PATH, MANAGER_IFACE, method, 'ss', [unit, 'replace'], unit);
    const job = stringAt(body, 0);
    const result = await this.waitJob(job, unit, verb);
    if (result === 'done') return;
    // `canceled` means another job replaced ours (someone else acted on the unit): the next reconcile reads what happened.
    throw new HsError('HS_HOST_IO', `${verb} ${unit}: the job ended with result '${result}'`, {
      resource: resourceId(unit),
      retryable: true,
    });
  }

  private waitJob(job: string, unit: string, verb: string): Promise<string> {
    const early = this.earlyJobs.get(job);
    if (early !== undefined) {
      this.earlyJobs.delete(job);
      return Promise.resolve(early);
    }
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.jobWaiters.delete(job);
        reject(
          new HsError('HS_HOST_TIMEOUT', `${verb} ${unit}: the job did not finish within ${this.jobTimeoutMs} ms`, {
            resource: resourceId(unit),
            retryable: true,
          }),
        );
      }, this.jobTimeoutMs);
      this.jobWaiters.set(job, (result) => {
        clearTimeout(timer);
        if (result === 'disconnected') {
          reject(new HsError('HS_HOST_IO', `${verb} ${unit}: lost the bus while waiting for the job`, { resource: resourceId(unit), retryable: true }));
        } else {
          resolve(result);
        }
      });
    });
  }

  private async unitProperty(path: string, name: string, unit: string): Promise<string> {
    const body = await this.call(path, PROPS_IFACE, 'Get', 'ss', [UNIT_IFACE, name], unit);
    const v = body[0];
    const value = v instanceof D().Variant ? (v.value as unknown) : v;
    return typeof value === 'string' ? value : '';
  }

  private async call(path: string, iface: string, member: string, signature: string, body: unknown[], unit: string): Promise<unknown[]> {
    const conn = await this.connection();
    const msg = new (D().Message)({ destination: DEST, path, interface: iface, member, signature, body });
    return this.busCall(conn, msg, unit);
  }

  private busCall(conn: Connection, msg: dbus.Message, unit: string): Promise<unknown[]> {
    const what = `${msg.member}${unit ? ` ${unit}` : ''}`;
    return new Promise<unknown[]>((resolve, reject) => {
      const settle = (err: HsError | undefined, body?: unknown[]): void => {
        clearTimeout(timer);
        conn.inflight.delete(onDrop);
        if (err) reject(err);
        else resolve(body ?? []);
      };
      const onDrop = (err: HsError): void => settle(err);
      const timer = setTimeout(
        () => settle(new HsError('HS_HOST_TIMEOUT', `${what}: no answer from systemd within ${this.callTimeoutMs} ms`, { retryable: true, resource: resourceId(unit) })),
        this.callTimeoutMs,
      );
      if (conn.dead) {
        settle(new HsError('HS_HOST_IO', `${what}: the systemd bus connection is closed`, { retryable: true }));
        return;
      }
      conn.inflight.add(onDrop);
      conn.bus.call(msg).then(
        (reply) => settle(undefined, reply && Array.isArray(reply.body) ? (reply.body as unknown[]) : []),
        (err: unknown) => settle(dbusError(err, what, unit)),
      );
    });
  }

  private async sysvEnablement(unit: string): Promise<string> {
    // D-Bus cannot serve this either: only systemd-sysv-install (via systemctl) knows whether a SysV script is enabled.
    const out = await this.systemctl(['is-enabled', unit], unit, true);
    return out.trim().split('\n')[0] ?? '';
  }

  /** Runs systemctl for the cases D-Bus does not cover; `tolerateExit` for queries that answer through their exit code. */
  private systemctl(args: string[], unit: string, tolerateExit = false): Promise<string> {
    const full = this.scope === 'user' ? ['--user', ...args] : args;
    return new Promise<string>((resolve, reject) => {
      execFile('systemctl', full, { timeout: this.callTimeoutMs }, (err, stdout, stderr) => {
        if (err && !(tolerateExit && typeof err.code === 'number')) {
          reject(new HsError('HS_HOST_IO', `systemctl ${args.join(' ')}: ${stderr.trim() || err.message}`, { cause: err, resource: resourceId(unit), retryable: true }));
          return;
        }
        resolve(stdout);
      });
    });
  }
}

function managerMatchRule(): string {
  return `type='signal',sender='${DEST}',path='${MANAGER_PATH}',interface='${MANAGER_IFACE}'`;
}

function unitMatchRule(unit: string): string {
  return `type='signal',sender='${DEST}',path='${unitObjectPath(unit)}',interface='${PROPS_IFACE}',member='PropertiesChanged'`;
}

function addMatchMessage(rule: string): dbus.Message {
  return busDriverMessage('AddMatch', rule);
}

function removeMatchMessage(rule: string): dbus.Message {
  return busDriverMessage('RemoveMatch', rule);
}

function busDriverMessage(member: string, rule: string): dbus.Message {
  return new (D().Message)({
    destination: 'org.freedesktop.DBus',
    path: '/org/freedesktop/DBus',
    interface: 'org.freedesktop.DBus',
    member,
    signature: 's',
    body: [rule],
  });
}

/** Errors name the resource the way the audit log does; calls made for no particular unit name none. */
function resourceId(unit: string): string | undefined {
  return unit ? `service:${unit}` : undefined;
}

function stringAt(body: unknown[], i: number): string {
  const v = body[i];
  return typeof v === 'string' ? v : '';
}

function describe(err: unknown): string {
  if (err instanceof D().DBusError) return `${err.type}: ${err.text}`;
  return err instanceof Error ? err.message : String(err);
}

/** D-Bus error names mapped onto the vocabulary; anything unknown is a retryable I/O failure. */
const DBUS_ERRORS: Record<string, { code: ErrorCode; retryable: boolean }> = {
  'org.freedesktop.systemd1.NoSuchUnit': { code: 'HS_HOST_NOT_FOUND', retryable: true },
  'org.freedesktop.DBus.Error.FileNotFound': { code: 'HS_HOST_NOT_FOUND', retryable: true },
  'org.freedesktop.systemd1.LoadFailed': { code: 'HS_HOST_IO', retryable: false },
  'org.freedesktop.systemd1.BadUnitSetting': { code: 'HS_HOST_IO', retryable: false },
  'org.freedesktop.systemd1.UnitMasked': { code: 'HS_HOST_IO', retryable: false },
  'org.freedesktop.systemd1.OnlyByDependency': { code: 'HS_HOST_IO', retryable: false },
  'org.freedesktop.DBus.Error.AccessDenied': { code: 'HS_HOST_PERMISSION', retryable: false },
  'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired': { code: 'HS_HOST_PERMISSION', retryable: false },
  'org.freedesktop.DBus.Error.NoReply': { code: 'HS_HOST_TIMEOUT', retryable: true },
  'org.freedesktop.DBus.Error.Timeout': { code: 'HS_HOST_TIMEOUT', retryable: true },
};

function dbusError(err: unknown, what: string, unit: string): HsError {
  if (err instanceof HsError) return err;
  const type = err instanceof D().DBusError ? err.type : undefined;
  const known = type ? DBUS_ERRORS[type] : undefined;
  return new HsError(known?.code ?? 'HS_HOST_IO', `${what}: ${describe(err)}`, {
    cause: err,
    retryable: known?.retryable ?? true,
    resource: resourceId(unit),
  });
}
