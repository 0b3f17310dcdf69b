// The controller-assigned baselines on this agent: admits signed documents (trust.ts), activates the resulting set,
// caches the signed documents for restarts without network, and pauses enforcement once their signatures expire.
import { parseBaseline } from '../../lib/baseline/index.js';
import type { Baseline } from '../../lib/baseline/types.js';
import type { Clock } from '../../lib/clock.js';
import { HsError, errorMessage, type ErrorCode } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { decodeBaselineDoc, type Applied, type Assignment, type AssignmentAck, type BaselineDoc, type Rejected, type SignedBaseline } from '../../proto/codec.js';
import type { LinkedAgent } from './agent-port.js';
import { admit } from './trust.js';

const CACHE_KEY = 'link.signedBaselines';
/** Re-check expiry at least this often (timers cannot wait 30 days). */
const MAX_TIMER_MS = 3_600_000;

interface Held {
  doc: BaselineDoc;
  signed: SignedBaseline;
}

export function materialize(doc: BaselineDoc): Baseline {
  const b = parseBaseline(doc.yaml, {
    file: doc.file || `${doc.name}.yaml`,
    readSource: (rel: string): Buffer => {
      const bytes = doc.sources[rel];
      if (bytes === undefined) throw new HsError('HS_BASELINE_SOURCE', `source file ${rel} is not in the signed document`);
      return Buffer.from(bytes);
    },
  });
  if (b.name !== doc.name) throw new HsError('HS_BASELINE_INVALID', `signed as ${doc.name} but the YAML names ${b.name}`);
  if (b.origin.sha256 !== doc.sha256) throw new HsError('HS_BASELINE_SIGNATURE', `${doc.name} v${doc.version}: content does not match its signed sha256`);
  return b;
}

export class AssignmentKeeper {
  private current = new Map<string, Held>();
  private paused = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly agent: LinkedAgent,
    private readonly pinnedKey: Uint8Array,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Reads the signed documents cached by an earlier run (the daemon already enforces their baselines) and checks expiry. */
  loadCache(): void {
    const text = this.agent.store?.getMeta(CACHE_KEY);
    if (text) {
      try {
        for (const s of JSON.parse(text) as { payload: string; signature: string; keyId: string }[]) {
          const signed: SignedBaseline = { payload: Buffer.from(s.payload, 'base64'), signature: Buffer.from(s.signature, 'base64'), keyId: s.keyId };
          const doc = decodeBaselineDoc(signed.payload);
          // Expired entries are kept: they are still what this agent reports (paused) until the controller renews them.
          const a = admit(signed, this.pinnedKey, undefined, 0);
          if (a.kind === 'new') this.current.set(doc.name, { doc, signed });
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

  isPaused(): boolean {
    return this.paused;
  }

  /** Applies a complete assignment; returns the acknowledgement to send (what is enforced now and what was refused). */
  async apply(assignment: Assignment): Promise<AssignmentAck> {
    const now = this.clock.now();
    const next = new Map<string, Held>();
    const rejected: Rejected[] = [];
    const fresh: Held[] = [];
    let renewed = false;
    for (const signed of assignment.baselines) {
      const claimed = peekName(signed);
      const cur = claimed ? this.current.get(claimed) : undefined;
      const a = admit(signed, this.pinnedKey, cur?.doc, now);
      switch (a.kind) {
        case 'new':
          next.set(a.doc.name, { doc: a.doc, signed });
          fresh.push({ doc: a.doc, signed });
          break;
        case 'renewal':
          next.set(a.doc.name, { doc: a.doc, signed });
          renewed = true;
          break;
        case 'unchanged':
          if (cur) next.set(cur.doc.name, cur);
          break;
        case 'refused':
          rejected.push({ name: a.name || claimed, version: a.version, code: a.code, message: a.message });
          // Keep enforcing the last good version of that name.
          if (cur) next.set(cur.doc.name, cur);
          break;
      }
    }
    const removed = [...this.current.keys()].some((n) => !next.has(n));
    if (fresh.length > 0 || removed) {
      try {
        const baselines = [...next.values()].map((h) => materialize(h.doc));
        const versions = Object.fromEntries([...next.values()].map((h) => [h.doc.name, h.doc.version]));
        await this.agent.activate(baselines, { origin: 'controller', versions }, 'controller');
        this.current = next;
        this.log.info({ baselines: this.enforcing().map((a) => `${a.name}@${a.version}`) }, 'controller baselines activated');
      } catch (err) {
        const code: ErrorCode = err instanceof HsError ? err.code : 'HS_BASELINE_INVALID';
        const message = err instanceof HsError ? err.describe() : errorMessage(err);
        for (const h of fresh) rejected.push({ name: h.doc.name, version: h.doc.version, code, message });
        // Renewals of unchanged versions still count.
        for (const [name, h] of next) if (this.current.get(name)?.doc.version === h.doc.version) this.current.set(name, h);
      }
    } else if (renewed) {
      this.current = next;
    }
    for (const r of rejected) {
      this.log.warn({ baseline: r.name, version: r.version, code: r.code, reason: r.message }, 'baseline refused');
      this.agent.recordRejectedBaseline(r.name || null, `${r.code}: ${r.message}`, 'controller');
    }
    this.saveCache();
    this.checkExpiry();
    return { enforcing: this.enforcing(), rejected, enforcementPaused: this.paused };
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

  private saveCache(): void {
    const rows = [...this.current.values()].map((h) => ({
      payload: Buffer.from(h.signed.payload).toString('base64'),
      signature: Buffer.from(h.signed.signature).toString('base64'),
      keyId: h.signed.keyId,
    }));
    this.agent.store?.setMeta(CACHE_KEY, JSON.stringify(rows));
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
