// The agent's configuration: flags over the config file (/etc/homeostat/agent.yaml) over environment over defaults.
import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { HsError } from '../lib/errors.js';
import { parseDuration } from '../lib/clock.js';
import { parseLabels } from '../lib/labels.js';
import type { LogLevel } from '../lib/log.js';
import { DEFAULT_SETTINGS, type AgentSettings, type SystemdScope } from './settings.js';

export const DEFAULT_CONFIG_FILE = '/etc/homeostat/agent.yaml';

export interface AgentConfig {
  settings: AgentSettings;
  baselines: string[];
  /** Policy files of a standalone host (or local additions to the controller's): `--policy`, or `policies:` in the file. */
  policies: string[];
  controller: string | undefined;
  token: string | undefined;
  /** Plain ws:// to the controller allowed (never with a token or enrollment that pins TLS). */
  insecureHttp: boolean;
  logLevel: LogLevel;
  metricsListen: string | undefined;
}

/** The command-line flags every agent command shares (commander's camel-cased names). */
export interface CommonFlags {
  config?: string;
  stateDir?: string;
  systemdScope?: string;
  labels?: string;
  logLevel?: string;
  metricsListen?: string;
  baseline?: string[];
  policy?: string[];
  controller?: string;
  token?: string;
  insecureHttp?: boolean;
}

const FILE_KEYS = [
  'stateDir',
  'systemdScope',
  'labels',
  'logLevel',
  'metricsListen',
  'baselines',
  'policies',
  'controller',
  'token',
  'insecureHttp',
  'resyncInterval',
  'sysctlPollInterval',
  'reconcileTimeout',
  'outboxLimit',
  'auditRetention',
] as const;

/** Labels from `k=v,k2=v2` text, with the place they came from in the error. */
function labelsFrom(text: string, where: string): Record<string, string> {
  try {
    return parseLabels(text);
  } catch (err) {
    throw new HsError('HS_CONFIG', `${where}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

export function loadConfig(flags: CommonFlags): AgentConfig {
  const file = flags.config ?? DEFAULT_CONFIG_FILE;
  let doc: Record<string, unknown> = {};
  if (existsSync(file)) {
    const parsed: unknown = parse(readFileSync(file, 'utf8'));
    if (parsed !== null && parsed !== undefined) {
      if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new HsError('HS_CONFIG', `${file}: expected a mapping of settings`);
      doc = parsed as Record<string, unknown>;
    }
    for (const k of Object.keys(doc)) {
      if (!(FILE_KEYS as readonly string[]).includes(k)) throw new HsError('HS_CONFIG', `${file}: unknown setting '${k}' (known: ${FILE_KEYS.join(', ')})`);
    }
  } else if (flags.config) {
    throw new HsError('HS_CONFIG', `${file}: config file not found`);
  }
  const str = (k: string): string | undefined => {
    const v = doc[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw new HsError('HS_CONFIG', `${file}: '${k}' must be a string`);
    return v;
  };
  const bool = (k: string): boolean | undefined => {
    const v = doc[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') throw new HsError('HS_CONFIG', `${file}: '${k}' must be true or false`);
    return v;
  };
  const scope = flags.systemdScope ?? str('systemdScope') ?? DEFAULT_SETTINGS.systemdScope;
  if (scope !== 'system' && scope !== 'user') throw new HsError('HS_CONFIG', `--systemd-scope must be system or user, not '${scope}'`);
  const fileLabels = doc.labels;
  let labels: Record<string, string> = {};
  if (typeof fileLabels === 'string') labels = labelsFrom(fileLabels, file);
  else if (fileLabels && typeof fileLabels === 'object') labels = Object.fromEntries(Object.entries(fileLabels).map(([k, v]) => [k, String(v)]));
  if (flags.labels) labels = { ...labels, ...labelsFrom(flags.labels, '--labels') };
  const fileBaselines = doc.baselines;
  const baselines = flags.baseline?.length ? flags.baseline : Array.isArray(fileBaselines) ? fileBaselines.map(String) : [];
  const policies = flags.policy?.length ? flags.policy : listOf(doc.policies, file, 'policies');
  const resync = str('resyncInterval');
  const sysctlPoll = str('sysctlPollInterval');
  const reconcileTimeout = str('reconcileTimeout');
  const retention = str('auditRetention');
  const outboxLimit = doc.outboxLimit;
  return {
    settings: {
      ...DEFAULT_SETTINGS,
      stateDir: flags.stateDir ?? str('stateDir') ?? DEFAULT_SETTINGS.stateDir,
      systemdScope: scope as SystemdScope,
      labels,
      ...(resync ? { resyncIntervalMs: parseResync(resync, file) } : {}),
      ...(sysctlPoll ? { sysctlPollIntervalMs: parseSysctlPoll(sysctlPoll, file) } : {}),
      ...(reconcileTimeout ? { reconcileTimeoutMs: durationIn(reconcileTimeout, file, 'reconcileTimeout', 1000, 3_600_000, 'like 30s or 2m') } : {}),
      ...(retention ? { auditRetentionMs: durationIn(retention, file, 'auditRetention', 3_600_000, 10 * 365 * 86_400_000, 'like 30d or 365d') } : {}),
      ...(outboxLimit !== undefined && outboxLimit !== null ? { outboxLimit: parseOutboxLimit(outboxLimit, file) } : {}),
    },
    baselines,
    policies,
    controller: flags.controller ?? str('controller'),
    token: flags.token ?? str('token'),
    insecureHttp: flags.insecureHttp ?? bool('insecureHttp') ?? false,
    logLevel: (flags.logLevel ?? str('logLevel') ?? process.env.HOMEOSTAT_LOG_LEVEL ?? 'info') as LogLevel,
    metricsListen: flags.metricsListen ?? str('metricsListen'),
  };
}

/** A list of file paths (`policies:`): absent or null is none; anything but a list of strings is refused, naming the key. */
function listOf(v: unknown, file: string, key: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x !== '')) throw new HsError('HS_CONFIG', `${file}: '${key}' must be a list of file paths`);
  return v as string[];
}

function parseResync(text: string, file: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms < 1000) throw new HsError('HS_CONFIG', `${file}: resyncInterval '${text}' is not a duration of at least 1s, like 30s, 5m, 1h`);
  return ms;
}

/** How often managed sysctls are read (procfs cannot be watched): between 10 ms and 1 min, like 250ms or 1s. */
function parseSysctlPoll(text: string, file: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms < 10 || ms > 60_000) throw new HsError('HS_CONFIG', `${file}: sysctlPollInterval '${text}' is not a duration between 10ms and 1m, like 250ms or 1s`);
  return ms;
}

function durationIn(text: string, file: string, key: string, min: number, max: number, example: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms < min || ms > max) throw new HsError('HS_CONFIG', `${file}: ${key} '${text}' is not a duration within bounds, ${example}`);
  return ms;
}

/** Audit records kept for the controller while it is away: at least 1,000 and at most 100 million. */
function parseOutboxLimit(v: unknown, file: string): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d[\d_]*$/.test(v) ? Number(v.replaceAll('_', '')) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1000 || n > 100_000_000) throw new HsError('HS_CONFIG', `${file}: outboxLimit must be a whole number of records between 1000 and 100000000, not ${JSON.stringify(v)}`);
  return n;
}
