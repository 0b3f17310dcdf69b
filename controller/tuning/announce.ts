// Announcements of tuning changes: a controller event for each (the controller's audit trail), and for automatic changes
// and their reverts a POST to the webhook setting. A webhook that fails, hangs or redirects is recorded and never holds
// the change back.
import type { Clock } from '../../lib/clock.js';
import { errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { ControllerStore } from '../store/types.js';

export type TuningEventKind = 'proposal_accepted' | 'proposal_rejected' | 'proposal_reverted' | 'autotune_applied' | 'autotune_reverted';

export interface Announcement {
  kind: TuningEventKind;
  proposal: { id: number; kind: string; target: unknown; rationale: string };
  /** The tuning version the change made and the rollout putting it on the hosts. */
  policy: { name: string; version: number; rollout?: number } | null;
  by: string;
  reason?: string;
}

/** How long a webhook may take to answer. */
export const WEBHOOK_TIMEOUT_MS = 5000;

export class Announcer {
  constructor(
    private readonly store: ControllerStore,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly timeoutMs = WEBHOOK_TIMEOUT_MS,
  ) {}

  async announce(a: Announcement, webhook: string | null): Promise<void> {
    const time = this.clock.now();
    await this.store.addControllerEvent({ time, kind: a.kind, rolloutId: null, baseline: baselineOf(a.proposal.target), detail: { ...a } });
    this.log.info({ kind: a.kind, proposal: a.proposal.id, policy: a.policy, by: a.by }, 'tuning change');
    if (webhook === null || !a.kind.startsWith('autotune_')) return;
    try {
      const res = await fetch(webhook, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ event: a.kind, time, ...a }),
        redirect: 'manual',
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.status < 200 || res.status >= 300) throw new Error(`answered ${res.status}`);
    } catch (err) {
      this.log.warn({ webhook: redact(webhook), err: errorMessage(err) }, 'tuning webhook failed');
      await this.store
        .addControllerEvent({ time: this.clock.now(), kind: 'tuning_webhook_failed', rolloutId: null, baseline: null, detail: { proposal: a.proposal.id, event: a.kind, error: errorMessage(err) } })
        .catch(() => undefined);
    }
  }
}

function baselineOf(target: unknown): string | null {
  const b = (target as { baseline?: unknown } | null)?.baseline;
  return typeof b === 'string' ? b : null;
}

/** The webhook's origin and path, without a query that may carry a secret. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return '(invalid url)';
  }
}
