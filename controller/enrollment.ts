// Enrollment and authentication of agents: expiring join tokens issued to operators (naming the controller's signing key and
// TLS certificate, fixing labels and saying which ones agents may ask for), one credential per agent, trusted labels,
// revocation. Only sha256 hashes of tokens and credentials are stored; both secrets carry 192+ bits, so a plain hash is enough.
import { randomBytes } from 'node:crypto';
import type { Clock } from '../lib/clock.js';
import { HsError } from '../lib/errors.js';
import { formatJoinToken, parseJoinToken } from '../lib/join-token.js';
import { labelProblem, parseLabelAllowance, type Labels } from '../lib/labels.js';
import type { HostFacts } from '../proto/codec.js';
import { requestedByOldAgent, trustedLabels } from './agent-labels.js';
import { secretMatches, sha256Hex } from './identity.js';
import type { AgentRecord, ControllerStore, JoinTokenRecord } from './store/types.js';

export const DEFAULT_TOKEN_TTL_MS = 24 * 3_600_000;

export interface CreatedToken {
  id: string;
  token: string;
  expiresAt: number;
  maxUses: number | null;
  labels: Labels;
  allowLabels: string[];
}

/** What an agent's hello says about itself: the labels it asks for and its facts. */
export interface AgentIntroduction {
  labels: Labels;
  facts?: HostFacts | null;
  protocolVersion: number;
  agentVersion: string;
}

export class Enrollment {
  constructor(
    private readonly store: ControllerStore,
    private readonly clock: Clock,
    /** The TLS certificate fingerprint to put in tokens; null when serving plain HTTP. */
    private readonly fingerprint: string | null,
    /** The fingerprint of the controller's signing key (lib/signing.ts publicKeyFingerprint), which agents pin from the token. */
    private readonly signingKey: string,
  ) {}

  async createToken(opts: { ttlMs?: number; maxUses?: number | null; labels?: Labels; allowLabels?: string[]; description?: string } = {}): Promise<CreatedToken> {
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(24).toString('base64url');
    const now = this.clock.now();
    const rec: JoinTokenRecord = {
      id,
      secretHash: sha256Hex(secret),
      createdAt: now,
      expiresAt: now + (opts.ttlMs ?? DEFAULT_TOKEN_TTL_MS),
      maxUses: opts.maxUses ?? null,
      uses: 0,
      labels: opts.labels ?? {},
      allowLabels: parseLabelAllowance(opts.allowLabels),
      description: opts.description ?? '',
    };
    await this.store.putJoinToken(rec);
    const token = formatJoinToken({ id, secret, signingKey: this.signingKey, fingerprint: this.fingerprint });
    return { id, token, expiresAt: rec.expiresAt, maxUses: rec.maxUses, labels: rec.labels, allowLabels: rec.allowLabels };
  }

  /** The token id a join token names, for rate limits and logs; null when it is not even well-formed. */
  static tokenIdOf(tokenText: string): string | null {
    try {
      return parseJoinToken(tokenText).id;
    } catch {
      return null;
    }
  }

  /**
   * Enrolls a new agent with a join token; returns it with its credential (shown to the agent once, stored hashed). Labels
   * the token does not allow refuse the enrollment (HS_LABEL_REFUSED) before anything is stored or a use is counted.
   */
  async enroll(tokenText: string, intro: AgentIntroduction): Promise<{ agent: AgentRecord; credential: string }> {
    const t = parseJoinToken(tokenText);
    const rec = await this.store.getJoinToken(t.id);
    const now = this.clock.now();
    if (!rec || !secretMatches(t.secret, rec.secretHash)) throw new HsError('HS_AUTH', 'unknown enrollment token');
    if (rec.expiresAt <= now) throw new HsError('HS_AUTH', 'enrollment token expired');
    // A revoked host still holds the token it enrolled with: that token must not enroll it (or anyone) again.
    const revoked = await this.store.revokedAgentOfToken(t.id);
    if (revoked) throw new HsError('HS_AUTH', `enrollment token ${t.id} enrolled agent ${revoked}, which was revoked; create a new token`);
    const requested = this.requested(intro);
    const trusted = trustedLabels({ token: rec.labels, allow: rec.allowLabels, requested, facts: intro.facts ?? null, operator: {} });
    if (trusted.refused.length > 0) throw refusedLabels(t.id, trusted.refused);
    if (!(await this.store.useJoinToken(t.id, now))) throw new HsError('HS_AUTH', 'enrollment token used up');
    const credential = randomBytes(32).toString('base64url');
    const record: AgentRecord = {
      id: `ag-${randomBytes(6).toString('hex')}`,
      credentialHash: sha256Hex(credential),
      enrolledAt: now,
      tokenId: t.id,
      labels: trusted.labels,
      tokenLabels: rec.labels,
      allowLabels: rec.allowLabels,
      requestedLabels: requested,
      operatorLabels: {},
      facts: intro.facts ?? null,
      protocolVersion: intro.protocolVersion,
      agentVersion: intro.agentVersion,
      lastSeen: now,
      revokedAt: null,
      outboxPending: 0,
      outboxDropped: 0,
      enforcementPaused: false,
      lastEventSeq: 0,
    };
    await this.store.putAgent(record);
    return { agent: record, credential };
  }

  /** The agent behind a credential; HS_AUTH (not retryable) when unknown, wrong or revoked. */
  async authenticate(agentId: string, credential: string): Promise<AgentRecord> {
    const rec = await this.store.getAgent(agentId);
    if (!rec || !secretMatches(credential, rec.credentialHash)) throw new HsError('HS_AUTH', 'unknown agent or wrong credential');
    if (rec.revokedAt !== null) throw new HsError('HS_AUTH', `agent ${agentId} is revoked`);
    return rec;
  }

  /** The trusted labels of an enrolled agent for what its hello asks now; HS_LABEL_REFUSED when it asks for more than allowed. */
  labelsFor(rec: AgentRecord, intro: AgentIntroduction): { labels: Labels; requested: Labels } {
    const requested = this.requested(intro);
    const trusted = trustedLabels({ token: rec.tokenLabels, allow: rec.allowLabels, requested, facts: intro.facts ?? null, operator: rec.operatorLabels });
    if (trusted.refused.length > 0) throw refusedLabels(rec.tokenId, trusted.refused);
    return { labels: trusted.labels, requested };
  }

  /** Replaces an operator's labels on an agent; returns the trusted labels that result (what selectors match from now). */
  async setOperatorLabels(agentId: string, operator: Labels): Promise<{ agent: AgentRecord; labels: Labels }> {
    const rec = await this.store.getAgent(agentId);
    if (!rec) throw new HsError('HS_NOT_FOUND', `no agent ${agentId}`);
    const problem = labelProblem(operator);
    if (problem) throw new HsError('HS_CONFIG', `labels: ${problem}`);
    // The agent's standing request is re-read with the new operator labels; refusals stay refusals (reported at its next hello).
    const { labels } = trustedLabels({ token: rec.tokenLabels, allow: rec.allowLabels, requested: rec.requestedLabels, facts: rec.facts, operator });
    await this.store.setAgentOperatorLabels(agentId, operator, labels);
    return { agent: { ...rec, operatorLabels: operator, labels }, labels };
  }

  private requested(intro: AgentIntroduction): Labels {
    const problem = labelProblem(intro.labels);
    if (problem) throw new HsError('HS_LABEL_REFUSED', `labels asked for: ${problem}`);
    return intro.protocolVersion < 3 ? requestedByOldAgent(intro.labels, intro.facts ?? null) : { ...intro.labels };
  }
}

function refusedLabels(tokenId: string, refused: string[]): HsError {
  return new HsError(
    'HS_LABEL_REFUSED',
    `labels refused: ${refused.join(', ')}; the join token ${tokenId} does not allow them (drop them from --labels, use a token made with --allow-labels, or have an operator set them)`.slice(0, 900),
  );
}
