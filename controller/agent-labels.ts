// Which labels the controller trusts for an agent, and so which baselines, policies, plans and canary waves select it. Like
// Puppet's trusted facts against ordinary facts: labels come from the join token (fixed by the operator who made it), from
// an operator through the API, or from the agent's own request where the token allows that key and value. Host facts
// (hostname, os, kernel, arch) are reports; they count as labels only where the token allows their key.
import { FACT_LABEL_KEYS, labelAllowed, labelsFromFacts, type Labels } from '../lib/labels.js';
import type { HostFacts } from '../proto/codec.js';

export interface LabelSources {
  /** Fixed by the join token the agent enrolled with. */
  token: Labels;
  /** The token's allowance: what the agent may ask for. */
  allow: readonly string[];
  /** What the agent asks for in its hello. */
  requested: Labels;
  facts: HostFacts | null;
  /** Set by an operator; wins over everything. */
  operator: Labels;
}

export interface TrustedLabels {
  labels: Labels;
  /** Requests refused, each `key=value (why)`: not allowed by the token, or another value of a key the token fixes. */
  refused: string[];
}

/**
 * The agent's trusted labels. A request for a key the operator set is overridden by the operator's value (their later
 * decision); a request the token does not allow is refused, never merged.
 */
export function trustedLabels(s: LabelSources): TrustedLabels {
  const labels: Labels = {};
  const refused: string[] = [];
  for (const [k, v] of Object.entries(s.requested)) {
    if (Object.hasOwn(s.operator, k)) continue;
    if (Object.hasOwn(s.token, k)) {
      if (s.token[k] !== v) refused.push(`${k}=${v} (the join token sets ${k}=${s.token[k] ?? ''})`);
      continue;
    }
    if (labelAllowed(s.allow, k, v)) labels[k] = v;
    else refused.push(`${k}=${v} (not allowed by the join token)`);
  }
  if (s.facts) {
    for (const [k, v] of Object.entries(labelsFromFacts(s.facts))) {
      if (!Object.hasOwn(labels, k) && !Object.hasOwn(s.requested, k) && labelAllowed(s.allow, k, v)) labels[k] = v;
    }
  }
  return { labels: { ...labels, ...s.token, ...s.operator }, refused };
}

/**
 * What an agent of protocol 1 or 2 asks for: those agents folded their fact labels into the hello's labels, so a fact key
 * whose value is the one its facts give is a report, not a request.
 */
export function requestedByOldAgent(labels: Labels, facts: HostFacts | null): Labels {
  if (!facts) return labels;
  const derived = labelsFromFacts(facts);
  const out: Labels = {};
  for (const [k, v] of Object.entries(labels)) {
    if ((FACT_LABEL_KEYS as readonly string[]).includes(k) && derived[k] === v) continue;
    out[k] = v;
  }
  return out;
}
