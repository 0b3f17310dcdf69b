// Who changed a service: the `systemctl` run that asked for it, when auditd records program runs; otherwise what systemd
// itself records about the unit — how its main process ended, or that a job or a unit file change did it — which names
// the cause but, for a job or a signal, not who asked. What cannot be known is said in `detail`.
import { execFile } from 'node:child_process';
import { constants } from 'node:os';
import type { Actor } from '../../lib/policy/actor.js';
import type { AuditAttribution, LookupQuery } from './audit-actors.js';

/** The programs whose runs are watched to attribute service and kernel-setting changes. */
export const SERVICE_PROGRAMS = ['/usr/bin/systemctl'];
export const SYSCTL_PROGRAMS = ['/usr/sbin/sysctl'];

/** What the manager says about a unit right now (systemctl show). */
export interface UnitFacts {
  loadState: string;
  activeState: string;
  subState: string;
  /** How the last run ended: success, exit-code, signal, core-dump, timeout, watchdog, start-limit-hit, ... */
  result: string;
  /** 1 exited, 2 killed, 3 dumped core (the CLD_* codes); 0 when it has not run. */
  execMainCode: number;
  /** The exit status, or the signal number when killed. */
  execMainStatus: number;
  execMainPid: number;
  unitFileState: string;
}

export type UnitFactsReader = (unit: string) => Promise<UnitFacts | undefined>;

const PROPS = ['LoadState', 'ActiveState', 'SubState', 'Result', 'ExecMainCode', 'ExecMainStatus', 'ExecMainPID', 'UnitFileState'];

/** Reads the facts with `systemctl [--user] show`, as an administrator would. */
export function systemctlFacts(scope: 'system' | 'user', env: NodeJS.ProcessEnv = process.env): UnitFactsReader {
  return (unit) =>
    new Promise((resolve) => {
      const args = [...(scope === 'user' ? ['--user'] : []), 'show', '-p', PROPS.join(','), '--', unit];
      execFile('systemctl', args, { timeout: 10_000, env, maxBuffer: 1024 * 1024 }, (err, stdout) => {
        if (err) return resolve(undefined);
        const p = new Map<string, string>();
        for (const line of String(stdout).split('\n')) {
          const eq = line.indexOf('=');
          if (eq > 0) p.set(line.slice(0, eq), line.slice(eq + 1));
        }
        resolve({
          loadState: p.get('LoadState') ?? '',
          activeState: p.get('ActiveState') ?? '',
          subState: p.get('SubState') ?? '',
          result: p.get('Result') ?? '',
          execMainCode: Number(p.get('ExecMainCode') ?? 0),
          execMainStatus: Number(p.get('ExecMainStatus') ?? 0),
          execMainPid: Number(p.get('ExecMainPID') ?? 0),
          unitFileState: p.get('UnitFileState') ?? '',
        });
      });
    });
}

/** What changed, in the words of a service resource's diff: `active`, `enabled`, `masked`, `exists`. */
export type ServiceChange = 'active' | 'enabled' | 'masked' | 'exists';

/** systemctl verbs that bring each kind of change about. */
const VERBS: Record<ServiceChange, ReadonlySet<string>> = {
  active: new Set(['start', 'stop', 'restart', 'try-restart', 'reload-or-restart', 'try-reload-or-restart', 'kill', 'isolate', 'enable', 'disable', 'mask', 'clean', 'freeze']),
  enabled: new Set(['enable', 'disable', 'reenable', 'preset', 'preset-all', 'link', 'revert', 'mask', 'unmask']),
  masked: new Set(['mask', 'unmask', 'revert']),
  exists: new Set(['mask', 'unmask', 'revert', 'link', 'daemon-reload', 'edit']),
};
/** Verbs that change the running state only with --now. */
const NOW_VERBS = new Set(['enable', 'disable', 'mask']);

/** Whether `argv` (a systemctl run) names `unit` with a verb that makes `change`. */
export function systemctlChanges(argv: readonly string[], unit: string, change: ServiceChange): boolean {
  const args = argv.slice(1);
  const words = args.filter((a) => !a.startsWith('-'));
  const verb = words[0];
  if (verb === undefined || !VERBS[change].has(verb)) return false;
  if (change === 'active' && NOW_VERBS.has(verb) && !args.includes('--now')) return false;
  if (verb === 'preset-all' || verb === 'daemon-reload') return true;
  const short = unit.endsWith('.service') ? unit.slice(0, -'.service'.length) : undefined;
  return words.slice(1).some((w) => w === unit || w === short);
}

const SIGNALS = new Map(Object.entries(constants.signals).map(([name, n]) => [n as number, name.replace(/^SIG/, '')]));

/**
 * The actor of a change to `unit`, learned from a watched `systemctl` run within `lookbackMs` before the drift (source
 * `audit`), else from the manager's facts (source `journal`), else unknown.
 */
export async function actorForUnit(
  unit: string,
  change: ServiceChange,
  q: LookupQuery & { lookbackMs?: number },
  deps: { audit?: AuditAttribution; facts?: UnitFactsReader },
): Promise<Actor> {
  if (deps.audit) {
    const run = await deps.audit.actorForCommand((argv) => systemctlChanges(argv, unit, change), { ...q, lookbackMs: q.lookbackMs ?? 10_000 });
    if (run) return run;
  }
  const facts = deps.facts ? await deps.facts(unit) : undefined;
  if (!facts) return { source: 'unknown', detail: 'neither an audit record nor the service manager says who changed it' };
  return fromFacts(unit, change, facts);
}

/** What systemd's own record of the unit says about the change, in plain words. Exported for tests of the wording. */
export function fromFacts(unit: string, change: ServiceChange, f: UnitFacts): Actor {
  if (change === 'enabled' || change === 'masked' || change === 'exists') {
    const state = f.unitFileState || f.loadState;
    return { source: 'journal', detail: `the unit file state is now ${state || 'unknown'}; systemd does not record who changed it` };
  }
  const pid = f.execMainPid > 0 ? ` (pid ${f.execMainPid})` : '';
  switch (f.result) {
    case 'exit-code':
      return { source: 'journal', unit, ...(f.execMainPid > 0 ? { pid: f.execMainPid } : {}), detail: `the main process${pid} exited by itself with status ${f.execMainStatus}` };
    case 'core-dump':
      return { source: 'journal', unit, ...(f.execMainPid > 0 ? { pid: f.execMainPid } : {}), detail: `the main process${pid} crashed (signal ${SIGNALS.get(f.execMainStatus) ?? f.execMainStatus}, core dumped)` };
    case 'signal':
      return {
        source: 'journal',
        detail: `the main process${pid} was killed by signal ${SIGNALS.get(f.execMainStatus) ?? f.execMainStatus}; the kernel and systemd do not record who sent it`,
      };
    case 'timeout':
    case 'watchdog':
    case 'start-limit-hit':
    case 'oom-kill':
      return { source: 'journal', detail: `systemd ended it: ${f.result}` };
    default:
      break;
  }
  if (f.activeState === 'active' || f.activeState === 'activating') {
    return { source: 'journal', detail: 'started through systemd (a start job, a dependency, a socket or a timer); systemd does not record who asked for it' };
  }
  return { source: 'journal', detail: 'stopped through systemd (a stop job); systemd does not record who asked for it' };
}
