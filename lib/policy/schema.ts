// Checks a policy against baselines/policy.schema.json (precompiled by ajv) and words each failure for a human, at its key or value.
import type { ErrorObject } from 'ajv';
import type { IssueList } from '../baseline/issues.js';
import { suggestion } from '../baseline/suggest.js';
import { fieldPath, type Path, type YamlDoc } from '../baseline/yaml-doc.js';
import { validate as generatedValidate } from './schema-validator.generated.js';

interface SchemaValidator {
  (data: unknown): boolean;
  errors?: ErrorObject[] | null;
}
const validateSchema = generatedValidate as unknown as SchemaValidator;

/** The parts of a (verbose) ajv error's schema we read. */
interface SchemaNode {
  properties?: Record<string, unknown>;
  errorMessage?: string;
  patternErrorMessage?: string;
  enum?: unknown[];
}

const MATCH_KEYS = new Set(['resource', 'kind', 'baseline', 'change', 'risk', 'riskAtLeast', 'window', 'actor']);
const SIMPLE_ACTIONS = new Set(['repair', 'escalate', 'monitor', 'ignore']);

/** Keywords that only wrap the errors saying what is wrong. */
const WRAPPERS = new Set(['if', 'anyOf', 'oneOf', 'propertyNames']);

/** Adds an issue for every way `doc.value` breaks the schema. */
export function checkPolicySchema(doc: YamlDoc, issues: IssueList): void {
  if (validateSchema(doc.value)) return;
  const errors = (validateSchema.errors ?? []).filter((e) => !WRAPPERS.has(e.keyword));
  // A value of the wrong type also fails its pattern or enum: one message per place, the type one.
  const wrongType = new Set(errors.filter((e) => e.keyword === 'type').map((e) => e.instancePath));
  const seen = new Set<string>();
  for (const e of errors) {
    if (e.keyword !== 'type' && wrongType.has(e.instancePath) && e.propertyName === undefined) continue;
    const which = e.keyword === 'additionalProperties' ? e.params.additionalProperty : e.keyword === 'required' ? e.params.missingProperty : '';
    const id = `${e.instancePath}|${e.propertyName ?? ''}|${String(which)}`;
    if (seen.has(id)) continue;
    seen.add(id);
    report(e, toPath(doc.value, e.instancePath), issues);
  }
}

function report(e: ErrorObject, path: Path, issues: IssueList): void {
  const parent = (e.parentSchema ?? {}) as SchemaNode;
  const data: unknown = e.data;
  const label = labelOf(path);
  const got = `; got ${describe(data, issues.raw(path))}`;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(e.params.additionalProperty);
      const allowed = Object.keys(parent.properties ?? {});
      const where = containerName(path);
      let hint = key.length > 80 ? '' : suggestion(key, allowed);
      if (isRule(path) && MATCH_KEYS.has(key)) hint = `; conditions go under match:, as in match: { ${key}: ... }`;
      if (isAction(path) && SIMPLE_ACTIONS.has(key)) hint = `; write action: ${key}`;
      issues.add('HS_POLICY_UNKNOWN_KEY', `unknown key ${shown(key)} in ${where}${hint}; allowed: ${allowed.join(', ')}`, [...path, key], 'key');
      return;
    }
    case 'required': {
      const key = String(e.params.missingProperty);
      issues.add('HS_POLICY_INVALID', `${containerName(path)} needs "${key}"`, path, 'owner', [...path, key]);
      return;
    }
    case 'type':
      issues.add('HS_POLICY_INVALID', `${parent.errorMessage ?? `${label} must be ${typeWords(e.params.type)}`}${got}`, path, 'value');
      return;
    case 'enum': {
      const allowed = (parent.enum ?? (e.params.allowedValues as unknown[] | undefined) ?? []).map(String);
      let hint = typeof data === 'string' && data.length <= 80 ? suggestion(data, allowed) : '';
      if (isAction(path) && data === 'defer') hint = '; a grace period needs its length: action: { defer: 30m }';
      if (isAction(path) && data === 'ask') hint = '; ask is written action: { ask: opa } and is not supported yet';
      issues.add('HS_POLICY_INVALID', `${label} must be one of ${allowed.join(', ')}${got}${hint}`, path, 'value');
      return;
    }
    case 'const':
      issues.add('HS_POLICY_INVALID', `${parent.errorMessage ?? `${label} must be ${String(e.params.allowedValue)}`}${got}`, path, 'value');
      return;
    case 'pattern': {
      if (e.propertyName !== undefined) {
        issues.add('HS_POLICY_INVALID', `${parent.patternErrorMessage ?? 'invalid key'}; got ${shown(e.propertyName)}`, [...path, e.propertyName], 'key');
        return;
      }
      issues.add('HS_POLICY_INVALID', `${parent.patternErrorMessage ?? parent.errorMessage ?? `${label} must match ${String(e.params.pattern)}`}${got}`, path, 'value');
      return;
    }
    case 'minimum':
    case 'maximum':
      issues.add('HS_POLICY_INVALID', `${label} must be ${String(e.params.comparison)} ${String(e.params.limit)}${got}`, path, 'value');
      return;
    case 'minLength':
      issues.add('HS_POLICY_INVALID', `${label} must not be empty`, path, 'value');
      return;
    case 'maxLength':
      issues.add('HS_POLICY_INVALID', `${label} must be at most ${String(e.params.limit)} characters`, path, 'value');
      return;
    case 'minItems':
      issues.add('HS_POLICY_INVALID', `${label} must list at least one value`, path, 'value');
      return;
    case 'maxItems':
      issues.add('HS_POLICY_INVALID', `${label} may list at most ${String(e.params.limit)} items`, path, 'value');
      return;
    case 'minProperties':
      issues.add('HS_POLICY_INVALID', isAction(path) ? `${label} must name one action` : `${label} must set at least one key`, path, 'value');
      return;
    case 'maxProperties':
      issues.add(
        'HS_POLICY_INVALID',
        isAction(path) ? `${label} names one action only; write a second rule for another` : `${label} may set at most ${String(e.params.limit)} keys`,
        path,
        'value',
      );
      return;
    default:
      issues.add('HS_POLICY_INVALID', `${label} ${e.message ?? 'is invalid'}`, path, 'value');
  }
}

/** A JSON pointer from ajv as a path, with sequence indices as numbers. */
function toPath(root: unknown, pointer: string): Path {
  if (pointer === '') return [];
  const out: (string | number)[] = [];
  let cur: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      const i = Number(seg);
      out.push(i);
      cur = cur[i];
    } else {
      out.push(seg);
      cur = cur !== null && typeof cur === 'object' && Object.hasOwn(cur, seg) ? (cur as Record<string, unknown>)[seg] : undefined;
    }
  }
  return out;
}

function isRule(path: Path): boolean {
  return path.length === 3 && path[0] === 'spec' && path[1] === 'rules' && typeof path[2] === 'number';
}

function isAction(path: Path): boolean {
  return path.length === 4 && path[0] === 'spec' && path[1] === 'rules' && path[3] === 'action';
}

/** How a message names the mapping a key belongs to: `spec.rules[2].match`, `the policy`. */
function containerName(path: Path): string {
  return path.length === 0 ? 'the policy' : fieldPath(path);
}

/** The field's own name for messages: `duration`, or `spec.rules[2]` for a sequence item. */
function labelOf(path: Path): string {
  const last = path[path.length - 1];
  if (last === undefined) return 'the policy';
  if (typeof last === 'string') return last.length > 80 ? shown(last) : last; // a label key can be anything
  const owner = path[path.length - 2];
  return typeof owner === 'string' ? `${owner}[${last}]` : fieldPath(path);
}

function typeWords(type: unknown): string {
  const words: Record<string, string> = {
    string: 'a string',
    integer: 'a whole number',
    number: 'a number',
    boolean: 'true or false',
    object: 'a mapping (key: value lines)',
    array: 'a list (lines starting with "- ")',
    null: 'empty',
  };
  const list = Array.isArray(type) ? type.map(String) : String(type).split(',');
  return list.map((t) => words[t] ?? t).join(' or ');
}

/** Text from the document as a message quotes it: in quotes, and cut short, so a 100 KiB key makes a readable message. */
export function shown(text: string, max = 80): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}...` : text);
}

/** A value as a message shows it, from its source text when there is one. */
function describe(value: unknown, raw: string | undefined): string {
  if (value === null || value === undefined) return 'nothing (an empty value)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return shown(value);
  return raw !== undefined && raw !== '' ? raw : String(value);
}
