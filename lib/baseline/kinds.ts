// What the schema says about each resource type: the key that names it, its own keys, and which of its keys override policy.
// Read from baselines/baseline.schema.json so a new type or key is declared in one place.
import schema from '../../baselines/baseline.schema.json' with { type: 'json' };
import { normaliseSysctl, normaliseUnit } from './names.js';

interface PropertySchema {
  $ref?: string;
  [keyword: string]: unknown;
}
interface ObjectSchema {
  properties?: Record<string, PropertySchema>;
  [keyword: string]: unknown;
}

const definitions: Record<string, ObjectSchema> = schema.definitions;

/** Type keys in the order the schema lists them: file, directory, sysctl, service. */
export const RESOURCE_TYPES: readonly string[] = schema.definitions.resource.anyOf.flatMap((branch) => branch.required);

const POLICY_REFS = new Set(['#/definitions/policy', '#/definitions/policyMode', '#/definitions/risk', '#/definitions/flap']);

export interface KindKeys {
  /** The type's own keys: what ends up in ResourceDecl.fields. */
  own: readonly string[];
  /** Keys that override the baseline's policy (`policy`, `risk`, `escalateAt`, `flap`, and `mode` where it is not permissions). */
  policy: readonly string[];
}

export const KIND_KEYS: ReadonlyMap<string, KindKeys> = new Map(
  RESOURCE_TYPES.map((type) => {
    const props = definitions[`${type}Resource`]?.properties ?? {};
    const own: string[] = [];
    const policy: string[] = [];
    for (const [key, prop] of Object.entries(props)) {
      if (key === type) continue;
      (prop.$ref !== undefined && POLICY_REFS.has(prop.$ref) ? policy : own).push(key);
    }
    return [type, { own, policy }];
  }),
);

/** Every key some resource type allows, to tell a misspelt type key from a forgotten one. */
export const ANY_RESOURCE_KEY: ReadonlySet<string> = new Set([...KIND_KEYS.values()].flatMap((k) => [...k.own, ...k.policy]));

/** The name as it appears in the resource id: sysctl keys in dotted form, unit names with their suffix. */
export function normaliseName(type: string, name: string): string {
  if (type === 'sysctl') return normaliseSysctl(name);
  if (type === 'service') return normaliseUnit(name);
  return name;
}
