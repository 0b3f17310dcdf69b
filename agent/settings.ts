// Agent-wide settings that host adapters read: one object built by the CLI from flags, config file and environment.
export type SystemdScope = 'system' | 'user';

export interface AgentSettings {
  stateDir: string;
  systemdScope: SystemdScope;
  /** Where persisted sysctl drop-ins go; tests point it at a temp dir. */
  sysctlDropInDir: string;
  /** Root of the sysctl tree; tests may point it elsewhere. */
  procSysRoot: string;
  /** How often each managed sysctl is read (procfs cannot be watched); default 250 ms, see agent/resources/sysctl.ts. */
  sysctlPollIntervalMs?: number;
  /** Full resync of every resource, the safety net behind the watches. */
  resyncIntervalMs: number;
  /** How long one reconcile may take before it is recorded as timed out (default 2 min, see agent/engine/engine.ts). */
  reconcileTimeoutMs?: number;
  /** Most audit records kept waiting for the controller (default 1,200,000, see agent/store/store.ts). */
  outboxLimit?: number;
  /** How long delivered audit records are kept (default 90 days); undelivered ones are never removed for age. */
  auditRetentionMs?: number;
  labels: Record<string, string>;
  /** The key of the agent's audit watch rules (one agent per host); tests sharing a host give each agent its own. */
  auditKey: string;
}

export const DEFAULT_SETTINGS: AgentSettings = {
  stateDir: process.env.HOMEOSTAT_STATE_DIR ?? '/var/lib/homeostat',
  systemdScope: 'system',
  sysctlDropInDir: '/etc/sysctl.d',
  procSysRoot: '/proc/sys',
  resyncIntervalMs: 5 * 60_000,
  labels: {},
  auditKey: process.env.HOMEOSTAT_AUDIT_KEY ?? 'homeostat',
};
