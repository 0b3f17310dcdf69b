// The events an agent records in its audit log: the agent's store, its `audit --event` and homeostatctl's event filters
// all take this one list.

/** Every event the agent records; `audit --event` and the controller's filters accept exactly these. */
export const AUDIT_EVENTS = [
  'drift_detected',
  'deferred',
  'drift_predicted',
  'repaired',
  'repair_failed',
  'escalated',
  'approved',
  'rejected',
  'suppressed_flapping',
  'exception_expired',
  'escalation_resolved',
  'baseline_activated',
  'baseline_rejected',
  'baseline_removed',
  'baseline_forgotten',
  'policy_activated',
  'policy_rejected',
  'policy_removed',
  'plan_requested',
  'plan_refused',
  'enforcement_paused',
  'agent_started',
  'agent_stopped',
  'repair_interrupted',
  'records_lost',
  'store_recovered',
] as const;
