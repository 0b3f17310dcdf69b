// Who caused a drift: the shape every `drift_detected` carries, shared by the agent (which learns it) and the controller.

/**
 * How the actor was learned: `audit` from the Linux audit subsystem's records, `journal` from what systemd itself records
 * about a unit, `self` for the agent's own writes, `unknown` when nothing says who it was.
 */
export const ACTOR_SOURCES = ['audit', 'journal', 'self', 'unknown'] as const;
export type ActorSource = (typeof ACTOR_SOURCES)[number];

export interface Actor {
  source: ActorSource;
  pid?: number;
  /** The executable, as the kernel names it: for a script, its interpreter (`/usr/bin/bash`); the script is in `cmdline`. */
  exe?: string;
  /** Arguments joined by spaces. From the audit record it is cut at 128 bytes by the kernel unless read from /proc in time. */
  cmdline?: string;
  uid?: number;
  user?: string;
  /** The audit login uid: who logged in, whatever `sudo` or `su` changed since. Absent when unset (daemons, boot). */
  loginUid?: number;
  loginUser?: string;
  /** The systemd unit or session scope of the process (`puppet.service`, `session-4.scope`). */
  unit?: string;
  /** Executables of the parent chain, nearest first. */
  parents?: string[];
  /** When the change happened by the source's own clock (ms since the epoch). */
  time?: number;
  /** What the source said when it could not name a process, e.g. how a unit's main process ended. */
  detail?: string;
}

export const UNKNOWN_ACTOR: Actor = Object.freeze({ source: 'unknown' }) as Actor;

/** Interpreters whose own path says little: the script they run names the actor better. */
const INTERPRETER = /^(ba|da|z|k|c|tc)?sh$|^(python|perl|ruby|node|php|lua|tclsh)[0-9.]*$/;

/**
 * A short name for messages: the executable, or `interpreter script` for scripts, and the unit in parentheses:
 * `/usr/bin/puppet (puppet.service)`, `/usr/bin/bash /opt/fix.sh (session-3.scope)`.
 */
export function actorLabel(a: Actor): string {
  if (a.source === 'unknown' && a.exe === undefined) return 'an unknown process';
  let name = a.exe ?? (a.pid === undefined ? a.source : `pid ${a.pid}`);
  const base = name.slice(name.lastIndexOf('/') + 1);
  if (INTERPRETER.test(base)) {
    const script = scriptOf(a.cmdline);
    if (script !== undefined) name = `${name} ${script}`;
  }
  return a.unit === undefined ? name : `${name} (${a.unit})`;
}

/** The first argument after the interpreter that is not an option: the script it runs. */
function scriptOf(cmdline: string | undefined): string | undefined {
  if (cmdline === undefined) return undefined;
  const args = cmdline.split(' ').slice(1);
  for (const arg of args) {
    if (arg === '' || arg.startsWith('-')) continue;
    return arg;
  }
  return undefined;
}

/** Two drifts were made by "the same" actor when executable, script and unit agree; pids change with every run. */
export function actorIdentity(a: Actor): string | undefined {
  if (a.source === 'unknown' || a.source === 'self') return undefined;
  if (a.exe === undefined && a.unit === undefined) return undefined;
  return actorLabel(a);
}
