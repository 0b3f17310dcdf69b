// The one place the engine asks "who caused this drift": files and directories from audit watches on their paths,
// services from systemctl runs or what systemd records, sysctls from runs of the sysctl program. Never throws, never
// blocks longer than the wait it is given; without auditd it answers `unknown` with the reason.
import { realpathSync } from 'node:fs';
import { normaliseSysctl } from '../../lib/baseline/names.js';
import type { Logger } from '../../lib/log.js';
import { UNKNOWN_ACTOR, type Actor } from '../../lib/policy/actor.js';
import { AuditAttribution, type AttributionState } from './audit-actors.js';
import { actorForUnit, SERVICE_PROGRAMS, SYSCTL_PROGRAMS, systemctlFacts, type ServiceChange, type UnitFactsReader } from './service-actors.js';

export interface ActorsOptions {
  log: Logger;
  /** The audit key of the agent's rules; one agent per host: `homeostat`. */
  key?: string;
  /** Which service manager services belong to, as the agent's --systemd-scope. */
  scope: 'system' | 'user';
  selfPid?: number;
  auditctl?: string;
  logFile?: string;
  facts?: UnitFactsReader;
}

/** A drift to attribute: the resource (kind and name as in its id), what changed, and when. */
export interface ActorQuery {
  kind: string;
  /** The path, unit or sysctl key. */
  name: string;
  /** The fields the resource's diff reported. */
  changes: readonly string[];
  time: number;
  /** When the resource was last seen as it should be. */
  since?: number;
  /** The path's inodes now and before (files and directories). */
  inodes?: readonly number[];
  waitMs?: number;
}

export class Actors {
  private readonly audit: AuditAttribution;
  private readonly facts: UnitFactsReader;

  constructor(private readonly opts: ActorsOptions) {
    this.audit = new AuditAttribution({
      key: opts.key ?? 'homeostat',
      log: opts.log,
      ...(opts.selfPid === undefined ? {} : { selfPid: opts.selfPid }),
      ...(opts.auditctl === undefined ? {} : { auditctl: opts.auditctl }),
      ...(opts.logFile === undefined ? {} : { logFile: opts.logFile }),
    });
    this.facts = opts.facts ?? systemctlFacts(opts.scope);
  }

  get state(): AttributionState {
    return this.audit.state;
  }

  start(): Promise<AttributionState> {
    return this.audit.start();
  }

  /** Watches the managed resources: the paths of files and directories, and the programs that change services and sysctls. */
  async watch(resources: readonly { kind: string; name: string }[]): Promise<void> {
    const paths = resources.filter((r) => r.kind === 'file' || r.kind === 'directory').map((r) => r.name);
    const programs = [
      ...(resources.some((r) => r.kind === 'service') ? SERVICE_PROGRAMS : []),
      ...(resources.some((r) => r.kind === 'sysctl') ? SYSCTL_PROGRAMS : []),
    ].flatMap((p) => {
      try {
        return [realpathSync(p)]; // the rule watches the file itself, whatever links lead to it
      } catch {
        return [];
      }
    });
    const report = await this.audit.watch(paths, programs);
    for (const f of report?.failed ?? []) this.opts.log.info({ path: f.path, reason: f.reason }, 'path not watched for actors yet');
  }

  async actorFor(q: ActorQuery): Promise<Actor> {
    const lookup = { time: q.time, ...(q.since === undefined ? {} : { since: q.since }), ...(q.waitMs === undefined ? {} : { waitMs: q.waitMs }) };
    try {
      switch (q.kind) {
        case 'file':
        case 'directory':
          return await this.audit.actorForPath(q.name, { ...lookup, ...(q.inodes ? { inodes: q.inodes } : {}) });
        case 'service': {
          const change = serviceChange(q.changes);
          return await actorForUnit(q.name, change, lookup, { audit: this.audit, facts: this.facts });
        }
        case 'sysctl': {
          const run = await this.audit.actorForCommand((argv) => sysctlRunSets(argv, q.name), { ...lookup, lookbackMs: 10_000 });
          return run ?? { source: 'unknown', detail: 'no run of sysctl changed it; writes straight to /proc/sys cannot be attributed' };
        }
        default:
          return UNKNOWN_ACTOR;
      }
    } catch (err) {
      this.opts.log.warn({ resource: `${q.kind}:${q.name}`, err: err instanceof Error ? err.message : String(err) }, 'actor lookup failed');
      return { source: 'unknown', detail: 'the lookup failed' };
    }
  }

  stop(): Promise<void> {
    return this.audit.stop();
  }
}

/** The change a service drift is mostly about: a masked or enabled change explains a running-state change, not the reverse. */
function serviceChange(changes: readonly string[]): ServiceChange {
  for (const c of ['masked', 'enabled', 'active', 'exists'] as const) if (changes.includes(c)) return c;
  return 'active';
}

/**
 * Whether a `sysctl` run sets `key`: `sysctl -w net.ipv4.ip_forward=1`, the slash form `net/ipv4/ip_forward=1`, or
 * `-p`/`--load`/`--system`, which load settings from files (any key may be among them).
 */
export function sysctlRunSets(argv: readonly string[], key: string): boolean {
  const wanted = normaliseSysctl(key);
  for (const a of argv.slice(1)) {
    if (a === '--system' || a.startsWith('--load') || /^-[a-zA-Z]*p/.test(a)) return true;
    const eq = a.indexOf('=');
    if (eq > 0 && !a.startsWith('-') && normaliseSysctl(a.slice(0, eq)) === wanted) return true;
  }
  return false;
}
