// The controller-assigned baselines on this agent: admits signed documents and removals (trust.ts), activates the resulting
// set, caches the signed documents for restarts without network, remembers per name the last signed thing accepted (across
// removals and restarts, so nothing older can be replayed), and pauses enforcement once signatures expire.
import { parseBaseline } from '../../lib/baseline/index.js';
import { sourcesFromMap } from '../../lib/baseline/sources.js';
import type { Baseline } from '../../lib/baseline/types.js';
import type { Clock } from '../../lib/clock.js';
import { HsError, errorMessage, type ErrorCode } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { decodeBaselineDoc, type Applied, type Assignment, type AssignmentAck, type BaselineDoc, type Held, type Rejected, type RemovalDoc, type SignedBaseline } from '../../proto/codec.js';
import type { LinkedAgent } from './agent-port.js';
import { admit, removalApplies, verifyRemoval, type Prior } from './trust.js';

const CACHE_KEY = 'link.signedBaselines';
const PRIOR_KEY = 'link.priorByName';
/** Re-check expiry at least this often (timers cannot wait 30 days). */
const MAX_TIMER_MS = 3_600_000;

interface HeldDoc {
  doc: BaselineDoc;
  signed: SignedBaseline;
}

type StoredPrior = Required<Prior>;

export function materialize(doc: BaselineDoc): Baseline {
  const b = parseBaseline(doc.yaml, {
    file: doc.file || `${doc.name}.yaml`,
    readSource: sourcesFromMap(doc.sources, (rel) => `source file ${rel} is not in the signed document`),
  });
  if (b.name !== doc.name) throw new HsError('HS_BASELINE_INVALID', `signed as ${doc.name} but the YAML names ${b.name}`);
  if (b.origin.sha256 !== doc.sha256) throw new HsError('HS_BASELINE_SIGNATURE', `${doc.name} v${doc.version}: content does not match its signed sha256`);
  return b;
}

export class AssignmentKeeper {
  private current = new Map<string, HeldDoc>();
  private priors = new Map<string, StoredPrior>();
  private paused = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly agent: LinkedAgent,
    private readonly pinnedKey: Uint8Array,
    private readonly agentId: string,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Reads the signed documents cached by an earlier run (the daemon already enforces their baselines) and checks expiry. */
  loadCache(): void {
    const store = this.agent.store;
    try {
      for (const [name, p] of Object.entries(JSON.parse(store?.getMeta(PRIOR_KEY) ?? '{}') as Record<string, StoredPrior>)) {
        if (typeof p.version === 'number' && typeof p.issuedAt === 'number') this.priors.set(name, { version: p.version, sha256: String(p.sha256), issuedAt: p.issuedAt, removedAt: p.removedAt ?? null });
      }
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'replay guard unreadable; rebuilt from the cached baselines');
    }
    const text = store?.getMeta(CACHE_KEY);
    if (text) {
      try {
        for (const s of JSON.parse(text) as { payload: string; signature: string; keyId: string }[]) {
          const signed: SignedBaseline = { payload: Buffer.from(s.payload, 'base64'), signature: Buffer.from(s.signature, 'base64'), keyId: s.keyId };
          // Expired entries are kept: they are still what this agent reports (paused) until the controller renews them.
          const a = admit(signed, this.pinnedKey, undefined, 0);
          if (a.kind !== 'new') continue;
          this.current.set(a.doc.name, { doc: a.doc, signed });
          const p = this.priors.get(a.doc.name);
          if (!p || p.removedAt !== null || a.doc.issuedAt >= p.issuedAt) this.remember(a.doc);
        }
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'signed baseline cache unreadable; waiting for the controller');
      }
    }
    this.checkExpiry();
  }

  enforcing(): Applied[] {
    return [...this.current.values()].map((h) => ({ name: h.doc.name, version: h.doc.version, sha256: h.doc.sha256 }));
  }

  /** Per name, the last signed document or removal accepted: what the controller needs to send a name again after a removal. */
  held(): Held[] {
    return [...this.priors].map(([name, p]) => ({ name, version: p.version, issuedAt: Math.max(p.issuedAt, p.removedAt ?? 0), removed: p.removedAt !== null }));
  }

  isPaused(): boolean {
    return this.paused;
  }

  /** Applies a complete assignment; returns the acknowledgement to send (what is enforced now and what was refused). */
  async apply(assignment: Assignment): Promise<AssignmentAck> {
    const now = this.clock.now();
    const next = new Map<string, HeldDoc>();
    const rejected: Rejected[] = [];
    const fresh: HeldDoc[] = [];
    let renewed = false;
    const removals = new Map<string, RemovalDoc>();
    for (const s of assignment.removals ?? []) {
      const v = verifyRemoval(s, this.pinnedKey, this.agentId);
      if (!('doc' in v)) {
        rejected.push({ name: '', version: 0, code: v.code, message: v.message });
        continue;
      }
      const prev = removals.get(v.doc.name);
      if (!prev || v.doc.issuedAt > prev.issuedAt) removals.set(v.doc.name, v.doc);
    }
    for (const signed of assignment.baselines) {
      const claimed = peekName(signed);
      const cur = claimed ? this.current.get(claimed) : undefined;
      const a = admit(signed, this.pinnedKey, claimed ? this.priors.get(claimed) : undefined, now);
      if (a.kind === 'refused') {
        rejected.push({ name: a.name || claimed, version: a.version, code: a.code, message: a.message });
        // Keep enforcing the last good version of that name.
        if (cur) next.set(cur.doc.name, cur);
        continue;
      }
      if (a.kind === 'unchanged' && cur) {
        next.set(cur.doc.name, cur);
        continue;
      }
      // A version the replay guard knows but this run does not enforce (its cached copy was lost) is activated again.
      const doc = a.kind === 'unchanged' ? decodeBaselineDoc(signed.payload) : a.doc;
      next.set(doc.name, { doc, signed });
      if (a.kind === 'renewal' && cur) renewed = true;
      else fresh.push({ doc, signed });
    }
    // A name left out is dropped only on a signed removal issued after what is enforced; otherwise it stays enforced.
    const removed: RemovalDoc[] = [];
    for (const [name, h] of this.current) {
      if (next.has(name)) continue;
      const r = removals.get(name);
      if (r && removalApplies(r, this.priors.get(name) ?? h.doc)) {
        removed.push(r);
        continue;
      }
      next.set(name, h);
      rejected.push({
        name,
        version: h.doc.version,
        code: r ? 'HS_BASELINE_STALE' : 'HS_BASELINE_SIGNATURE',
        message: r ? `removal of ${name} was issued before the enforced v${h.doc.version}; still enforced` : `${name} left out of the assignment without a signed removal; still enforced`,
      });
    }
    if (fresh.length > 0 || removed.length > 0) {
      try {
        const baselines = [...next.values()].map((h) => materialize(h.doc));
        const versions = Object.fromEntries([...next.values()].map((h) => [h.doc.name, h.doc.version]));
        await this.agent.activate(baselines, { origin: 'controller', versions }, 'controller');
        this.current = next;
        for (const h of fresh) this.remember(h.doc);
        for (const r of removed) this.forget(r, true);
        this.log.info({ baselines: this.enforcing().map((a) => `${a.name}@${a.version}`), removed: removed.map((r) => r.name) }, 'controller baselines activated');
      } catch (err) {
        const code: ErrorCode = err instanceof HsError ? err.code : 'HS_BASELINE_INVALID';
        const message = err instanceof HsError ? err.describe() : errorMessage(err);
        for (const h of fresh) rejected.push({ name: h.doc.name, version: h.doc.version, code, message });
        for (const r of removed) rejected.push({ name: r.name, version: r.version, code, message: `removal not carried out: ${message}` });
        // Renewals of unchanged versions still count.
        for (const [name, h] of next) {
          if (this.current.get(name)?.doc.version === h.doc.version) {
            this.current.set(name, h);
            this.remember(h.doc);
          }
        }
      }
    } else if (renewed) {
      this.current = next;
      for (const h of next.values()) this.remember(h.doc);
    }
    // A removal of a name not enforced here still raises its floor: nothing issued before it is accepted later.
    for (const [name, r] of removals) {
      if (!this.current.has(name) && !removed.includes(r) && removalApplies(r, this.priors.get(name))) this.forget(r, false);
    }
    for (const r of rejected) {
      this.log.warn({ baseline: r.name, version: r.version, code: r.code, reason: r.message }, 'baseline refused');
      this.agent.recordRejectedBaseline(r.name || null, `${r.code}: ${r.message}`, 'controller');
    }
    this.saveCache();
    this.checkExpiry();
    return { enforcing: this.enforcing(), rejected, enforcementPaused: this.paused, held: this.held() };
  }

  /** Pauses enforcement while any enforced signature is past its expiry; resumes once all are valid again. */
  checkExpiry(): void {
    if (this.timer) clearTimeout(this.timer);
    const now = this.clock.now();
    const expired = [...this.current.values()].filter((h) => h.doc.expiresAt <= now);
    const shouldPause = expired.length > 0;
    if (shouldPause !== this.paused) {
      this.paused = shouldPause;
      const first = expired[0];
      const reason = first
        ? `signed baseline ${first.doc.name} v${first.doc.version} expired at ${new Date(first.doc.expiresAt).toISOString()} without word from the controller`
        : 'the controller renewed the signed baselines';
      this.log.warn({ paused: shouldPause, reason }, 'enforcement pause changed');
      this.agent.setEnforcementPaused(shouldPause, reason);
    }
    const nextExpiry = Math.min(...[...this.current.values()].map((h) => h.doc.expiresAt).filter((t) => t > now));
    if (Number.isFinite(nextExpiry)) {
      this.timer = setTimeout(() => this.checkExpiry(), Math.min(MAX_TIMER_MS, Math.max(10, nextExpiry - now + 5)));
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }

  private remember(doc: BaselineDoc): void {
    this.priors.set(doc.name, { version: doc.version, sha256: doc.sha256, issuedAt: doc.issuedAt, removedAt: null });
  }

  /** Records a removal in the replay guard (and, when it ended enforcement here, in the audit log). */
  private forget(r: RemovalDoc, wasEnforced: boolean): void {
    const p = this.priors.get(r.name);
    const version = p?.version ?? r.version;
    this.priors.set(r.name, { version, sha256: p?.sha256 ?? '', issuedAt: p?.issuedAt ?? 0, removedAt: r.issuedAt });
    if (wasEnforced) this.agent.recordLinkEvent('baseline_removed', `${r.name} v${version} removed by a signed removal issued ${new Date(r.issuedAt).toISOString()}`, { name: r.name, version });
  }

  private saveCache(): void {
    const rows = [...this.current.values()].map((h) => ({
      payload: Buffer.from(h.signed.payload).toString('base64'),
      signature: Buffer.from(h.signed.signature).toString('base64'),
      keyId: h.signed.keyId,
    }));
    this.agent.store?.setMeta(CACHE_KEY, JSON.stringify(rows));
    this.agent.store?.setMeta(PRIOR_KEY, JSON.stringify(Object.fromEntries(this.priors)));
  }
}

/** The name a document claims, read before its signature is checked: used only to report and to keep the last good one. */
function peekName(s: SignedBaseline): string {
  try {
    return decodeBaselineDoc(s.payload).name;
  } catch {
    return '';
  }
}
