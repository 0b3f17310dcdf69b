// /api/v1/policies: push a new policy version (validated like the agent does, located errors), list names and versions,
// show one version, diff two. Rolled out through /api/v1/rollouts with {"policy": NAME, "version": N}.
import { HsError } from '../../../lib/errors.js';
import { MAX_POLICY_BYTES } from '../../../lib/policy/index.js';
import type { PolicyVersionRecord } from '../../store/types.js';
import type { ApiContext } from '../context.js';
import { requiredInt } from '../params.js';
import { json, jsonBody, type ApiRequest, type Route } from '../router.js';

/** A policy is at most MAX_POLICY_BYTES of YAML; as a JSON string it may take up to about twice that, escapes included. */
export const POLICY_BODY_LIMIT = 2 * MAX_POLICY_BYTES + 64 * 1024;

/** The two accepted bodies: the YAML itself (`?file=NAME` names it), or JSON `{ yaml, file? }`. */
function readPush(req: ApiRequest): { yaml: string; file: string } {
  const type = String(req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (type === 'application/json') {
    const b = jsonBody<{ yaml?: unknown; file?: unknown }>(req);
    if (typeof b.yaml !== 'string') throw new HsError('HS_CONFIG', 'a JSON push needs a "yaml" string');
    return { yaml: b.yaml, file: typeof b.file === 'string' && b.file !== '' ? b.file.slice(0, 256) : 'policy.yaml' };
  }
  return { yaml: req.body.toString('utf8'), file: (req.query.get('file') ?? 'policy.yaml').slice(0, 256) };
}

function summary(v: PolicyVersionRecord): Record<string, unknown> {
  return { version: v.version, sha256: v.sha256, description: v.description, selector: v.selector, priority: v.priority, rules: v.rules, windows: v.windows, createdAt: v.createdAt };
}

export function policyRoutes(ctx: ApiContext): Route[] {
  const target = (name: string): Record<string, unknown> | null => {
    const t = ctx.policies.target(name);
    return t ? { version: t.version, rollback: t.rollback, issuedAt: t.issuedAt, expiresAt: t.expiresAt, rollout: t.rolloutId } : null;
  };
  const versionsOf = async (name: string): Promise<PolicyVersionRecord[]> => {
    const versions = await ctx.store.listPolicyVersions(name);
    if (versions.length === 0) throw new HsError('HS_NOT_FOUND', `no policy ${name}`);
    return versions;
  };
  return [
    {
      method: 'POST',
      pattern: '/api/v1/policies',
      auth: 'admin',
      bodyLimit: POLICY_BODY_LIMIT,
      handler: async (req) => {
        const { record, created } = await ctx.policies.push(readPush(req));
        return json(created ? 201 : 200, { name: record.name, version: record.version, sha256: record.sha256, created });
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/policies',
      auth: 'admin',
      handler: async () => {
        const byName = new Map<string, PolicyVersionRecord[]>();
        for (const v of await ctx.store.listPolicyVersions()) byName.set(v.name, [...(byName.get(v.name) ?? []), v]);
        return json(
          200,
          [...byName].map(([name, versions]) => ({ name, latest: versions[versions.length - 1]?.version ?? 0, target: target(name), versions: versions.map(summary) })),
        );
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/policies/:name',
      auth: 'admin',
      handler: async (req) => {
        const name = req.params.name ?? '';
        const versions = await versionsOf(name);
        return json(200, { name, target: target(name), versions: versions.map(summary) });
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/policies/:name/versions',
      auth: 'admin',
      handler: async (req) => json(200, (await versionsOf(req.params.name ?? '')).map(summary)),
    },
    {
      method: 'GET',
      pattern: '/api/v1/policies/:name/versions/:version',
      auth: 'admin',
      handler: async (req) => {
        const v = await ctx.policies.version(req.params.name ?? '', requiredInt(req.params.version, 'version'));
        return json(200, { name: v.name, ...summary(v), file: v.file, yaml: v.yaml });
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/policies/:name/diff',
      auth: 'admin',
      handler: async (req) => {
        const name = req.params.name ?? '';
        const from = requiredInt(req.query.get('from') ?? undefined, 'from');
        const to = requiredInt(req.query.get('to') ?? undefined, 'to');
        const diff = await ctx.policies.diff(name, from, to);
        if (String(req.headers.accept ?? '').includes('text/plain')) return { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: diff };
        return json(200, { name, from, to, diff });
      },
    },
  ];
}
