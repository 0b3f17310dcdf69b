// The port through which tuning publishes policy versions — push a new version, roll it out like any other, read what is
// in force for replays — and its implementation over the controller's policy service and rollout engine, so a tuning
// version is stored, signed, rolled out in waves and cached by agents exactly like a policy people push.
import { errorMessage } from '../../lib/errors.js';
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import { parsePolicy, type ActivePolicy } from '../../lib/policy/index.js';
import type { PolicyService } from '../policies.js';
import type { RolloutEngine } from '../rollouts/engine.js';
import { parseStrategy } from '../rollouts/waves.js';
import type { ControllerStore, PolicyVersionRecord } from '../store/types.js';

/** The file name tuning's versions are pushed under (located errors and the agents' records name it). */
export const TUNING_FILE = 'homeostat-tuning.yaml';

export interface PolicyPublisher {
  /** The policy versions in force (what a replay starts from): per name, the fleet's target, else the latest pushed. */
  active(): Promise<ActivePolicy[]>;
  /** The latest stored version of a document, if any. */
  current(name: string): Promise<{ version: number; yaml: string } | undefined>;
  /** Validates, stores and signs a new version (the latest when identical); `by` goes into the audit. */
  push(yaml: string, by: string): Promise<{ name: string; version: number }>;
  /**
   * Rolls a stored version out to the agents its selector picks, like `POST /api/v1/rollouts`; `strategy` as that takes it
   * (absent: the default waves and gates).
   */
  rollout(name: string, version: number, by: string, strategy?: unknown): Promise<{ rollout: number }>;
}

export interface FleetPublisherDeps {
  store: ControllerStore;
  policies: PolicyService;
  rollouts: RolloutEngine;
  clock: Clock;
  log: Logger;
}

export class FleetPolicyPublisher implements PolicyPublisher {
  constructor(private readonly deps: FleetPublisherDeps) {}

  async active(): Promise<ActivePolicy[]> {
    const latest = new Map<string, PolicyVersionRecord>();
    // Ordered by name and version: the last one seen of a name is its latest.
    for (const v of await this.deps.store.listPolicyVersions()) latest.set(v.name, v);
    const out: ActivePolicy[] = [];
    for (const [name, newest] of latest) {
      // A completed rollout made its version every selected agent's; while the first rollout of a name is still under way
      // (or was never started) the latest pushed version is what people mean to enforce.
      const target = this.deps.policies.target(name);
      const v = target && target.version !== newest.version ? await this.deps.policies.version(name, target.version) : newest;
      try {
        out.push({ document: parsePolicy(v.yaml, { file: `${name}@${v.version}` }), version: v.version });
      } catch (err) {
        // Agents refuse it just the same (and keep what they had): one bad stored version must not stop every replay.
        this.deps.log.error({ policy: name, version: v.version, err: errorMessage(err) }, 'stored policy version no longer parses; left out of replays');
      }
    }
    return out;
  }

  async current(name: string): Promise<{ version: number; yaml: string } | undefined> {
    const versions = await this.deps.store.listPolicyVersions(name);
    const last = versions[versions.length - 1];
    return last ? { version: last.version, yaml: last.yaml } : undefined;
  }

  async push(yaml: string, by: string): Promise<{ name: string; version: number }> {
    const { record, created } = await this.deps.policies.push({ yaml, file: TUNING_FILE, tuning: true });
    await this.deps.store.addControllerEvent({
      time: this.deps.clock.now(),
      kind: 'policy_pushed',
      rolloutId: null,
      baseline: null,
      detail: { policy: record.name, version: record.version, sha256: record.sha256, created, by },
    });
    return { name: record.name, version: record.version };
  }

  async rollout(name: string, version: number, by: string, strategy?: unknown): Promise<{ rollout: number }> {
    const { kind, spec } = parseStrategy(strategy);
    // Every version of the tuning document holds everything accepted so far, so a newer one replaces an unfinished rollout
    // of an older one entirely: finishing the older would hand hosts a version already outdated. The new rollout starts
    // from its first wave with its own gates; the engine first sends hosts the older one reached back to the fleet's target.
    const r = await this.deps.rollouts.start({ document: 'policy', baseline: name, version, kind, spec, supersede: true, by });
    return { rollout: r.id };
  }
}
