// `homeostat-agent escalations | approve ID | reject ID --reason TEXT`: the drifts left for a human on this host, and an
// operator's answer to one, audited with the local user as author. With the daemon running the answer goes to it over
// the control socket; without one, the command carries it out on the cache and the host itself.
import { parseDuration } from '../../lib/clock.js';
import { HsError } from '../../lib/errors.js';
import { silentLogger } from '../../lib/log.js';
import { composeAgent } from '../compose.js';
import { loadConfig, type AgentConfig, type CommonFlags } from '../config.js';
import { askDaemon } from '../control/client.js';
import { listEscalations, localAuthor, runControl, type DecisionResult, type ForgetResult } from '../control/operations.js';
import type { ControlRequest } from '../control/protocol.js';
import { storeOptions } from '../store/recovery.js';
import { AgentStore } from '../store/store.js';
import { EXIT, printJson, println, reportError } from './output.js';

/** How long a rejection accepts the drift unless --for says otherwise: as long as the controller's default. */
export const DEFAULT_REJECT_FOR = '7d';

export function escalationsCommand(flags: CommonFlags & { json?: boolean }): number {
  const json = flags.json ?? false;
  let store: AgentStore | undefined;
  try {
    const config = loadConfig(flags);
    store = AgentStore.open(config.settings.stateDir, { readonly: true });
    const list = listEscalations(store);
    if (json) {
      printJson({ escalations: list });
      return EXIT.ok;
    }
    if (list.length === 0) {
      println('no open escalations');
      return EXIT.ok;
    }
    const rows = list.map((e) => [
      String(e.id),
      e.resource,
      `${e.baseline ?? '-'}@${e.version ?? '-'}`,
      new Date(e.openedAt).toISOString(),
      String(e.repeats),
      e.managedBy === 'controller' ? 'controller' : 'this host',
      e.observed ? summarize(e.observed) : '-',
    ]);
    printTable(['ID', 'RESOURCE', 'BASELINE', 'OPENED', 'REPEATS', 'DECIDED AT', 'OBSERVED NOW'], rows);
    for (const e of list) {
      println();
      println(`escalation ${e.id}: ${e.detail ?? ''}`);
      if (e.diff) println(e.diff.replace(/^/gm, '    '));
    }
    return EXIT.ok;
  } catch (err) {
    return reportError(err, json);
  } finally {
    store?.close();
  }
}

export async function decisionCommand(action: 'approve' | 'reject', idText: string, flags: CommonFlags & { json?: boolean; reason?: string; for?: string }): Promise<number> {
  const json = flags.json ?? false;
  try {
    const id = Number(idText);
    if (!Number.isSafeInteger(id) || id < 1) throw new HsError('HS_CONFIG', `escalation id '${idText}' is not a positive integer (homeostat-agent escalations lists them)`);
    const by = localAuthor();
    let req: ControlRequest;
    if (action === 'approve') req = { op: 'approve', id, by };
    else {
      const reason = flags.reason?.trim();
      if (!reason) throw new HsError('HS_CONFIG', 'reject needs --reason TEXT: why this drift is accepted');
      const ms = parseDuration(flags.for ?? DEFAULT_REJECT_FOR);
      if (ms === undefined || ms <= 0) throw new HsError('HS_CONFIG', `--for '${flags.for}' is not a duration like 7d or 12h`);
      req = { op: 'reject', id, reason, expiresAt: Date.now() + ms, by };
    }
    const result = (await carryOut(loadConfig(flags), req)) as DecisionResult;
    if (json) printJson(result);
    else if (result.action === 'reject') println(`escalation ${id} rejected by ${by}: ${result.resource} is left as it is until ${new Date(result.expiresAt ?? 0).toISOString()}`);
    else if (result.outcome === 'repaired') println(`escalation ${id} approved by ${by}: ${result.resource} repaired`);
    else if (result.outcome === 'pending') println(`escalation ${id} approved by ${by}: the repair of ${result.resource} is under way (homeostat-agent audit --resource ${result.resource})`);
    else println(`escalation ${id} approved by ${by}: ${result.resource} ${result.outcome}${result.error ? `: ${result.error.code}: ${result.error.message}` : ''}`);
    return action === 'approve' && result.outcome !== 'repaired' && result.outcome !== 'kept' && result.outcome !== 'pending' ? EXIT.drift : EXIT.ok;
  } catch (err) {
    return reportError(err, json);
  }
}

/** Sends `req` to the running daemon, or, when none runs, carries it out here on the cache. */
export async function carryOut(config: AgentConfig, req: ControlRequest): Promise<DecisionResult | ForgetResult> {
  const stateDir = config.settings.stateDir;
  let pid: number | null = null;
  try {
    const peek = AgentStore.open(stateDir, { readonly: true });
    try {
      pid = Number(peek.getMeta('daemon.pid') ?? 0) || null;
    } finally {
      peek.close();
    }
  } catch {
    // no cache yet: nothing has run here, and the command says what it finds below
  }
  const answer = await askDaemon(stateDir, req, pid);
  if (answer !== undefined) return answer as DecisionResult | ForgetResult;
  const store = AgentStore.open(stateDir, storeOptions(config.settings));
  const agent = composeAgent({ settings: config.settings, log: silentLogger, store });
  try {
    return await runControl({ store, agent, live: false, configuredFiles: config.baselines }, req);
  } finally {
    await agent.stop();
    store.close();
  }
}

function summarize(o: Record<string, unknown>): string {
  const text = Object.entries(o)
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(', ');
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/** A header line and columns sized to their content; no trailing spaces. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  for (const r of [header, ...rows]) println(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}
