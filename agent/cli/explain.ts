// `homeostat-agent explain RESOURCE_ID`: why a resource is as it is, from the local cache read-only (like `status`): its
// state by its latest record, its last drift with who made it, and the decision with the rule that made it — quoted from
// the policy versions the cache holds (the controller's signed ones and the host's own files).
import { HsError } from '../../lib/errors.js';
import { describeRule, explanationLines, parsePolicy, PolicySet, type ActivePolicy, type Explanation, type PolicyDecision } from '../../lib/policy/index.js';
import { decodePolicyDoc } from '../../proto/codec.js';
import { readLocalPolicies } from '../agent.js';
import { loadConfig, type CommonFlags } from '../config.js';
import { AgentStore } from '../store/store.js';
import type { AuditEntry } from '../store/types.js';
import { EXIT, printJson, println, reportError } from './output.js';

/** Records of the resource looked at, newest first: its last drift and last decision are among them. */
const LOOK_BACK = 500;

export function explainCommand(resource: string, flags: CommonFlags & { json?: boolean }): number {
  const json = flags.json ?? false;
  let store: AgentStore | undefined;
  try {
    const config = loadConfig(flags);
    store = AgentStore.open(config.settings.stateDir, { readonly: true });
    const records = store.queryAudit({ resource, limit: LOOK_BACK, newest: true }).reverse();
    if (records.length === 0) throw new HsError('HS_NOT_FOUND', `no record of ${resource} in ${config.settings.stateDir}; resource ids look like file:/etc/motd, service:nginx.service, sysctl:net.ipv4.ip_forward`, { resource });
    const e = explain(resource, records, knownPolicies(store));
    if (json) printJson(e);
    else for (const line of explanationLines(e)) println(line);
    return EXIT.ok;
  } catch (err) {
    return reportError(err, json);
  } finally {
    store?.close();
  }
}

/** The explanation from a resource's records (newest first) and the policy versions known here. */
export function explain(resource: string, newestFirst: AuditEntry[], policies: PolicySet): Explanation & { since: number; observed?: Record<string, unknown> } {
  const latest = newestFirst[0] as AuditEntry;
  const drift = newestFirst.find((r) => r.event === 'drift_detected');
  const decided = newestFirst.find((r) => r.decision !== undefined);
  const decision = decided?.decision as PolicyDecision | undefined;
  const rule = decision ? describeRule(policies, decision.rule) : undefined;
  const observed = newestFirst.find((r) => r.observed)?.observed ?? undefined;
  return {
    resource,
    state: stateOf(latest),
    since: latest.time,
    ...(observed ? { observed } : {}),
    ...(drift ? { lastDrift: { time: drift.time, changes: drift.changes ?? [], ...(drift.actor ? { actor: drift.actor } : {}) } } : {}),
    ...(decision ? { decision } : {}),
    ...(rule ? { rule } : {}),
  };
}

/** The resource's state in a word, by its latest record. */
function stateOf(r: AuditEntry): string {
  const at = new Date(r.time).toISOString();
  switch (r.event) {
    case 'repaired':
      return `compliant (repaired ${at})`;
    case 'drift_detected':
    case 'deferred':
      switch (r.decision?.action) {
        case 'defer':
          return `deferred until ${r.decision.until === undefined ? 'its grace period ends' : new Date(r.decision.until).toISOString()} (drifted ${at})`;
        case 'monitor':
          return `drifted, recorded only (${at})`;
        case 'escalate':
          return `escalated, waiting for an operator (${at})`;
        default:
          return `drifted (${at})`;
      }
    case 'escalated':
      return `escalated, waiting for an operator (${at})`;
    case 'suppressed_flapping':
      return `repairs stopped for flapping, waiting for an operator (${at})`;
    case 'rejected':
      return `drift accepted by an operator (${at}): ${r.detail ?? ''}`;
    case 'approved':
      return `approved for one repair (${at})`;
    case 'repair_failed':
      return `repair failed (${at}): ${r.detail ?? ''}`;
    default:
      return `${r.event.replaceAll('_', ' ')} (${at})`;
  }
}

/** Every policy version the cache holds: the controller's signed documents and the host's own recent versions. */
function knownPolicies(store: AgentStore): PolicySet {
  const out: ActivePolicy[] = [];
  try {
    for (const s of JSON.parse(store.getMeta('link.signedPolicies') ?? '[]') as { payload: string }[]) {
      try {
        const doc = decodePolicyDoc(Buffer.from(s.payload, 'base64'));
        out.push({ document: parsePolicy(doc.yaml, { file: doc.file || `${doc.name}.yaml` }), version: doc.version });
      } catch {
        // a version that does not read is one the agent refused too: no rule of it decided anything
      }
    }
  } catch {
    // an unreadable cache: the decision still names its rule, without the text
  }
  for (const versions of Object.values(readLocalPolicies(store))) {
    for (const v of versions) {
      try {
        out.push({ document: parsePolicy(v.text, { file: v.file }), version: v.version });
      } catch {
        // as above
      }
    }
  }
  return new PolicySet(out);
}
