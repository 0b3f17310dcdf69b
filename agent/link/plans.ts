// Plan requests on the agent: a request is answered from observation only, and only once its signature holds (the pinned
// controller key, this agent, this plan, not expired); the planned version is never activated. Every request, answered or
// refused, is in the audit log, so no one reads this host's state through a plan without a trace.
import { HsError, errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { keyIdOf } from '../../lib/signing.js';
import { decodeBaselineDoc, type PlanRequest, type PlanResult } from '../../proto/codec.js';
import type { LinkedAgent } from './agent-port.js';
import { materialize } from './assignments.js';
import { verifyPlan } from './trust.js';

export async function answerPlan(agent: LinkedAgent, creds: { agentId: string; signingPublicKey: string }, req: PlanRequest, now: number, log: Logger): Promise<PlanResult> {
  const refuse = (message: string): PlanResult => ({ planId: req.planId, ok: false, error: message.slice(0, 1000), currentVersion: 0, resources: 0, changes: [] });
  const pinned = Buffer.from(creds.signingPublicKey, 'base64');
  const v = verifyPlan(req.signed, req.planId, pinned, creds.agentId, now);
  if (!('doc' in v)) {
    log.warn({ plan: req.planId.slice(0, 64), reason: v.message }, 'plan request refused');
    agent.recordLinkEvent('plan_refused', `plan ${req.planId.slice(0, 64)}: ${v.code}: ${v.message}`, null);
    return refuse(`${v.code}: ${v.message}`);
  }
  const plan = v.doc;
  try {
    const doc = decodeBaselineDoc(plan.baseline);
    agent.recordLinkEvent(
      'plan_requested',
      `plan ${plan.planId} of ${doc.name} v${doc.version} requested by ${plan.requestedBy || 'an operator'} (signed by ${keyIdOf(pinned)}, valid until ${new Date(plan.expiresAt).toISOString()})`,
      { name: doc.name, version: doc.version },
    );
    const p = await agent.plan(materialize(doc));
    return { planId: req.planId, ok: true, error: '', ...p };
  } catch (err) {
    return refuse(err instanceof HsError ? `${err.code}: ${err.message}` : errorMessage(err));
  }
}
