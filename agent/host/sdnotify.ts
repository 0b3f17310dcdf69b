// Tells systemd how the daemon is doing (READY, STATUS, STOPPING, WATCHDOG) by running systemd-notify; a no-op outside a Type=notify unit.
//
// Why a child process: sd_notify is one datagram on an AF_UNIX socket, and Node cannot open
// AF_UNIX datagram sockets. systemd-notify ships with every systemd; it sends as our PID when it
// may (root), else as itself, and since systemd 246 it waits until the manager has read the
// message, so it is attributed to our unit even after it exits. The units set NotifyAccess=all
// for that second case. A native addon would save a fork per message, but messages are rare
// (a watchdog ping every WatchdogSec/2) and a second addon would have to be built and extracted
// like better-sqlite3's.
import { execFile } from 'node:child_process';

interface Target {
  socket: string;
  env: NodeJS.ProcessEnv;
}

let target: Target | null | undefined;
let queue: Promise<unknown> = Promise.resolve();

/** How long one systemd-notify may take before we give up on that message. */
const SEND_TIMEOUT_MS = 5_000;

/**
 * Reads NOTIFY_SOCKET once and takes it out of our environment, so that the processes the agent
 * runs (systemctl, validate commands) cannot speak for the unit.
 */
function resolveTarget(): Target | null {
  if (target !== undefined) return target;
  const socket = process.env.NOTIFY_SOCKET;
  delete process.env.NOTIFY_SOCKET;
  target = socket ? { socket, env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', NOTIFY_SOCKET: socket } } : null;
  return target;
}

/** Sends one message; resolves true once systemd has it, false when there is no manager to tell or sending failed. */
function send(fields: Record<string, string>): Promise<boolean> {
  const t = resolveTarget();
  if (t === null) return Promise.resolve(false);
  const args = [`--pid=${process.pid}`, ...Object.entries(fields).map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}`)];
  // One at a time, so READY never overtakes the STATUS sent before it.
  const sent = queue.then(
    () =>
      new Promise<boolean>((resolve) => {
        execFile('systemd-notify', args, { env: t.env, timeout: SEND_TIMEOUT_MS }, (err) => resolve(err === null));
      }),
  );
  queue = sent;
  return sent;
}

/** Start-up is complete: baselines are loaded and enforced. */
export function notifyReady(status?: string): Promise<boolean> {
  return send(status === undefined ? { READY: '1' } : { READY: '1', STATUS: status });
}

/** A one-line status shown by `systemctl status`. */
export function notifyStatus(status: string): Promise<boolean> {
  return send({ STATUS: status });
}

/** Shutdown has begun, so systemd does not read a slow exit as a hang. */
export function notifyStopping(): Promise<boolean> {
  return send({ STOPPING: '1' });
}

/** The ping interval systemd asked for (half of WATCHDOG_USEC), or undefined when no watchdog is armed for this process. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

/**
 * Pings the watchdog from a timer on the event loop, so a blocked or wedged loop stops the pings
 * and systemd restarts the agent. Returns a function that stops the pings.
 */
export function startWatchdog(): () => void {
  const every = watchdogIntervalMs();
  if (every === undefined || resolveTarget() === null) return () => {};
  let inFlight = false;
  // A slow manager must not pile pings up behind one another.
  const ping = (): void => {
    if (inFlight) return;
    inFlight = true;
    void send({ WATCHDOG: '1' }).finally(() => {
      inFlight = false;
    });
  };
  ping();
  const timer = setInterval(ping, every);
  // The watchdog must not be what keeps the process alive.
  timer.unref();
  return () => clearInterval(timer);
}
