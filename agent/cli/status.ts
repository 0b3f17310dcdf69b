// `homeostat-agent status`: what the local cache says — active baselines, controller link, counts, last events.
import { loadConfig, type CommonFlags } from '../config.js';
import { AgentStore } from '../store/store.js';
import { EXIT, printJson, println, reportError } from './output.js';

export function statusCommand(flags: CommonFlags & { json?: boolean }): number {
  const json = flags.json ?? false;
  let store: AgentStore | undefined;
  try {
    const config = loadConfig(flags);
    store = AgentStore.open(config.settings.stateDir, { readonly: true });
    const active = store.getActive().map((b) => ({ name: b.name, version: b.version, origin: b.origin, sha256: b.sha256, activatedAt: b.activatedAt }));
    const last = store.queryAudit({ limit: 10, newest: true });
    const counts = store.auditCounts();
    const problem = parseMeta<{ reason: string; message: string; at: number }>(store.getMeta('link.problem'));
    const labels = parseMeta<Record<string, string>>(store.getMeta('link.labels'));
    const doc = {
      stateDir: config.settings.stateDir,
      baselines: active,
      controller: {
        url: store.getMeta('controller.url') ?? null,
        agentId: store.getMeta('agent.id') ?? null,
        state: store.getMeta('link.state') ?? 'standalone',
        // Why it is not connected (refused credential, signing key mismatch, unreachable, ...), until it connects again.
        problem,
        labels,
      },
      daemon: { pid: Number(store.getMeta('daemon.pid') ?? 0) || null, startedAt: Number(store.getMeta('daemon.startedAt') ?? 0) || null },
      counts,
      // Pending records wait for this controller; a standalone host has none to send them to.
      outbox: { ...store.outboxStats(), to: store.getMeta('controller.url') ?? null },
      lastEvents: last,
    };
    if (json) {
      printJson(doc);
      return EXIT.ok;
    }
    println(`state dir   ${doc.stateDir}`);
    const linkState = problem && doc.controller.state !== 'connected' ? `${doc.controller.state}: ${problem.reason}: ${problem.message}` : doc.controller.state;
    println(`controller  ${doc.controller.url ?? 'none (standalone)'}${doc.controller.url ? ` (${linkState})` : ''}`);
    if (labels) println(`labels      ${Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',') || 'none'} (trusted by the controller)`);
    println(`daemon      ${doc.daemon.pid ? `pid ${doc.daemon.pid}` : 'not recorded'}`);
    println(`actors      ${store.getMeta('actors.state') ?? 'not recorded'}`);
    if (active.length === 0) println('baselines   none active');
    for (const b of active) println(`baseline    ${b.name} v${b.version} (${b.origin}, sha256 ${b.sha256.slice(0, 12)})`);
    println(`events      ${Object.entries(counts).map(([k, v]) => `${k}=${v}`).join(' ') || 'none'}`);
    // Where pending records go: the controller they wait for, or nowhere (a standalone host keeps them in its audit log).
    const to = doc.controller.url ? `for ${doc.controller.url}` : 'none: standalone, records stay in the local audit log';
    println(`outbox      ${doc.controller.url ? `${doc.outbox.pending} pending, ${doc.outbox.dropped} dropped, ${to}` : to}`);
    for (const e of last) println(`  ${new Date(e.time).toISOString()}  ${e.event}  ${e.resource ?? ''}  ${e.detail ?? ''}`);
    return EXIT.ok;
  } catch (err) {
    return reportError(err, json);
  } finally {
    store?.close();
  }
}

function parseMeta<T>(text: string | undefined): T | null {
  if (!text) return null;
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}
