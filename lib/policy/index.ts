// Policy as code, shared by agent and controller: parse and validate policy documents, decide each drift by their rules
// and the baseline's policy, maintenance windows, repair counters, and the patterns in a resource's drift history.
export { parsePolicy, loadPolicyFile, loadPolicyFiles, MAX_POLICY_BYTES, type PolicyParseOptions } from './parse.js';
export { PolicyInvalidError } from './errors.js';
export {
  decide,
  PolicySet,
  ruleKey,
  ruleLabel,
  ruleMatches,
  type ActivePolicy,
  type DecisionCause,
  type Drift,
  type PolicyAction,
  type PolicyDecision,
  type ResourceState,
  type RuleRef,
} from './decide.js';
export { RepairLedger } from './ledger.js';
export { MaintenanceWindow, type WindowSpec } from './windows.js';
export { findFight, predictDrift, type DriftEvent, type Fight, type Prediction } from './patterns.js';
export { actorLabel, actorIdentity, ACTOR_SOURCES, UNKNOWN_ACTOR, type Actor, type ActorSource } from './actor.js';
export * from './types.js';
export { describeRule, explanationLines, type Explanation } from './explain.js';
