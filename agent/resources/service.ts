// The `service:` resource: a systemd unit kept running or stopped, enabled or disabled, masked or not, over the shared D-Bus client.
import { HsError } from '../../lib/errors.js';
import type { ResourceDecl } from '../../lib/baseline/types.js';
import { SystemdClient, type UnitStatus } from '../host/systemd.js';
import type { Change, Disposer, HostContext, Resource, ResourceKind, StateSummary } from './resource.js';

/** Signals carry every stop, crash, disable and mask; the poll only guards against a silently lost bus connection. */
export const SERVICE_POLL_MS = 30_000;

const UNIT_SUFFIXES = ['service', 'socket', 'target', 'device', 'mount', 'automount', 'swap', 'path', 'timer', 'slice', 'scope'];
const UNIT_NAME = /^[A-Za-z0-9:_.\\@-]+$/;

/**
 * Settled states that are drift. `activating` and `deactivating` are not: a start or stop (or systemd's own `Restart=`) is
 * under way, and where it settles arrives as the next event. Acting mid-way would cancel someone's job and fight it.
 */
const NOT_RUNNING = new Set(['inactive', 'failed']);
const NOT_STOPPED = new Set(['active', 'reloading', 'refreshing']);

export type ServiceObserved = UnitStatus;

interface ServiceSpec {
  unit: string;
  /** Each undefined when the baseline does not care. */
  active: 'running' | 'stopped' | undefined;
  enabled: boolean | undefined;
  masked: boolean | undefined;
}

/** `nginx` → `nginx.service`; other unit types keep their suffix. */
export function unitName(name: string): string {
  const n = name.trim();
  const dot = n.lastIndexOf('.');
  return dot > 0 && UNIT_SUFFIXES.includes(n.slice(dot + 1)) ? n : `${n}.service`;
}

function readSpec(decl: ResourceDecl): ServiceSpec {
  const f = decl.fields;
  const unit = unitName(decl.name);
  const bad = (msg: string): HsError => new HsError('HS_BASELINE_INVALID', `service ${unit}: ${msg}`, { location: { ...decl.location, resource: decl.id } });
  if (!UNIT_NAME.test(unit)) throw bad('not a valid unit name');
  const ensure = f.ensure;
  if (ensure !== undefined && ensure !== 'running' && ensure !== 'stopped') throw bad(`'ensure' must be running or stopped`);
  for (const k of ['enabled', 'masked'] as const) {
    if (f[k] !== undefined && typeof f[k] !== 'boolean') throw bad(`'${k}' must be true or false`);
  }
  const enabled = f.enabled as boolean | undefined;
  const masked = f.masked as boolean | undefined;
  if (masked === true && (ensure === 'running' || enabled === true)) throw bad('a masked unit can be neither running nor enabled');
  // A unit that must run or start at boot must not be masked; a masked unit is also stopped (as `systemctl mask --now`).
  return {
    unit,
    active: ensure ?? (masked === true ? 'stopped' : undefined),
    enabled: masked === true ? undefined : enabled,
    masked: masked ?? (ensure === 'running' || enabled === true ? false : undefined),
  };
}

/** true / false, or null where enablement does not apply (static, generated, transient units, or no unit file). */
export function enabledOf(unitFileState: string): boolean | null {
  switch (unitFileState) {
    case 'enabled':
    case 'enabled-runtime':
    case 'alias':
    case 'indirect':
      return true;
    case 'disabled':
    case 'linked':
    case 'linked-runtime':
    case 'masked':
    case 'masked-runtime':
      return false;
    default:
      return null;
  }
}

function isMasked(s: UnitStatus): boolean {
  return s.loadState === 'masked' || s.unitFileState.startsWith('masked');
}

function exists(s: UnitStatus): boolean {
  return s.loadState !== 'not-found' || s.unitFileState !== '';
}

const ADAPTER_KEY = 'systemd';

/** The agent's one systemd client, shared by its service resources and closed when the last of them closes. */
class SharedSystemd {
  users = 0;
  constructor(readonly client: SystemdClient) {}
}

function acquireSystemd(host: HostContext): SharedSystemd {
  const existing = host.adapters.get(ADAPTER_KEY);
  if (existing instanceof SharedSystemd) {
    existing.users++;
    return existing;
  }
  const shared = new SharedSystemd(new SystemdClient({ scope: host.settings.systemdScope, log: host.log }));
  shared.users = 1;
  host.adapters.set(ADAPTER_KEY, shared);
  return shared;
}

async function releaseSystemd(host: HostContext, shared: SharedSystemd): Promise<void> {
  shared.users--;
  if (shared.users > 0) return;
  if (host.adapters.get(ADAPTER_KEY) === shared) host.adapters.delete(ADAPTER_KEY);
  await shared.client.close();
}

export class ServiceResource implements Resource<ServiceObserved> {
  readonly id: string;
  readonly pollIntervalMs = SERVICE_POLL_MS;
  private readonly spec: ServiceSpec;
  private shared: SharedSystemd | undefined;

  constructor(
    readonly decl: ResourceDecl,
    private readonly host: HostContext,
  ) {
    this.id = decl.id;
    this.spec = readSpec(decl);
    this.shared = acquireSystemd(host);
  }

  private get systemd(): SystemdClient {
    if (!this.shared) throw new HsError('HS_HOST_IO', `${this.id}: the resource was closed`, { resource: this.id, retryable: false });
    return this.shared.client;
  }

  async observe(): Promise<ServiceObserved> {
    return this.systemd.status(this.spec.unit);
  }

  diff(o: ServiceObserved): Change[] {
    const { active, enabled, masked } = this.spec;
    if (!exists(o)) {
      // Nothing to stop, disable or unmask; but a unit that must run or be enabled has to exist. Masking works without a file.
      if (active === 'running' || enabled === true) return [{ field: 'exists', observed: false, desired: true }];
      return masked === true ? [{ field: 'masked', observed: false, desired: true }] : [];
    }
    const changes: Change[] = [];
    const m = isMasked(o);
    if (masked !== undefined && m !== masked) changes.push({ field: 'masked', observed: m, desired: masked });
    const e = enabledOf(o.unitFileState);
    if (enabled !== undefined && e !== null && e !== enabled) changes.push({ field: 'enabled', observed: e, desired: enabled });
    if (active === 'running' && NOT_RUNNING.has(o.activeState)) changes.push({ field: 'active', observed: o.activeState, desired: 'running' });
    if (active === 'stopped' && NOT_STOPPED.has(o.activeState)) changes.push({ field: 'active', observed: o.activeState, desired: 'stopped' });
    return changes;
  }

  /** Unmask, then enable or disable, then start or stop, then mask: each step needs the one before. */
  async apply(o: ServiceObserved, changes: Change[]): Promise<{ detail: string } | void> {
    if (changes.length === 0) return;
    const sd = this.systemd;
    const unit = this.spec.unit;
    const want = (field: string): unknown => changes.find((c) => c.field === field)?.desired;
    if (want('exists') === true) {
      throw new HsError('HS_HOST_NOT_FOUND', `unit ${unit} does not exist (systemd ${sd.scope} manager: ${o.loadState})`, { resource: this.id });
    }
    const done: string[] = [];
    if (want('masked') === false) {
      await sd.setMasked(unit, false);
      done.push('unmasked');
    }
    const enabled = want('enabled');
    if (typeof enabled === 'boolean') {
      await sd.setEnabled(unit, enabled, o.sysv);
      done.push(enabled ? 'enabled' : 'disabled');
    }
    const active = want('active');
    if (active === 'running') {
      // A failed unit may have hit systemd's start limit, which would refuse the start; the flap policy limits us instead.
      if (o.activeState === 'failed') await sd.resetFailed(unit);
      await sd.start(unit);
      done.push('started');
    } else if (active === 'stopped') {
      await sd.stop(unit);
      done.push('stopped');
    }
    if (want('masked') === true) {
      await sd.setMasked(unit, true);
      done.push('masked');
    }
    return { detail: `${unit}: ${done.join(', ')}` };
  }

  summarize(o: ServiceObserved): StateSummary {
    if (!exists(o)) return { exists: false, loadState: o.loadState };
    return { loadState: o.loadState, activeState: o.activeState, subState: o.subState, unitFileState: o.unitFileState };
  }

  desired(): StateSummary {
    const { active, enabled, masked } = this.spec;
    return {
      ...(active === undefined ? {} : { ensure: active }),
      ...(enabled === undefined ? {} : { enabled }),
      ...(masked === undefined ? {} : { masked }),
    };
  }

  /**
   * Arms the unit's signal match (resolves once armed). The engine arms before its first look, so nothing is reported here;
   * a lost bus connection, once re-established, reports to every watcher since signals may have been missed.
   */
  watch(notify: (reason: string) => void): Promise<Disposer> {
    return this.systemd.watchUnit(this.spec.unit, notify);
  }

  async close(): Promise<void> {
    const shared = this.shared;
    if (!shared) return;
    this.shared = undefined;
    await releaseSystemd(this.host, shared);
  }
}

export const serviceKind: ResourceKind = {
  type: 'service',
  create: (decl, host) => new ServiceResource(decl, host),
};
