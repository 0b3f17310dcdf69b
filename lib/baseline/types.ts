// The parsed, validated form of a baseline: what the agent enforces and the controller stores.
import type { SourceLocation } from '../errors.js';

export const RISKS = ['low', 'medium', 'high', 'critical'] as const;
export type Risk = (typeof RISKS)[number];
export type Mode = 'enforce' | 'monitor';

export interface FlapPolicy {
  maxRepairs: number;
  windowMs: number;
}

/** The effective policy of one resource: baseline defaults with the resource's own keys on top. */
export interface Policy {
  mode: Mode;
  risk: Risk;
  escalateAt: Risk;
  flap: FlapPolicy;
}

export const DEFAULT_POLICY: Policy = {
  mode: 'enforce',
  risk: 'low',
  escalateAt: 'high',
  flap: { maxRepairs: 5, windowMs: 10 * 60_000 },
};

/** Keys every resource may carry whatever its type (policy overrides). */
export const POLICY_KEYS = ['mode', 'risk', 'escalateAt', 'flap'] as const;

/**
 * One declared resource. `type` is the key that named it (`file`, `directory`, `sysctl`, `service`, ...), `name` its value.
 * `fields` holds the type's own keys, already checked by the schema; each agent resource kind reads them into its own typed spec.
 * A file resource's `source:` has been read at load time: `fields.content` then holds the bytes (a Buffer) and `fields.source` the path.
 */
export interface ResourceDecl {
  id: string; // `${type}:${name}`
  type: string;
  name: string;
  index: number; // position in spec.resources
  policy: Policy;
  fields: Record<string, unknown>;
  location: SourceLocation;
}

export interface Baseline {
  apiVersion: 'homeostat/v1';
  name: string;
  description?: string;
  /** metadata.labels: free-form tags for people and tools; selection uses spec.selector. */
  labels?: Record<string, string>;
  selector?: { matchLabels: Record<string, string> };
  policy: Policy;
  resources: ResourceDecl[];
  /** Where it came from and its exact text; sha256 covers the text and every source file, so a change to either is a new version. */
  origin: { file: string; sha256: string; text: string; sources: Record<string, string /* base64 */> };
}
