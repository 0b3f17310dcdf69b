// The baseline format, shared by agent and controller: parse and validate YAML baselines into the Baseline type.
export { parseBaseline, loadBaselineFile, loadBaselineFiles, type ParseOptions } from './parse.js';
export { applyPolicy, type PolicyOverrides } from './policy.js';
export { RESOURCE_TYPES } from './kinds.js';
export * from './types.js';
