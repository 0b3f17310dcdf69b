// Enrollment and authentication of agents: expiring join tokens issued to operators, one credential per agent, revocation.
// Only sha256 hashes of tokens and credentials are stored; both secrets carry 192+ bits, so a plain hash is enough.
import { randomBytes } from 'node:crypto';
import type { Clock } from '../lib/clock.js';
import { HsError } from '../lib/errors.js';
import { formatJoinToken, parseJoinToken } from '../lib/join-token.js';
import type { Labels } from '../lib/labels.js';
import { secretMatches, sha256Hex } from './identity.js';
import type { AgentRecord, ControllerStore, JoinTokenRecord } from './store/types.js';

export const DEFAULT_TOKEN_TTL_MS = 24 * 3_600_000;

export interface CreatedToken {
  id: string;
  token: string;
  expiresAt: number;
  maxUses: number | null;
}

export class Enrollment {
  constructor(
    private readonly store: ControllerStore,
    private readonly clock: Clock,
    /** The TLS certificate fingerprint to put in tokens; null when serving plain HTTP. */
    private readonly fingerprint: string | null,
  ) {}

  async createToken(opts: { ttlMs?: number; maxUses?: number | null; labels?: Labels; description?: string } = {}): Promise<CreatedToken> {
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
      description: opts.description ?? '',
    };
    await this.store.putJoinToken(rec);
    return { id, token: formatJoinToken({ id, secret, fingerprint: this.fingerprint }), expiresAt: rec.expiresAt, maxUses: rec.maxUses };
  }

  /** Enrolls a new agent with a join token; returns it with its credential (shown to the agent once, stored hashed). */
  async enroll(tokenText: string, agent: { labels: Labels; protocolVersion: number; agentVersion: string }): Promise<{ agent: AgentRecord; credential: string }> {
    const t = parseJoinToken(tokenText);
    const rec = await this.store.getJoinToken(t.id);
    const now = this.clock.now();
    if (!rec || !secretMatches(t.secret, rec.secretHash)) throw new HsError('HS_AUTH', 'unknown enrollment token');
    if (rec.expiresAt <= now) throw new HsError('HS_AUTH', 'enrollment token expired');
    if (!(await this.store.useJoinToken(t.id, now))) throw new HsError('HS_AUTH', 'enrollment token used up');
    const credential = randomBytes(32).toString('base64url');
    const record: AgentRecord = {
      id: `ag-${randomBytes(6).toString('hex')}`,
      credentialHash: sha256Hex(credential),
      enrolledAt: now,
      tokenId: t.id,
      labels: { ...rec.labels, ...agent.labels },
      facts: null,
      protocolVersion: agent.protocolVersion,
      agentVersion: agent.agentVersion,
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
}
