// The signed documents of one kind (baselines or policies) the controller assigned this agent: admits documents and
// removals (trust.ts), activates the resulting set through the agent, caches the signed documents for restarts without
// network, and remembers per name the last signed thing accepted (across removals and restarts, so nothing older can be
// replayed). What differs between kinds (how a document verifies, is checked and activated, what the audit says) is a
// ShelfKind; the AssignmentKeeper holds one shelf per kind.
import { HsError, errorMessage, type ErrorCode } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { Applied, Held, Rejected, RemovalDoc, SignedDoc } from '../../proto/codec.js';
import type { LinkedAgent, LinkStore } from './agent-port.js';
import { removalApplies, verifyRemoval, type Admission, type DocumentHeader, type Prior, type RefusalCodes } from './trust.js';

export interface ShelfKind<D extends DocumentHeader> {
  /** `baseline` or `policy`: names the documents in logs and messages. */
  what: string;
  /** Where the signed documents and the replay guard are kept in the agent store's meta table. */
  cacheKey: string;
  priorKey: string;
  codes: RefusalCodes;
  removalDomain: 'removal' | 'policy-removal';
  /** Verifies a signed document and applies the replay guard for its name. */
  admit(s: SignedDoc, pinnedKey: Uint8Array, prior: Prior | undefined, now: number): Admission<D>;
  decode(payload: Uint8Array): D;
  /** Checks one new document on its own before activation (throws to refuse only that one); optional. */
  check?(doc: D): void;
  /** Makes `docs` the active set; throws, changing nothing, when it cannot. */
  activate(docs: D[], trigger: 'controller' | 'startup'): Promise<void>;
  /** Whether the documents a cache holds are handed to the agent at start (baselines are restored by the daemon itself). */
  activateCached: boolean;
  /** Records a refusal in the audit log. `byActivation`: the agent's activation refused it (it may have recorded it). */
  recordRejected(name: string | null, version: number, detail: string, byActivation: boolean): void;
  recordRemoved(name: string, version: number, detail: string): void;
}

/** One signed document as the cache keeps it (base64 fields). */
interface CachedDoc {
  payload: string;
  signature: string;
  keyId: string;
}

interface HeldDoc<D> {
  doc: D;
  signed: SignedDoc;
}

type StoredPrior = Required<Prior>;

export class DocumentShelf<D extends DocumentHeader> {
  private current = new Map<string, HeldDoc<D>>();
  private priors = new Map<string, StoredPrior>();

  constructor(
    private readonly kind: ShelfKind<D>,
    private readonly agent: LinkedAgent,
    private readonly pinnedKey: Uint8Array,
    private readonly agentId: string,
    private readonly log: Logger,
  ) {}

  /** Reads the signed documents cached by an earlier run and, when the kind asks for it, hands them to the agent. */
  async loadCache(): Promise<void> {
    const store = this.agent.store;
    try {
      for (const [name, p] of Object.entries(JSON.parse(store?.getMeta(this.kind.priorKey) ?? '{}') as Record<string, StoredPrior>)) {
        if (typeof p.version === 'number' && typeof p.issuedAt === 'number') this.priors.set(name, { version: p.version, sha256: String(p.sha256), issuedAt: p.issuedAt, removedAt: p.removedAt ?? null });
      }
    } catch (err) {
      this.log.warn({ err: errorMessage(err), kind: this.kind.what }, 'replay guard unreadable; rebuilt from the cached documents');
    }
    const text = store?.getMeta(this.kind.cacheKey);
    if (text) {
      try {
        for (const s of JSON.parse(text) as CachedDoc[]) {
          const signed: SignedDoc = { payload: Buffer.from(s.payload, 'base64'), signature: Buffer.from(s.signature, 'base64'), keyId: s.keyId };
          // Expired entries are kept: they are still what this agent reports (paused) until the controller renews them.
          const a = this.kind.admit(signed, this.pinnedKey, undefined, 0);
          if (a.kind !== 'new') continue;
          this.current.set(a.doc.name, { doc: a.doc, signed });
          const p = this.priors.get(a.doc.name);
          if (!p || p.removedAt !== null || a.doc.issuedAt >= p.issuedAt) this.remember(a.doc);
        }
      } catch (err) {
        this.log.warn({ err: errorMessage(err), kind: this.kind.what }, 'signed document cache unreadable; waiting for the controller');
      }
    }
    if (!this.kind.activateCached || this.current.size === 0) return;
    try {
      await this.kind.activate(this.docs(), 'startup');
      this.log.info({ kind: this.kind.what, documents: this.enforcing().map((a) => `${a.name}@${a.version}`) }, 'cached documents activated');
    } catch (err) {
      // Nothing the controller signed fits any more (this build refuses it): hold nothing rather than half of it.
      this.log.warn({ kind: this.kind.what, err: errorMessage(err) }, 'cached documents refused; waiting for the controller');
      this.current.clear();
    }
  }

  docs(): D[] {
    return [...this.current.values()].map((h) => h.doc);
  }

  enforcing(): Applied[] {
    return [...this.current.values()].map((h) => ({ name: h.doc.name, version: h.doc.version, sha256: h.doc.sha256 }));
  }

  /** Per name, the last signed document or removal accepted: what the controller needs to send a name again after a removal. */
  held(): Held[] {
    return [...this.priors].map(([name, p]) => ({ name, version: p.version, issuedAt: Math.max(p.issuedAt, p.removedAt ?? 0), removed: p.removedAt !== null }));
  }

  /**
   * Stops holding `name` after a local forget: its signed copy leaves the held set and the cache, so neither what this
   * agent reports nor its next start brings it back. The replay guard keeps the name's last accepted document, so the
   * controller can send that version again (taken as new) but nothing older.
   */
  drop(name: string): boolean {
    const had = this.current.delete(name);
    this.saveCache();
    return had;
  }

  /** Documents past their expiry at `now`, and the next expiry still to come. */
  expiry(now: number): { expired: D[]; next: number } {
    const docs = this.docs();
    return { expired: docs.filter((d) => d.expiresAt <= now), next: Math.min(...docs.map((d) => d.expiresAt).filter((t) => t > now)) };
  }

  /** Applies this kind's part of a complete assignment; returns what was refused. */
  async apply(signedDocs: SignedDoc[], signedRemovals: SignedDoc[], now: number): Promise<Rejected[]> {
    const { kind } = this;
    const next = new Map<string, HeldDoc<D>>();
    const rejected: (Rejected & { byActivation?: boolean })[] = [];
    const fresh: HeldDoc<D>[] = [];
    let renewed = false;
    const removals = new Map<string, RemovalDoc>();
    for (const s of signedRemovals) {
      const v = verifyRemoval(s, this.pinnedKey, this.agentId, kind.removalDomain);
      if (!('doc' in v)) {
        rejected.push({ name: '', version: 0, code: v.code, message: v.message });
        continue;
      }
      const prev = removals.get(v.doc.name);
      if (!prev || v.doc.issuedAt > prev.issuedAt) removals.set(v.doc.name, v.doc);
    }
    for (const signed of signedDocs) {
      const claimed = this.peekName(signed);
      const cur = claimed ? this.current.get(claimed) : undefined;
      const a = kind.admit(signed, this.pinnedKey, claimed ? this.priors.get(claimed) : undefined, now);
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
      // A version the replay guard knows but this run does not hold (its cached copy was lost) is activated again.
      const doc = a.kind === 'unchanged' ? kind.decode(signed.payload) : a.doc;
      if (a.kind === 'renewal' && cur) {
        next.set(doc.name, { doc, signed });
        renewed = true;
        continue;
      }
      try {
        kind.check?.(doc);
      } catch (err) {
        rejected.push({ name: doc.name, version: doc.version, ...refusalOf(err, kind.codes) });
        if (cur) next.set(cur.doc.name, cur);
        continue;
      }
      next.set(doc.name, { doc, signed });
      fresh.push({ doc, signed });
    }
    // A name left out is dropped only on a signed removal issued after what is held; otherwise it stays.
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
        code: r ? kind.codes.stale : kind.codes.signature,
        message: r ? `removal of ${name} was issued before the held v${h.doc.version}; still held` : `${name} left out of the assignment without a signed removal; still held`,
      });
    }
    if (fresh.length > 0 || removed.length > 0) {
      try {
        await kind.activate([...next.values()].map((h) => h.doc), 'controller');
        this.current = next;
        for (const h of fresh) this.remember(h.doc);
        for (const r of removed) this.forget(r, true);
        this.log.info({ kind: kind.what, documents: this.enforcing().map((a) => `${a.name}@${a.version}`), removed: removed.map((r) => r.name) }, 'controller documents activated');
      } catch (err) {
        const refusal = refusalOf(err, kind.codes);
        for (const h of fresh) rejected.push({ name: h.doc.name, version: h.doc.version, ...refusal, byActivation: true });
        for (const r of removed) rejected.push({ name: r.name, version: r.version, code: refusal.code, message: `removal not carried out: ${refusal.message}`, byActivation: true });
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
    // A removal of a name not held here still raises its floor: nothing issued before it is accepted later.
    for (const [name, r] of removals) {
      if (!this.current.has(name) && !removed.includes(r) && removalApplies(r, this.priors.get(name))) this.forget(r, false);
    }
    for (const r of rejected) {
      this.log.warn({ kind: kind.what, name: r.name, version: r.version, code: r.code, reason: r.message }, `${kind.what} refused`);
      kind.recordRejected(r.name || null, r.version, `${r.code}: ${r.message}`, r.byActivation ?? false);
    }
    this.saveCache();
    return rejected.map(({ byActivation: _b, ...r }) => r);
  }

  private remember(doc: D): void {
    this.priors.set(doc.name, { version: doc.version, sha256: doc.sha256, issuedAt: doc.issuedAt, removedAt: null });
  }

  /** Records a removal in the replay guard (and, when it ended enforcement here, in the audit log). */
  private forget(r: RemovalDoc, wasHeld: boolean): void {
    const p = this.priors.get(r.name);
    const version = p?.version ?? r.version;
    this.priors.set(r.name, { version, sha256: p?.sha256 ?? '', issuedAt: p?.issuedAt ?? 0, removedAt: r.issuedAt });
    if (wasHeld) this.kind.recordRemoved(r.name, version, `${r.name} v${version} removed by a signed removal issued ${new Date(r.issuedAt).toISOString()}`);
  }

  private saveCache(): void {
    const rows = [...this.current.values()].map((h): CachedDoc => ({
      payload: Buffer.from(h.signed.payload).toString('base64'),
      signature: Buffer.from(h.signed.signature).toString('base64'),
      keyId: h.signed.keyId,
    }));
    this.agent.store?.setMeta(this.kind.cacheKey, JSON.stringify(rows));
    this.agent.store?.setMeta(this.kind.priorKey, JSON.stringify(Object.fromEntries(this.priors)));
  }

  /** The name a document claims, read before its signature is checked: used only to report and to keep the last good one. */
  private peekName(s: SignedDoc): string {
    try {
      return this.kind.decode(s.payload).name;
    } catch {
      return '';
    }
  }
}

/**
 * Drops `name` from a kind's cached signed documents on disk (a forget, whether or not a link runs; a running one drops
 * its own copy with `drop`). The replay guard (`priorKey`) is left as it is. An unreadable cache is left alone: the link
 * ignores it at start anyway.
 */
export function dropCachedDocument(store: LinkStore, cacheKey: string, decode: (payload: Uint8Array) => { name: string }, name: string): boolean {
  const text = store.getMeta(cacheKey);
  if (!text) return false;
  let rows: CachedDoc[];
  try {
    rows = JSON.parse(text) as CachedDoc[];
    if (!Array.isArray(rows)) return false;
  } catch {
    return false;
  }
  const kept = rows.filter((r) => {
    try {
      return decode(Buffer.from(String(r.payload), 'base64')).name !== name;
    } catch {
      return true;
    }
  });
  if (kept.length === rows.length) return false;
  store.setMeta(cacheKey, JSON.stringify(kept));
  return true;
}

function refusalOf(err: unknown, codes: RefusalCodes): { code: ErrorCode; message: string } {
  return err instanceof HsError ? { code: err.code, message: err.describe() } : { code: codes.invalid, message: errorMessage(err) };
}
