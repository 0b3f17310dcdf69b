// What the controller assigned this agent: its signed baselines (activated through the agent's engine) and, from protocol 4,
// its signed policies (handed to the agent's policy set), each kind on its own shelf (shelf.ts) with the same trust rules,
// cache and replay guard. Enforcement pauses while any signature the agent holds, of either kind, is past its expiry.
import { parseBaseline } from '../../lib/baseline/index.js';
import { sourcesFromMap } from '../../lib/baseline/sources.js';
import type { Baseline } from '../../lib/baseline/types.js';
import type { Clock } from '../../lib/clock.js';
import { HsError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { keyIdOf } from '../../lib/signing.js';
import { parsePolicy, type PolicyDocument } from '../../lib/policy/index.js';
import { decodeBaselineDoc, decodePolicyDoc, type Applied, type Assignment, type AssignmentAck, type BaselineDoc, type Held, type PolicyDoc, type Rejected } from '../../proto/codec.js';
import type { LinkedAgent, LinkStore } from './agent-port.js';
import { DocumentShelf, dropCachedDocument, type ShelfKind } from './shelf.js';
import { BASELINE_CODES, POLICY_CODES, admit, admitPolicy } from './trust.js';

/** Re-check expiry at least this often (timers cannot wait 30 days). */
const MAX_TIMER_MS = 3_600_000;

/** Where the controller's signed baselines are cached in the agent store's meta table. */
const BASELINE_CACHE_KEY = 'link.signedBaselines';

/** A forget: the link's next start neither holds `name` nor reports it as enforced; the replay guard stays. */
export function dropCachedBaseline(store: LinkStore, name: string): boolean {
  return dropCachedDocument(store, BASELINE_CACHE_KEY, decodeBaselineDoc, name);
}

export function materialize(doc: BaselineDoc): Baseline {
  const b = parseBaseline(doc.yaml, {
    file: doc.file || `${doc.name}.yaml`,
    readSource: sourcesFromMap(doc.sources, (rel) => `source file ${rel} is not in the signed document`),
  });
  if (b.name !== doc.name) throw new HsError('HS_BASELINE_INVALID', `signed as ${doc.name} but the YAML names ${b.name}`);
  if (b.origin.sha256 !== doc.sha256) throw new HsError('HS_BASELINE_SIGNATURE', `${doc.name} v${doc.version}: content does not match its signed sha256`);
  return b;
}

/** A signed policy's document, validated by lib/policy's parser (located errors name the version: `fleet@3.yaml:9:13`). */
export function materializePolicy(doc: PolicyDoc): PolicyDocument {
  const p = parsePolicy(doc.yaml, { file: doc.file || `${doc.name}.yaml` });
  if (p.name !== doc.name) throw new HsError('HS_POLICY_INVALID', `signed as ${doc.name} but the YAML names ${p.name}`);
  if (p.origin.sha256 !== doc.sha256) throw new HsError('HS_POLICY_SIGNATURE', `${doc.name} v${doc.version}: content does not match its signed sha256`);
  return p;
}

/** `signedBy`: the id of the controller's signing key, which keeps these versions apart from the host's own (agent/store/baselines.ts). */
function baselineShelf(agent: LinkedAgent, signedBy: string): ShelfKind<BaselineDoc> {
  return {
    what: 'baseline',
    cacheKey: BASELINE_CACHE_KEY,
    priorKey: 'link.priorByName',
    codes: BASELINE_CODES,
    removalDomain: 'removal',
    admit: (s, key, prior, now) => admit(s, key, prior, now),
    decode: decodeBaselineDoc,
    activate: async (docs, trigger) => {
      const versions = Object.fromEntries(docs.map((d) => [d.name, d.version]));
      await agent.activate(docs.map(materialize), { origin: 'controller', versions, signedBy }, trigger);
    },
    // The daemon restores the cached baselines from the agent store itself.
    activateCached: false,
    recordRejected: (name, _version, detail) => agent.recordRejectedBaseline(name, detail, 'controller'),
    recordRemoved: (name, version, detail) => agent.recordLinkEvent('baseline_removed', detail, { name, version }),
  };
}

function policyShelf(agent: LinkedAgent): ShelfKind<PolicyDoc> {
  // Parsed once per signed content: checked on arrival, then handed over with the rest of the set.
  const parsed = new Map<string, PolicyDocument>();
  const parse = (doc: PolicyDoc): PolicyDocument => {
    const key = `${doc.name}@${doc.version}/${doc.sha256}`;
    let p = parsed.get(key);
    if (!p) {
      p = materializePolicy(doc);
      if (parsed.size >= 256) parsed.clear();
      parsed.set(key, p);
    }
    return p;
  };
  return {
    what: 'policy',
    cacheKey: 'link.signedPolicies',
    priorKey: 'link.policyPriorByName',
    codes: POLICY_CODES,
    removalDomain: 'policy-removal',
    admit: admitPolicy,
    decode: decodePolicyDoc,
    check: (doc) => void parse(doc),
    activate: (docs, trigger) => agent.setPolicies(docs.map((d) => ({ document: parse(d), version: d.version })), trigger),
    activateCached: true,
    // A set the agent refused it recorded itself.
    recordRejected: (name, version, detail, byActivation) => {
      if (!byActivation) agent.recordLinkEvent('policy_rejected', detail, name ? { name, version } : null);
    },
    recordRemoved: (name, version, detail) => agent.recordLinkEvent('policy_removed', detail, { name, version }),
  };
}

export class AssignmentKeeper {
  private readonly baselines: DocumentShelf<BaselineDoc>;
  private readonly policySet: DocumentShelf<PolicyDoc>;
  private paused = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly agent: LinkedAgent,
    pinnedKey: Uint8Array,
    agentId: string,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.baselines = new DocumentShelf(baselineShelf(agent, keyIdOf(Buffer.from(pinnedKey))), agent, pinnedKey, agentId, log);
    this.policySet = new DocumentShelf(policyShelf(agent), agent, pinnedKey, agentId, log);
  }

  /**
   * Reads the signed documents cached by an earlier run (the daemon already enforces their baselines; the cached policies
   * are handed to the agent here, so a start without network holds them) and checks expiry.
   */
  async loadCache(): Promise<void> {
    await this.baselines.loadCache();
    await this.policySet.loadCache();
    this.checkExpiry();
  }

  enforcing(): Applied[] {
    return this.baselines.enforcing();
  }

  policies(): Applied[] {
    return this.policySet.enforcing();
  }

  /** Per baseline name, the last signed document or removal accepted: what the controller needs to send a name again after a removal. */
  held(): Held[] {
    return this.baselines.held();
  }

  policyHeld(): Held[] {
    return this.policySet.held();
  }

  isPaused(): boolean {
    return this.paused;
  }

  /**
   * Applies a complete assignment; returns the acknowledgement to send (what is held now and what was refused). From a
   * controller before protocol 4 (`policies: false`) the assignment says nothing about policies: the held ones stay as
   * they are, unremarked.
   */
  async apply(assignment: Assignment, from: { policies: boolean } = { policies: true }): Promise<AssignmentAck> {
    const now = this.clock.now();
    const rejected = await this.baselines.apply(assignment.baselines, assignment.removals ?? [], now);
    const policiesRejected = from.policies ? await this.policySet.apply(assignment.policies ?? [], assignment.policyRemovals ?? [], now) : [];
    this.checkExpiry();
    return this.report(rejected, policiesRejected);
  }

  /**
   * A baseline forgotten on this host: no longer held, cached or reported as enforced (its replay guard entry stays, so
   * the controller can send it again). Returns whether it was held; `report()` is then what to tell the controller.
   */
  forgetBaseline(name: string): boolean {
    const had = this.baselines.drop(name);
    if (had) this.checkExpiry();
    return had;
  }

  /** What is held now, as an acknowledgement tells the controller (with what this assignment refused, if any). */
  report(rejected: Rejected[] = [], policiesRejected: Rejected[] = []): AssignmentAck {
    return {
      enforcing: this.enforcing(),
      rejected,
      enforcementPaused: this.paused,
      held: this.held(),
      policies: this.policies(),
      policiesRejected,
      policyHeld: this.policyHeld(),
    };
  }

  /** Pauses enforcement while any held signature (baseline or policy) is past its expiry; resumes once all are valid again. */
  checkExpiry(): void {
    if (this.timer) clearTimeout(this.timer);
    const now = this.clock.now();
    const b = this.baselines.expiry(now);
    const p = this.policySet.expiry(now);
    const expired = [...b.expired.map((d) => ({ what: 'baseline', d })), ...p.expired.map((d) => ({ what: 'policy', d }))];
    const shouldPause = expired.length > 0;
    if (shouldPause !== this.paused) {
      this.paused = shouldPause;
      const first = expired[0];
      const reason = first
        ? `signed ${first.what} ${first.d.name} v${first.d.version} expired at ${new Date(first.d.expiresAt).toISOString()} without word from the controller`
        : 'the controller renewed the signed baselines and policies';
      this.log.warn({ paused: shouldPause, reason }, 'enforcement pause changed');
      this.agent.setEnforcementPaused(shouldPause, reason);
    }
    const nextExpiry = Math.min(b.next, p.next);
    if (Number.isFinite(nextExpiry)) {
      this.timer = setTimeout(() => this.checkExpiry(), Math.min(MAX_TIMER_MS, Math.max(10, nextExpiry - now + 5)));
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}
