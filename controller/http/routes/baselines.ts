// /api/v1/baselines: push a new version (validated like the agent does), list names and versions, show one, diff two.
import { HsError } from '../../../lib/errors.js';
import type { BaselineVersionRecord } from '../../store/types.js';
import { dataMap } from '../body.js';
import type { ApiContext } from '../context.js';
import { requiredInt } from '../params.js';
import { json, jsonBody, type ApiRequest, type Route } from '../router.js';

/** A baseline with its source files: a few MiB at most. */
export const PUSH_BODY_LIMIT = 8 * 1024 * 1024;

/** The two accepted bodies: the YAML itself, or JSON `{ yaml, file?, sources?: { "rel/path": base64 } }`. */
function readPush(req: ApiRequest): { yaml: string; file: string; sources: Record<string, Buffer> } {
  const type = String(req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (type === 'application/json') {
    const b = jsonBody<{ yaml?: unknown; file?: unknown; sources?: unknown }>(req, { dataMaps: ['sources'] });
    if (typeof b.yaml !== 'string') throw new HsError('HS_CONFIG', 'a JSON push needs a "yaml" string');
    // Keys are file names chosen by the client: `toString` or `constructor` must find nothing but what was sent.
    const sources = dataMap<Buffer>();
    if (b.sources !== undefined) {
      if (typeof b.sources !== 'object' || b.sources === null || Array.isArray(b.sources)) throw new HsError('HS_CONFIG', '"sources" must map paths to base64 text');
      for (const [rel, v] of Object.entries(b.sources)) {
        if (typeof v !== 'string') throw new HsError('HS_CONFIG', `sources[${JSON.stringify(rel)}] must be base64 text`);
        sources[rel] = Buffer.from(v, 'base64');
      }
    }
    return { yaml: b.yaml, file: typeof b.file === 'string' && b.file !== '' ? b.file : 'baseline.yaml', sources };
  }
  return { yaml: req.body.toString('utf8'), file: req.query.get('file') ?? 'baseline.yaml', sources: dataMap<Buffer>() };
}

function summary(v: BaselineVersionRecord): Record<string, unknown> {
  return { version: v.version, sha256: v.sha256, resources: v.resources, description: v.description, selector: v.selector, createdAt: v.createdAt };
}

export function baselineRoutes(ctx: ApiContext): Route[] {
  return [
    {
      method: 'POST',
      pattern: '/api/v1/baselines',
      auth: 'admin',
      bodyLimit: PUSH_BODY_LIMIT,
      handler: async (req) => {
        const { record, created } = await ctx.baselines.push(readPush(req));
        return json(created ? 201 : 200, { name: record.name, version: record.version, sha256: record.sha256, created });
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/baselines',
      auth: 'admin',
      handler: async () => {
        const byName = new Map<string, BaselineVersionRecord[]>();
        for (const v of await ctx.store.listBaselineVersions()) byName.set(v.name, [...(byName.get(v.name) ?? []), v]);
        return json(
          200,
          [...byName].map(([name, versions]) => {
            const t = ctx.baselines.target(name);
            return {
              name,
              latest: versions[versions.length - 1]?.version ?? 0,
              target: t ? { version: t.version, rollback: t.rollback, issuedAt: t.issuedAt, expiresAt: t.expiresAt, rollout: t.rolloutId } : null,
              versions: versions.map(summary),
            };
          }),
        );
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/baselines/:name',
      auth: 'admin',
      handler: async (req) => {
        const name = req.params.name ?? '';
        const versions = await ctx.store.listBaselineVersions(name);
        if (versions.length === 0) throw new HsError('HS_NOT_FOUND', `no baseline ${name}`);
        const t = ctx.baselines.target(name);
        return json(200, { name, target: t ? { version: t.version, rollback: t.rollback, expiresAt: t.expiresAt } : null, versions: versions.map(summary) });
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/baselines/:name/versions/:version',
      auth: 'admin',
      handler: async (req) => {
        const v = await ctx.baselines.version(req.params.name ?? '', requiredInt(req.params.version, 'version'));
        return json(200, { name: v.name, ...summary(v), file: v.file, yaml: v.yaml, sources: v.sources });
      },
    },
    {
      method: 'GET',
      pattern: '/api/v1/baselines/:name/diff',
      auth: 'admin',
      handler: async (req) => {
        const name = req.params.name ?? '';
        const diff = await ctx.baselines.diff(name, requiredInt(req.query.get('from') ?? undefined, 'from'), requiredInt(req.query.get('to') ?? undefined, 'to'));
        if (String(req.headers.accept ?? '').includes('text/plain')) return { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: diff };
        return json(200, { name, from: Number(req.query.get('from')), to: Number(req.query.get('to')), diff });
      },
    },
  ];
}
