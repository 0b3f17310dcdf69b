// `homeostat-agent audit`: reads (and with --verify, checks the hash chain of) the local audit log.
import { HsError } from '../../lib/errors.js';
import { loadConfig, type CommonFlags } from '../config.js';
import { AgentStore } from '../store/store.js';
import { eventName, parseSince, resourceIds } from './filters.js';
import { EXIT, printJson, println, reportError } from './output.js';

export function auditCommand(
  flags: CommonFlags & { json?: boolean; since?: string; resource?: string; event?: string; limit?: string; verify?: boolean; replaced?: string },
): number {
  const json = flags.json ?? false;
  let store: AgentStore | undefined;
  try {
    const config = loadConfig(flags);
    const limit = flags.limit === undefined ? undefined : Number(flags.limit);
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) throw new HsError('HS_CONFIG', `--limit '${flags.limit}' is not a positive integer`);
    // Checked before the cache is opened: an input that can never match is refused whatever the host holds.
    const query = {
      ...(flags.since !== undefined ? { since: parseSince(flags.since) } : {}),
      ...(flags.resource !== undefined ? { resource: resourceIds(flags.resource) } : {}),
      ...(flags.event !== undefined ? { event: eventName(flags.event) } : {}),
      ...(limit !== undefined ? { limit } : {}),
    };
    store = AgentStore.open(config.settings.stateDir, { readonly: true });
    if (flags.verify) {
      const v = store.verifyAudit();
      if (json) printJson(v);
      else if (v.ok) {
        println(`audit chain intact: ${v.count} records${v.retainedFrom ? ` from #${v.retainedFrom} (older ones removed by retention)` : ''}`);
        // Losses a damaged cache caused are part of the chain (recorded, never hidden): shown, not a break.
        for (const l of v.lost ?? []) println(`records ${l.from} to ${l.to} lost (recorded at #${l.recordedAt})`);
      } else println(`audit chain BROKEN at record ${v.seq}: ${v.reason}`);
      return v.ok ? EXIT.ok : EXIT.error;
    }
    if (flags.replaced !== undefined) {
      const seq = Number(flags.replaced);
      const b = Number.isSafeInteger(seq) ? store.backupForRecord(seq) : undefined;
      if (!b) throw new HsError('HS_NOT_FOUND', `no replaced content is kept for record ${flags.replaced} (only repairs of files keep it, up to 256 KiB, on this host)`);
      if (json) printJson({ ...b, content: b.content?.toString('base64') ?? null });
      else if (b.content) process.stdout.write(b.content);
      else println(`record ${seq} replaced ${b.size} bytes (sha256 ${b.sha256}); too large to keep`);
      return EXIT.ok;
    }
    const entries = store.queryAudit(query);
    if (json) {
      printJson({ entries });
      return EXIT.ok;
    }
    for (const e of entries) {
      println(`${new Date(e.time).toISOString()}  #${e.seq}  ${e.event.padEnd(19)} ${(e.resource ?? '-').padEnd(32)} ${e.trigger ?? '-'}  ${e.baseline ? `${e.baseline}@${e.version}` : ''}  ${e.detail ?? ''}`);
      if (e.diff) println(e.diff.replace(/^/gm, '    '));
    }
    return EXIT.ok;
  } catch (err) {
    return reportError(err, json);
  } finally {
    store?.close();
  }
}
