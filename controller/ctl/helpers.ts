// What every homeostatctl command shares: the API client built from flags, environment and context (context.ts), the
// JSON-or-people output, and reading an agent named by id or by hostname.
import type { Command } from 'commander';
import { HsError } from '../../lib/errors.js';
import { ApiClient, ApiError } from './client.js';
import { resolveConnection, type ConnectionFlags } from './context.js';

export interface Globals extends ConnectionFlags {
  json?: boolean;
}

export type Row = Record<string, unknown>;

export function client(cmd: Command): { api: ApiClient; json: boolean } {
  const g = cmd.optsWithGlobals<Globals>();
  const c = resolveConnection(g);
  return {
    api: new ApiClient({ server: c.server, token: c.token, ...(c.ca !== undefined ? { ca: c.ca } : {}), ...(c.fingerprint !== undefined ? { fingerprint: c.fingerprint } : {}) }),
    json: g.json ?? false,
  };
}

/** One JSON document for scripts, or the human text (ending in one newline). */
export function out(json: boolean, data: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : `${human().replace(/\n+$/, '')}\n`);
}

export interface AgentSummary {
  id: string;
  facts: { hostname?: string } | null;
}

/** An agent's id from its id or its hostname; a name that matches none (or several hosts) is refused with a hint. */
export async function agentId(api: ApiClient, text: string): Promise<string> {
  try {
    return (await api.call<AgentSummary>('GET', `/api/v1/agents/${encodeURIComponent(text)}`)).id;
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
  }
  const all = await api.call<AgentSummary[]>('GET', '/api/v1/agents');
  const byHost = all.filter((a) => a.facts?.hostname === text);
  if (byHost.length === 1 && byHost[0]) return byHost[0].id;
  if (byHost.length > 1) throw new HsError('HS_CONFIG', `--agent ${text}: ${byHost.length} agents have that hostname (${byHost.map((a) => a.id).join(', ')}); give the id`);
  const known = all.slice(0, 10).map((a) => (a.facts?.hostname ? `${a.id} (${a.facts.hostname})` : a.id));
  throw new HsError('HS_NOT_FOUND', `no agent ${JSON.stringify(text)} by id or hostname${known.length > 0 ? `; agents: ${known.join(', ')}${all.length > 10 ? ', …' : ''}` : '; no agent is enrolled yet'}`);
}

/** `web-1 (ag-1234)` when the hostname is known. */
export const agentLabel = (a: AgentSummary | undefined, id: string): string => (a?.facts?.hostname ? `${a.facts.hostname} (${id})` : id);
