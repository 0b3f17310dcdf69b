// Plans: what activating a baseline would change on this host, from `observe` and `diff` alone. Nothing is written,
// repaired or recorded; resources the enforced version manages and the planned one does not are listed as removed
// (removal never makes the agent write anything either).
import { errorMessage, HsError } from '../../lib/errors.js';
import type { ResourceDecl } from '../../lib/baseline/types.js';
import type { PlannedChange } from '../../proto/codec.js';
import { registry } from '../resources/registry.js';
import type { HostContext } from '../resources/resource.js';

/** Diffs past this size are cut: a plan of a large fleet has to fit in one frame per host. */
const MAX_DIFF_CHARS = 16 * 1024;
const MAX_TOTAL_DIFF_CHARS = 1024 * 1024;

export interface PlanOutcome {
  resources: number;
  changes: PlannedChange[];
}

export async function planResources(decls: ResourceDecl[], host: HostContext, managedNow: readonly string[]): Promise<PlanOutcome> {
  const changes: PlannedChange[] = [];
  let budget = MAX_TOTAL_DIFF_CHARS;
  for (const decl of decls) {
    const kind = registry.get(decl.type);
    if (!kind) {
      changes.push({ resource: decl.id, action: 'unknown', fields: [], diff: '', error: `resource type '${decl.type}' is not known to this agent` });
      continue;
    }
    const r = kind.create(decl, host);
    try {
      const diff = r.diff(await r.observe());
      if (diff.length === 0) continue;
      const creates = diff.some((c) => c.field === 'exists' && c.observed === false);
      let text = diff.map((c) => c.diff ?? '').filter((d) => d !== '').join('');
      if (text.length > MAX_DIFF_CHARS) text = `${text.slice(0, MAX_DIFF_CHARS)}\n... (diff cut at ${MAX_DIFF_CHARS} characters)\n`;
      if (text.length > budget) text = '(diff left out: the plan reached its size limit)\n';
      budget -= text.length;
      changes.push({ resource: decl.id, action: creates ? 'create' : 'change', fields: diff.map((c) => c.field), diff: text, error: '' });
    } catch (err) {
      const message = err instanceof HsError ? `${err.code}: ${err.message}` : errorMessage(err);
      changes.push({ resource: decl.id, action: 'unknown', fields: [], diff: '', error: message });
    } finally {
      await r.close?.();
    }
  }
  const planned = new Set(decls.map((d) => d.id));
  for (const id of managedNow) {
    if (!planned.has(id)) changes.push({ resource: id, action: 'remove', fields: [], diff: '', error: '' });
  }
  return { resources: decls.length, changes };
}
