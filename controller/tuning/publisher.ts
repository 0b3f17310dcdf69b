// The port through which tuning publishes policy versions: push a new version, roll it out like any other, and read what is
// in force for replays. The controller's policy service fills it once policies are distributed; until then
// LocalPolicyPublisher keeps the tuning document's versions in the controller store and records each rollout as requested.
import { createHash } from 'node:crypto';
import type { Clock } from '../../lib/clock.js';
import { parsePolicy, type ActivePolicy } from '../../lib/policy/index.js';
import type { ControllerStore } from '../store/types.js';
import { TUNING_POLICY } from './document.js';

export interface PolicyPublisher {
  /** The policy versions agents enforce now (what a replay starts from). */
  active(): Promise<ActivePolicy[]>;
  /** The latest version of a document, if any. */
  current(name: string): Promise<{ version: number; yaml: string } | undefined>;
  /** Validates and stores a new version (signed by the policy service); `by` goes into the audit. */
  push(yaml: string, by: string): Promise<{ name: string; version: number }>;
  /** Rolls a stored version out to the agents its selector picks, like any other rollout. */
  rollout(name: string, version: number, by: string): Promise<{ rollout: number | null; note?: string }>;
}

/**
 * Tuning's own versions of its document, in the controller store. Policies do not reach agents through the controller yet
 * (docs/policy.md, "Distribution"): a rollout is recorded as a controller event saying so, and the version counts as in
 * force for backtests and later proposals.
 */
export class LocalPolicyPublisher implements PolicyPublisher {
  constructor(
    private readonly store: ControllerStore,
    private readonly clock: Clock,
  ) {}

  async active(): Promise<ActivePolicy[]> {
    const latest = await this.store.tuning.latestTuningDocument(TUNING_POLICY);
    if (!latest) return [];
    return [{ document: parsePolicy(latest.yaml, { file: `${latest.name}@${latest.version}` }), version: latest.version }];
  }

  async current(name: string): Promise<{ version: number; yaml: string } | undefined> {
    const latest = await this.store.tuning.latestTuningDocument(name);
    return latest ? { version: latest.version, yaml: latest.yaml } : undefined;
  }

  async push(yaml: string, by: string): Promise<{ name: string; version: number }> {
    const doc = parsePolicy(yaml, { file: 'policy.yaml' });
    const rec = await this.store.tuning.addTuningDocument({
      name: doc.name,
      yaml,
      sha256: createHash('sha256').update(yaml).digest('hex'),
      createdAt: this.clock.now(),
      createdBy: by,
    });
    return { name: rec.name, version: rec.version };
  }

  async rollout(name: string, version: number, by: string): Promise<{ rollout: number | null; note?: string }> {
    const note = 'policy versions are not distributed to agents by the controller yet; this version is in force for backtests and proposals';
    await this.store.addControllerEvent({ time: this.clock.now(), kind: 'policy_rollout_requested', rolloutId: null, baseline: null, detail: { policy: name, version, by, note } });
    return { rollout: null, note };
  }
}
