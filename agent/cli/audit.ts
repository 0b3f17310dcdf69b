// `homeostat-agent audit`: reads (and with --verify, checks the hash chain of) the local audit log.
import { HsError } from '../../lib/errors.js';
import { parseDuration } from '../../lib/clock.js';
import { loadConfig, type CommonFlags } from '../config.js';
import { AgentStore } from '../store/store.js';
import { EXIT, printJson, println, reportError } from './output.js';

/** `--since` takes an ISO time or a duration back from now (`10m`, `2h`). */
export function parseSince(text: string, now = Date.now()): number {
  const ago = parseDuration(text);
  if (ago !== undefined) return now - ago;
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new HsError('HS_CONFIG', `--since '${text}' is neither an ISO time nor a duration like 10m`);
  return t;
}

export function auditCommand(
  flags: CommonFlags & { json?: boolean; since?: string; resource?: string; event?: string; limit?: string; verify?: boolean; replaced?: string },
): number {
  const json = flags.json ?? false;
  let store: AgentStore | undefined;
  try {
    const config = loadConfig(flags);
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
    const entries = store.queryAudit({
      ...(flags.since ? { since: parseSince(flags.since) } : {}),
      ...(flags.resource ? { resource: flags.resource } : {}),
      ...(flags.event ? { event: flags.event } : {}),
      ...(flags.limit ? { limit: Number(flags.limit) } : {}),
    });
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
