// The tuning policy document: every accepted proposal's rule (and window) in one policy of its own, so tuning never rewrites
// a policy people wrote and taking one change back is a new version without its rule. The document is a function of the
// accepted proposals, rendered the same way each time.
import { stringify } from 'yaml';
import { parsePolicy, PolicySet, type ActivePolicy, type PolicyDocument } from '../../lib/policy/index.js';
import { TUNING_POLICY } from '../policies.js';
import type { ProposalKind, ProposalRecord } from '../store/tuning.js';

export { TUNING_POLICY };

/**
 * Consulted before every other policy: a tuning rule names one resource of one baseline and one kind of change (or one
 * opponent), and it exists because the history of exactly that drift argued for it.
 */
export const TUNING_PRIORITY = 1000;

/** On one drift the most cautious accepted rule wins: escalate, then record only, then windows, grace periods, repair. */
const KIND_ORDER: Record<ProposalKind, number> = { coordination: 0, exception: 1, 'maintenance-window': 2, defer: 3, 'auto-repair': 4 };

export type Applied = Pick<ProposalRecord, 'id' | 'kind' | 'rationale' | 'rule' | 'window'>;

export function renderTuningDocument(applied: readonly Applied[]): string {
  const sorted = [...applied].sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind] || a.id - b.id);
  const windows = sorted.flatMap((p) => (p.window ? [p.window] : []));
  const doc = {
    apiVersion: 'homeostat/v1',
    kind: 'Policy',
    metadata: {
      name: TUNING_POLICY,
      description: 'Rules accepted from tuning proposals (docs/tuning.md); each rule names its proposal. Changed only through /api/v1/proposals.',
    },
    spec: {
      priority: TUNING_PRIORITY,
      ...(windows.length > 0 ? { maintenanceWindows: windows } : {}),
      rules: sorted.map((p) => ({ description: describe(p), ...p.rule })),
    },
  };
  return stringify(doc, { lineWidth: 0 });
}

function describe(p: Applied): string {
  const text = `proposal ${p.id} (${p.kind}): ${p.rationale}`;
  return text.length > 1000 ? `${text.slice(0, 997)}...` : text;
}

export function parseTuningDocument(yaml: string, version: number): PolicyDocument {
  return parsePolicy(yaml, { file: `${TUNING_POLICY}@${version}` });
}

/** The active policies with the tuning document replaced by one holding `applied` (a version after `version`). */
export function withTuning(active: readonly ActivePolicy[], applied: readonly Applied[], version: number): { set: PolicySet; document: PolicyDocument } {
  const document = parseTuningDocument(renderTuningDocument(applied), version + 1);
  return { set: new PolicySet([...active.filter((a) => a.document.name !== TUNING_POLICY), { document, version: version + 1 }]), document };
}
