// The effective policy of a resource: built-in defaults, then the baseline's spec.policy, then the resource's own keys on top.
import { parseDuration } from '../clock.js';
import type { Mode, Policy, Risk } from './types.js';

/** Policy keys as written in a baseline; every key optional, `flap` partly or wholly. */
export interface PolicyOverrides {
  mode?: Mode;
  risk?: Risk;
  escalateAt?: Risk;
  flap?: { maxRepairs?: number; window?: string };
}

/** `base` with every key `over` sets replaced; a partial `flap` replaces only the part it sets. */
export function applyPolicy(base: Policy, over: PolicyOverrides): Policy {
  const windowMs = over.flap?.window === undefined ? undefined : parseDuration(over.flap.window);
  return {
    mode: over.mode ?? base.mode,
    risk: over.risk ?? base.risk,
    escalateAt: over.escalateAt ?? base.escalateAt,
    flap: {
      maxRepairs: over.flap?.maxRepairs ?? base.flap.maxRepairs,
      windowMs: windowMs ?? base.flap.windowMs,
    },
  };
}
