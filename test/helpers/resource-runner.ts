// Runs resource kinds directly (observe, diff, apply; or a poll loop) in the process where it is started — e.g. inside a
// network namespace via `ip netns exec NS node resource-runner.js SPEC` — and prints JSON results on stdout.
import { pathToFileURL } from 'node:url';
import { DEFAULT_POLICY, type ResourceDecl } from '../../lib/baseline/types.js';
import { systemClock } from '../../lib/clock.js';
import { HsError, errorMessage } from '../../lib/errors.js';
import { silentLogger } from '../../lib/log.js';
import { registry } from '../../agent/resources/registry.js';
import type { Change, HostContext, Resource } from '../../agent/resources/resource.js';
import { DEFAULT_SETTINGS, type AgentSettings } from '../../agent/settings.js';

/** A host context with real adapters where the kinds make their own (systemd, procfs) and inert file-watch and journal. */
export function testHost(settings: Partial<AgentSettings> = {}): HostContext {
  return {
    log: silentLogger,
    clock: systemClock,
    fsWatch: { watchPath: () => () => undefined },
    settings: { ...DEFAULT_SETTINGS, ...settings },
    journal: { knownHash: () => undefined, record: () => undefined, forget: () => undefined },
    adapters: new Map(),
  };
}

/** A declaration as the baseline parser would produce it. */
export function testDecl(type: string, name: string, fields: Record<string, unknown>, policy: Partial<typeof DEFAULT_POLICY> = {}): ResourceDecl {
  return {
    id: `${type}:${name}`,
    type,
    name,
    index: 0,
    policy: { ...DEFAULT_POLICY, ...policy },
    fields,
    location: { file: 'test.yaml', line: 1, column: 1 },
  };
}

export function createResource(decl: ResourceDecl, host: HostContext): Resource {
  const kind = registry.get(decl.type);
  if (!kind) throw new Error(`no resource kind '${decl.type}'`);
  return kind.create(decl, host);
}

export interface RunnerSpec {
  settings?: Partial<AgentSettings>;
  resources: { type: string; name: string; fields: Record<string, unknown> }[];
  /** `check`: observe and diff; `converge`: also apply and observe again; `loop`: poll every pollIntervalMs and repair, printing one line per repair, until stdin closes. */
  mode: 'check' | 'converge' | 'loop';
}

export interface RunnerResult {
  id: string;
  observed?: Record<string, unknown>;
  changes?: Change[];
  /** After a converge: the changes still left (empty when repaired). */
  remaining?: Change[];
  after?: Record<string, unknown>;
  error?: { code: string; message: string; retryable: boolean };
}

function errorJson(err: unknown): { code: string; message: string; retryable: boolean } {
  if (err instanceof HsError) return { code: err.code, message: err.message, retryable: err.retryable };
  return { code: 'UNEXPECTED', message: errorMessage(err), retryable: false };
}

async function once(r: Resource, apply: boolean): Promise<RunnerResult> {
  const out: RunnerResult = { id: r.id };
  try {
    const observed = await r.observe();
    out.observed = r.summarize(observed);
    out.changes = r.diff(observed);
    if (apply && out.changes.length > 0) {
      await r.apply(observed, out.changes);
      const after = await r.observe();
      out.after = r.summarize(after);
      out.remaining = r.diff(after);
    }
  } catch (err) {
    out.error = errorJson(err);
  }
  return out;
}

async function main(spec: RunnerSpec): Promise<void> {
  const host = testHost(spec.settings);
  const resources = spec.resources.map((d) => createResource(testDecl(d.type, d.name, d.fields), host));
  if (spec.mode !== 'loop') {
    const results: RunnerResult[] = [];
    for (const r of resources) results.push(await once(r, spec.mode === 'converge'));
    process.stdout.write(`${JSON.stringify(results)}\n`);
  } else {
    // A minimal stand-in for the engine's poll: enough to show detection and repair happen inside the namespace.
    let stopping = false;
    process.stdin.on('end', () => (stopping = true));
    process.stdin.resume();
    process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
    const interval = Math.min(...resources.map((r) => r.pollIntervalMs ?? 1000));
    while (!stopping) {
      for (const r of resources) {
        const res = await once(r, true);
        if ((res.changes?.length ?? 0) > 0 || res.error) process.stdout.write(`${JSON.stringify(res)}\n`);
      }
      await new Promise((resolve) => setTimeout(resolve, interval));
    }
  }
  for (const r of resources) await r.close?.();
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as RunnerSpec;
  main(spec).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
