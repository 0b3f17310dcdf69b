// What `homeostat-agent explain RESOURCE_ID` shows, built from what the agent keeps: the resource's state, its last drift
// with the actor, and the decision with the rule that made it — as one JSON document or as lines for people.
import { actorLabel, type Actor } from './actor.js';
import { ruleLabel, type PolicyDecision, type PolicySet, type RuleRef } from './decide.js';
import { actionText } from './types.js';

export interface Explanation {
  resource: string;
  /** `compliant`, `drifted`, `deferred`, `escalated`, ... as the engine's last outcome says. */
  state: string;
  lastDrift?: { time: number; changes: readonly string[]; actor?: Actor };
  decision?: PolicyDecision;
  /** The rule as written, when a policy document decided: where it is and what it says. */
  rule?: { label: string; file: string; line: number; match: string; action: string; description?: string };
}

/** The rule a decision names, looked up in the active policies: its place in the file and its text. */
export function describeRule(set: PolicySet, ref: RuleRef): Explanation['rule'] | undefined {
  if ('baseline' in ref) return undefined;
  const policy = set.policies.find((p) => p.document.name === ref.document && p.version === ref.version);
  const rule = policy?.document.rules[ref.index];
  if (!rule) return undefined;
  return {
    label: ruleLabel(ref),
    file: rule.location.file,
    line: rule.location.line,
    match: rule.matchText,
    action: actionText(rule.action),
    ...(rule.description ? { description: rule.description } : {}),
  };
}

export function explanationLines(e: Explanation): string[] {
  const out = [`${e.resource}: ${e.state}`];
  if (e.lastDrift) {
    const who = e.lastDrift.actor ? actorWords(e.lastDrift.actor) : 'unknown';
    out.push(`last drift: ${new Date(e.lastDrift.time).toISOString()}, ${e.lastDrift.changes.join(', ')}, by ${who}`);
  }
  if (e.decision) {
    out.push(`decided: ${e.decision.action} (${e.decision.cause}) by ${ruleLabel(e.decision.rule)}`);
    if (e.rule) {
      out.push(`  rule at ${e.rule.file}:${e.rule.line}: match ${e.rule.match}, action ${e.rule.action}${e.rule.description ? ` (${e.rule.description})` : ''}`);
    }
    out.push(`  why: ${e.decision.reason}`);
    if (e.decision.until !== undefined) out.push(`  until: ${new Date(e.decision.until).toISOString()}`);
    else if (e.decision.reconsiderAt !== undefined) out.push(`  looked at again: ${new Date(e.decision.reconsiderAt).toISOString()}`);
  }
  return out;
}

function actorWords(a: Actor): string {
  if (a.source === 'unknown') return `unknown${a.detail ? ` (${a.detail})` : ''}`;
  const parts = [actorLabel(a)];
  if (a.pid !== undefined) parts.push(`pid ${a.pid}`);
  if (a.user !== undefined) parts.push(`user ${a.user}`);
  if (a.loginUser !== undefined && a.loginUser !== a.user) parts.push(`logged in as ${a.loginUser}`);
  if (a.detail !== undefined) parts.push(a.detail);
  return `${parts.join(', ')} [${a.source}]`;
}
