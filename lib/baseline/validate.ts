// The rules a schema cannot express: one type key per resource, normalised ids, duplicates, conflicting resources and keys,
// readable `source:` files. Then the validated document becomes a Baseline.
import { HsError } from '../errors.js';
import { parseDuration } from '../clock.js';
import { ANY_RESOURCE_KEY, KIND_KEYS, RESOURCE_TYPES, normaliseName } from './kinds.js';
import { parentsOf, pathProblem, sysctlProblem, unitProblem } from './names.js';
import { applyPolicy, type PolicyOverrides } from './policy.js';
import { commandWords, splitCommand } from './command.js';
import { sourcePathProblem } from './sources.js';
import { suggestion } from './suggest.js';
import { DEFAULT_POLICY, type Baseline, type Policy, type ResourceDecl } from './types.js';
import { quoted, type IssueList } from './issues.js';
import type { Path } from './yaml-doc.js';

/** A resource whose type and name could be read: enough to name it in messages and to compare it with the others. */
export interface ResourceHead {
  index: number;
  type: string;
  /** Normalised: sysctl keys dotted, unit names with their suffix. */
  name: string;
  id: string;
  item: Record<string, unknown>;
  path: Path;
}

/** The document's shape once the schema has passed. */
interface RawBaseline {
  metadata: { name: string; description?: string; labels?: Record<string, string> };
  spec: { selector?: { matchLabels: Record<string, string> }; policy?: PolicyOverrides; resources: Record<string, unknown>[] };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Finds each resource's type key and id; a resource with none, or with two, is an issue. */
export function identifyResources(value: unknown, issues: IssueList): ResourceHead[] {
  const spec = isRecord(value) ? value.spec : undefined;
  const list = isRecord(spec) && Array.isArray(spec.resources) ? (spec.resources as unknown[]) : [];
  const heads: ResourceHead[] = [];
  list.forEach((item, index) => {
    if (!isRecord(item)) return; // the schema says it must be a mapping
    const path: Path = ['spec', 'resources', index];
    const keys = Object.keys(item);
    const types = keys.filter((k) => RESOURCE_TYPES.includes(k));
    const type = types[0];
    if (type === undefined) {
      const unknown = keys.find((k) => !ANY_RESOURCE_KEY.has(k));
      if (unknown !== undefined) {
        issues.add(
          'HS_RESOURCE_UNKNOWN_TYPE',
          `unknown resource type ${quoted(unknown)}${suggestion(unknown, RESOURCE_TYPES)}; a resource starts with one of ${RESOURCE_TYPES.join(', ')}`,
          [...path, unknown],
          'key',
        );
      } else {
        issues.add('HS_BASELINE_INVALID', `this resource has no type key; start it with one of ${RESOURCE_TYPES.join(', ')}, e.g. "- file: /etc/motd"`, path, 'owner');
      }
      return;
    }
    if (types.length > 1) {
      issues.add(
        'HS_BASELINE_INVALID',
        `a resource has exactly one type key, and this one has ${types.map((t) => `"${t}"`).join(' and ')}; split it into one resource each`,
        [...path, types[1] as string],
        'key',
      );
      return;
    }
    const raw = item[type];
    if (typeof raw !== 'string') return; // the schema reports the bad name
    // a name that breaks its rules keeps its spelling in messages; normalising it would only confuse
    const name = nameProblem(type, raw) === undefined ? normaliseName(type, raw) : raw;
    const id = `${type}:${name}`;
    issues.resourceIds[index] = id;
    heads.push({ index, type, name, id, item, path });
  });
  return heads;
}

function nameProblem(type: string, name: string): string | undefined {
  if (type === 'file' || type === 'directory') return pathProblem(name);
  if (type === 'sysctl') return sysctlProblem(name);
  return undefined;
}

/** Checks each resource on its own, then the resources against each other. */
export function checkRules(value: unknown, heads: ResourceHead[], issues: IssueList): void {
  const spec = isRecord(value) ? value.spec : undefined;
  if (isRecord(spec)) checkFlap(spec.policy, ['spec', 'policy'], issues);
  for (const h of heads) {
    RULES[h.type]?.(h, issues);
    checkPolicyKeys(h, issues);
  }
  checkAgainstEachOther(heads, issues);
}

type Rule = (h: ResourceHead, issues: IssueList) => void;

const RULES: Record<string, Rule> = {
  file(h, issues) {
    const it = h.item;
    const absent = it.ensure === 'absent';
    if ('content' in it && 'source' in it) {
      issues.add('HS_BASELINE_CONFLICT', 'content and source are both set; a file takes its content from one of them', [...h.path, 'source'], 'key');
    }
    if (absent) {
      for (const k of ['content', 'source', 'mode', 'owner', 'group', 'validate', 'secret']) {
        if (k in it) issues.add('HS_BASELINE_CONFLICT', `${k} has no meaning for a file that must be absent (ensure: absent); remove one of them`, [...h.path, k], 'key');
      }
    } else if ('validate' in it && !('content' in it) && !('source' in it)) {
      issues.add('HS_BASELINE_INVALID', 'validate checks new content before it is installed, so it needs content or source', [...h.path, 'validate'], 'key');
    }
    if (typeof it.validate === 'string' && it.validate.includes('%s')) {
      const split = splitCommand(it.validate);
      if ('error' in split) issues.add('HS_BASELINE_INVALID', split.error, [...h.path, 'validate'], 'value');
      else if (split.words.length === 0 || split.words[0] === '') issues.add('HS_BASELINE_INVALID', 'validate needs a program to run', [...h.path, 'validate'], 'value');
    } else if (Array.isArray(it.validate) && it.validate[0] === '') {
      issues.add('HS_BASELINE_INVALID', 'validate needs a program to run: its first word is empty', [...h.path, 'validate', 0], 'value');
    }
  },
  directory(h, issues) {
    if (h.item.ensure !== 'absent') return;
    for (const k of ['mode', 'owner', 'group']) {
      if (k in h.item) issues.add('HS_BASELINE_CONFLICT', `${k} has no meaning for a directory that must be absent (ensure: absent); remove one of them`, [...h.path, k], 'key');
    }
  },
  sysctl(h, issues) {
    const v = h.item.value;
    if (typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v)) {
      const raw = issues.raw([...h.path, 'value']) ?? String(v);
      issues.add('HS_BASELINE_INVALID', `value ${raw} is too large to keep exact as a number; quote it: value: "${raw}"`, [...h.path, 'value'], 'value');
    }
  },
  service(h, issues) {
    const it = h.item;
    const problem = unitProblem(h.name);
    if (problem) issues.add('HS_BASELINE_INVALID', problem, [...h.path, 'service'], 'value');
    if (!('ensure' in it) && !('enabled' in it) && !('masked' in it)) {
      issues.add('HS_BASELINE_INVALID', 'a service resource needs at least one of ensure, enabled, masked', [...h.path, 'service'], 'key');
    }
    if (it.masked === true && it.ensure === 'running') {
      issues.add('HS_BASELINE_CONFLICT', 'masked: true cannot hold with ensure: running; a masked unit cannot start', [...h.path, 'masked'], 'key');
    }
    if (it.masked === true && it.enabled === true) {
      issues.add('HS_BASELINE_CONFLICT', 'masked: true cannot hold with enabled: true; a masked unit cannot be enabled', [...h.path, 'masked'], 'key');
    }
  },
};

/** A policy key set on the resource and again in its `policy:` map is ambiguous. */
function checkPolicyKeys(h: ResourceHead, issues: IssueList): void {
  const inner = h.item.policy;
  if (isRecord(inner)) {
    for (const k of KIND_KEYS.get(h.type)?.policy ?? []) {
      if (k !== 'policy' && k in h.item && k in inner) {
        issues.add('HS_BASELINE_CONFLICT', `${k} is set both on the resource and in its policy; keep one`, [...h.path, k], 'key');
      }
    }
    checkFlap(inner, [...h.path, 'policy'], issues);
  }
  checkFlap(h.item, h.path, issues);
}

function checkFlap(owner: unknown, path: Path, issues: IssueList): void {
  const flap = isRecord(owner) ? owner.flap : undefined;
  if (!isRecord(flap) || typeof flap.window !== 'string') return;
  if (parseDuration(flap.window) === 0) issues.add('HS_BASELINE_INVALID', 'a flap window must be longer than 0, such as 10m', [...path, 'flap', 'window'], 'value');
}

/** Duplicate ids, one path as both file and directory, and paths inside a managed file or a directory that must be absent. */
function checkAgainstEachOther(heads: ResourceHead[], issues: IssueList): void {
  const lineOf = (h: ResourceHead): number => issues.keyPosition([...h.path, h.type]).line;
  const byId = new Map<string, ResourceHead>();
  const byPath = new Map<string, ResourceHead>();
  const onDisk: ResourceHead[] = [];
  for (const h of heads) {
    const first = byId.get(h.id);
    if (first) {
      issues.add('HS_BASELINE_DUPLICATE', `${h.id} is declared twice; the first is spec.resources[${first.index}] at line ${lineOf(first)}`, [...h.path, h.type], 'key');
      continue;
    }
    byId.set(h.id, h);
    if ((h.type !== 'file' && h.type !== 'directory') || pathProblem(h.name)) continue;
    onDisk.push(h);
    const other = byPath.get(h.name);
    if (other) {
      issues.add('HS_BASELINE_CONFLICT', `${h.name} is declared as a ${h.type} and, at line ${lineOf(other)}, as a ${other.type}`, [...h.path, h.type], 'key');
    } else {
      byPath.set(h.name, h);
    }
  }
  for (const h of onDisk) {
    for (const parent of parentsOf(h.name)) {
      const p = byPath.get(parent);
      if (!p) continue;
      if (p.type === 'file') {
        issues.add('HS_BASELINE_CONFLICT', `${h.name} is inside ${parent}, which is declared as a file at line ${lineOf(p)}`, [...h.path, h.type], 'key');
        break;
      }
      if (p.item.ensure === 'absent') {
        issues.add('HS_BASELINE_CONFLICT', `${h.name} is inside ${parent}, which is declared absent at line ${lineOf(p)}`, [...h.path, h.type], 'key');
        break;
      }
    }
  }
}

export type SourceReader = (relPath: string) => Uint8Array;

/**
 * Reads every `source:` once; what cannot be read is an issue at its value. Keys are the paths as written. A path that
 * would leave the baseline's folder is never handed to the reader (the schema reports it).
 */
export function readSources(heads: ResourceHead[], issues: IssueList, readSource: SourceReader | undefined): Map<string, Buffer> {
  const read = new Map<string, Buffer | string>();
  for (const h of heads) {
    const rel = h.item.source;
    if (h.type !== 'file' || typeof rel !== 'string' || sourcePathProblem(rel) !== undefined || 'content' in h.item || h.item.ensure === 'absent') continue;
    let got = read.get(rel);
    if (got === undefined) {
      if (!readSource) {
        got = `source "${rel}" cannot be read: this baseline came as text, without the folder its source files are in`;
      } else {
        try {
          const bytes: unknown = readSource(rel);
          // A reader that looked the path up in a plain object may hand back an inherited property (`toString`).
          got = bytes instanceof Uint8Array ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : `source "${rel}" cannot be read: it was not sent with the baseline`;
        } catch (err) {
          got = err instanceof HsError && err.code === 'HS_BASELINE_SOURCE' ? err.message : `source "${rel}" cannot be read: ${err instanceof Error ? err.message : String(err)}`;
        }
      }
      read.set(rel, got);
    }
    if (typeof got === 'string') issues.add('HS_BASELINE_SOURCE', got, [...h.path, 'source'], 'value');
  }
  const out = new Map<string, Buffer>();
  for (const [rel, got] of read) if (typeof got !== 'string') out.set(rel, got);
  return out;
}

/**
 * A copy of `s` that shares no memory with the document it was read from. The parser's strings are slices of the whole
 * text (and ids are concatenations of slices), and V8 keeps a slice's parent alive: 10,000 paths would keep a 2.7 MB
 * baseline text in the agent's heap for as long as their resources are managed. V8 shares no memory below 13 characters.
 */
function own(s: string): string {
  return s.length < 13 ? s : Buffer.from(s, 'utf8').toString('utf8');
}

function ownValue(v: unknown): unknown {
  if (typeof v === 'string') return own(v);
  if (Array.isArray(v)) return v.map(ownValue);
  return v;
}

/** The Baseline of a document that passed every check. */
export function buildBaseline(value: unknown, heads: ResourceHead[], sources: Map<string, Buffer>, issues: IssueList, origin: Baseline['origin']): Baseline {
  const raw = value as RawBaseline;
  const base = applyPolicy(DEFAULT_POLICY, raw.spec.policy ?? {});
  // Resources without policy keys of their own share the baseline's policy; frozen, so no consumer can change it for all.
  const policy: Policy = Object.freeze({ ...base, flap: Object.freeze(base.flap) });
  const resources = heads.map((h): ResourceDecl => {
    const pos = issues.keyPosition([...h.path, h.type]);
    const overrides = overridesOf(h);
    const id = own(h.id);
    return {
      id,
      type: h.type,
      name: own(h.name),
      index: h.index,
      policy: overrides ? applyPolicy(policy, overrides) : policy,
      fields: fieldsOf(h, sources),
      location: { file: issues.file, line: pos.line, column: pos.column, field: `spec.resources[${h.index}]`, resource: id },
    };
  });
  const baseline: Baseline = { apiVersion: 'homeostat/v1', name: raw.metadata.name, policy, resources, origin };
  if (raw.metadata.description !== undefined) baseline.description = raw.metadata.description;
  if (raw.metadata.labels !== undefined) baseline.labels = { ...raw.metadata.labels };
  if (raw.spec.selector !== undefined) baseline.selector = { matchLabels: { ...raw.spec.selector.matchLabels } };
  return baseline;
}

/** The resource's own policy keys, from its `policy:` map and the keys set directly on it; undefined when it has none. */
function overridesOf(h: ResourceHead): PolicyOverrides | undefined {
  let over: Record<string, unknown> | undefined = isRecord(h.item.policy) ? { ...h.item.policy } : undefined;
  for (const k of KIND_KEYS.get(h.type)?.policy ?? []) {
    if (k !== 'policy' && k in h.item) (over ??= {})[k] = h.item[k];
  }
  return over as PolicyOverrides | undefined;
}

/** The type's own keys, with the defaults the format documents filled in and `source:` bytes in `content`. */
function fieldsOf(h: ResourceHead, sources: Map<string, Buffer>): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const k of KIND_KEYS.get(h.type)?.own ?? []) if (k in h.item) fields[k] = ownValue(h.item[k]);
  switch (h.type) {
    case 'file': {
      fields.ensure ??= 'present';
      if (typeof fields.source === 'string') {
        const bytes = sources.get(fields.source);
        if (bytes) fields.content = bytes;
      }
      // Both forms become the words the agent runs, without a shell.
      const words = commandWords(fields.validate);
      if (words) fields.validate = words;
      break;
    }
    case 'directory':
      fields.ensure ??= 'present';
      break;
    case 'sysctl':
      fields.value = String(fields.value);
      fields.persist ??= false;
      break;
  }
  return fields;
}
