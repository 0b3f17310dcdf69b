// The controller link's reconnect schedule (lib/backoff.ts): half to all of a step that stops at 30 s, so a fleet cut off
// together does not come back in lockstep; while the controller is unreachable the link also probes it and cuts the wait
// short once it answers (link.ts).
import type { BackoffOptions } from '../../lib/backoff.js';

export { Backoff, type BackoffOptions } from '../../lib/backoff.js';

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 30_000 };
