// Why the link to the controller is down, in words an operator can act on: what `homeostat-agent status` shows instead of
// a bare "offline", and whether retrying soon can help.
import type { HsError } from '../../lib/errors.js';

export type LinkProblemReason =
  | 'unreachable' // nothing answers at the controller's address
  | 'disconnected' // the connection dropped (controller restarting, network, ping lost)
  | 'busy' // the controller turned the connection away for now (too many at once)
  | 'auth_refused' // the controller does not know this agent, revoked it, or refused the join token
  | 'labels_refused' // the labels asked for are not allowed by the join token
  | 'key_mismatch' // the controller's signing key is not the pinned one
  | 'certificate_mismatch' // the TLS certificate is not the pinned one
  | 'rate_limited'
  | 'protocol'; // an incompatible or misbehaving peer

export interface LinkProblem {
  reason: LinkProblemReason;
  message: string;
  at: number;
}

/** Problems that will not go away by retrying soon: wait the longest step between attempts. */
export const LASTING: readonly LinkProblemReason[] = ['auth_refused', 'labels_refused', 'key_mismatch', 'certificate_mismatch', 'protocol'];
const UNREACHABLE_ERRNO = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL']);

/**
 * The problem behind a closed connection: what this side decided (`said.reason`, e.g. a signing-key mismatch), the
 * controller's close code (with its Error frame's message), or the socket's error.
 */
export function classifyClose(c: {
  code: number;
  reason: string;
  err: HsError | undefined;
  said: { reason?: LinkProblemReason; message: string } | undefined;
  /** This agent's id once enrolled; null while it enrolls. */
  agentId: string | null;
  stateDir: string;
  url: string;
  at: number;
}): LinkProblem {
  const { at } = c;
  if (c.said?.reason) return { reason: c.said.reason, message: c.said.message, at };
  const detail = c.said?.message ?? c.err?.message ?? (c.reason || `closed with code ${c.code}`);
  switch (c.code) {
    case 4401:
      return {
        reason: 'auth_refused',
        message: c.agentId
          ? `the controller refused this agent's credential (${detail}): it does not know agent ${c.agentId} (a controller whose data was lost or replaced) or revoked it; enroll again: remove ${c.stateDir}/controller.json and start with a new --token`
          : `the controller refused the join token (${detail})`,
        at,
      };
    case 4403:
      return { reason: 'labels_refused', message: `the controller refused the labels asked for (${detail}); change --labels or use a join token that allows them`, at };
    case 4429:
      return { reason: 'rate_limited', message: `the controller asks to retry later (${detail})`, at };
    case 4400:
      return { reason: 'protocol', message: `the controller refused this agent's protocol (${detail}); upgrade the agent`, at };
  }
  if (c.err?.code === 'HS_AUTH') return { reason: 'certificate_mismatch', message: detail, at };
  const errno = (c.err?.cause as NodeJS.ErrnoException | undefined)?.code;
  if (errno && UNREACHABLE_ERRNO.has(errno)) return { reason: 'unreachable', message: `nothing answers at ${c.url} (${errno})`, at };
  if (/Unexpected server response: (429|503)/.test(detail)) return { reason: 'busy', message: `the controller turned the connection away for now (${detail})`, at };
  return { reason: 'disconnected', message: detail, at };
}
