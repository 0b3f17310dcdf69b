// Checks a baseline against baselines/baseline.schema.json (precompiled by ajv) and words each failure for a human, at its key or value.
import type { ErrorObject } from 'ajv';
import schema from '../../baselines/baseline.schema.json' with { type: 'json' };
import { validate as generatedValidate } from './schema-validator.generated.js';
import { RESOURCE_TYPES } from './kinds.js';
import { pathProblem, sysctlProblem } from './names.js';
import { sourcePathProblem } from './sources.js';
import { suggestion } from './suggest.js';
import { fieldPath, valueAt, type Path, type YamlDoc } from './yaml-doc.js';
import { clip, quoted, type IssueList } from './issues.js';

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
  pattern?: string;
  enum?: unknown[];
  const?: unknown;
}

// Patterns whose failures get a message made for the value at hand rather than the schema's general one.
const ABS_PATH_PATTERN = schema.definitions.absPath.pattern;
const SYSCTL_KEY_PATTERN = schema.definitions.sysctlResource.properties.sysctl.pattern;
const PERMISSIONS_PATTERN = schema.definitions.permissions.pattern;
const SOURCE_PATTERN = schema.definitions.fileResource.properties.source.pattern;
const POLICY_WORDS = new Set(['mode', 'risk', 'escalateAt', 'flap']);

/** Adds an issue for every way `doc.value` breaks the schema. */
export function checkSchema(doc: YamlDoc, issues: IssueList): void {
  if (validateSchema(doc.value)) return;
  const seen = new Set<string>();
  for (const e of validateSchema.errors ?? []) {
    // `anyOf` and `propertyNames` only wrap the errors that say what is wrong; the one-type-key rule is worded in validate.ts.
    if (e.keyword === 'anyOf' || e.keyword === 'propertyNames') continue;
    // What each item did not match inside `contains` is noise: the `contains` error itself says what is missing.
    if (e.schemaPath.includes('/contains/')) continue;
    const path = toPath(doc.value, e.instancePath);
    if (e.keyword === 'required' && isResourceItem(path) && RESOURCE_TYPES.includes(String(e.params.missingProperty))) continue;
    if (e.keyword === 'additionalProperties' && isResourceItem(path) && RESOURCE_TYPES.includes(String(e.params.additionalProperty))) continue;
    const which = e.keyword === 'additionalProperties' ? e.params.additionalProperty : e.keyword === 'required' ? e.params.missingProperty : '';
    const id = `${e.instancePath}|${e.propertyName ?? ''}|${String(which)}`;
    if (seen.has(id)) continue; // one message per place: a value of the wrong type also fails its pattern
    seen.add(id);
    report(e, path, doc, issues);
  }
}

function report(e: ErrorObject, path: Path, doc: YamlDoc, issues: IssueList): void {
  const parent = (e.parentSchema ?? {}) as SchemaNode;
  const data: unknown = e.data;
  const label = labelOf(path);
  const got = `; got ${describe(data, issues.raw(path))}`;
  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String(e.params.additionalProperty);
      const allowed = Object.keys(parent.properties ?? {}).filter((k) => !RESOURCE_TYPES.includes(k));
      const hint = suggestion(key, allowed);
      const where = containerName(path, doc.value);
      const policyHint = path.length === 1 && path[0] === 'spec' && POLICY_WORDS.has(key) ? '; policy keys go under spec.policy' : '';
      issues.add(
        'HS_BASELINE_UNKNOWN_KEY',
        `unknown key ${quoted(key)} in ${where}${hint}${policyHint}; allowed: ${allowed.join(', ')}`,
        [...path, key],
        'key',
      );
      return;
    }
    case 'required': {
      const key = String(e.params.missingProperty);
      issues.add('HS_BASELINE_INVALID', `${containerName(path, doc.value)} needs "${key}"`, path, 'owner', [...path, key]);
      return;
    }
    case 'type':
      if (parent.pattern === PERMISSIONS_PATTERN && typeof data === 'number') {
        const raw = issues.raw(path) ?? String(data);
        const quoted = /^[0-7]{3,4}$/.test(raw) ? raw : '0644';
        issues.add(
          'HS_BASELINE_INVALID',
          `${label} must be a quoted octal string such as "0644": the unquoted ${raw} is read as the number ${data}; write ${label}: "${quoted}"`,
          path,
          'value',
        );
        return;
      }
      issues.add('HS_BASELINE_INVALID', `${parent.errorMessage ?? `${label} must be ${typeWords(e.params.type)}`}${got}`, path, 'value');
      return;
    case 'enum': {
      const allowed = (parent.enum ?? (e.params.allowedValues as unknown[] | undefined) ?? []).map(String);
      const hint = typeof data === 'string' ? suggestion(data, allowed) : '';
      issues.add('HS_BASELINE_INVALID', `${label} must be one of ${allowed.join(', ')}${got}${hint}`, path, 'value');
      return;
    }
    case 'const':
      issues.add('HS_BASELINE_INVALID', `${parent.errorMessage ?? `${label} must be ${String(e.params.allowedValue)}`}${got}`, path, 'value');
      return;
    case 'pattern': {
      if (e.propertyName !== undefined) {
        issues.add('HS_BASELINE_INVALID', `${parent.patternErrorMessage ?? 'invalid key'}; got ${quoted(e.propertyName)}`, [...path, e.propertyName], 'key');
        return;
      }
      const text = String(data);
      let message: string | undefined;
      if (parent.pattern === ABS_PATH_PATTERN) message = pathProblem(text);
      else if (parent.pattern === SYSCTL_KEY_PATTERN) message = sysctlProblem(text);
      else if (parent.pattern === SOURCE_PATTERN) message = sourcePathProblem(text);
      else if (parent.pattern === PERMISSIONS_PATTERN && (text === 'enforce' || text === 'monitor')) {
        message = `${label} on a file or directory is its permissions, such as "0644"; for the policy mode write policy: { mode: ${text} }`;
      }
      issues.add('HS_BASELINE_INVALID', message ?? `${parent.patternErrorMessage ?? parent.errorMessage ?? `${label} must match ${String(e.params.pattern)}`}${got}`, path, 'value');
      return;
    }
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      issues.add('HS_BASELINE_INVALID', `${label} must be ${String(e.params.comparison)} ${String(e.params.limit)}${got}`, path, 'value');
      return;
    case 'minLength':
      issues.add('HS_BASELINE_INVALID', `${label} must not be empty`, path, 'value');
      return;
    case 'maxLength':
      issues.add('HS_BASELINE_INVALID', `${label} must be at most ${String(e.params.limit)} characters${got}`, path, 'value');
      return;
    case 'minProperties':
      issues.add('HS_BASELINE_INVALID', `${label} must set at least one key`, path, 'value');
      return;
    case 'minItems':
      issues.add('HS_BASELINE_INVALID', `${label} must list at least ${String(e.params.limit)}`, path, 'value');
      return;
    case 'contains':
      issues.add('HS_BASELINE_INVALID', parent.patternErrorMessage ?? `${label} ${e.message ?? 'is invalid'}`, path, 'value');
      return;
    default:
      issues.add('HS_BASELINE_INVALID', `${label} ${e.message ?? 'is invalid'}`, path, 'value');
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
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[seg] : undefined;
    }
  }
  return out;
}

function isResourceItem(path: Path): boolean {
  return path.length === 3 && path[0] === 'spec' && path[1] === 'resources' && typeof path[2] === 'number';
}

/** How a message names the mapping a key belongs to: `a file resource`, `spec.policy`, `the baseline`. */
function containerName(path: Path, root: unknown): string {
  if (path.length === 0) return 'the baseline';
  if (isResourceItem(path)) {
    const item = valueAt(root, path);
    const type = item !== null && typeof item === 'object' ? RESOURCE_TYPES.find((t) => t in item) : undefined;
    return type ? `a ${type} resource` : 'a resource';
  }
  return fieldPath(path);
}

/** The field's own name for messages: `mode`, `maxRepairs`, or `spec.resources[2]` for a sequence item. */
function labelOf(path: Path): string {
  const last = path[path.length - 1];
  if (last === undefined) return 'the baseline';
  return typeof last === 'string' ? last : fieldPath(path);
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

/** A value as a message shows it, from its source text when there is one (`0644`, not 644). */
function describe(value: unknown, raw: string | undefined): string {
  if (value === null) return 'nothing (an empty value)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return quoted(value);
  return clip(raw !== undefined && raw !== '' ? raw : String(value), 80);
}
