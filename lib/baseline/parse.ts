// Reading baselines: text or files in, a validated Baseline out, or one BaselineInvalidError listing every problem found.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { BaselineInvalidError, HsError } from '../errors.js';
import { IssueList } from './issues.js';
import { checkSchema } from './schema.js';
import { buildBaseline, checkRules, identifyResources, readSources, type ResourceHead, type SourceReader } from './validate.js';
import { readSourceBeneath, sourcesFromMap } from './sources.js';
import { inResource, readYaml, type ParsedParts, type Pos, type YamlDoc } from './yaml-doc.js';
import type { Baseline } from './types.js';

export interface ParseOptions {
  /** Names the text in every message: a path, or e.g. `cache:web@3`. */
  file: string;
  /**
   * Bytes of a `source:` path as written in the baseline; throws if it cannot. Without it a `source:` is an error. Only
   * called with paths that stay inside the baseline's folder (see sources.ts); a map of files must be read by own keys.
   */
  readSource?: (relPath: string) => Uint8Array;
  /**
   * The `source:` files sent along with the text (a push, a signed document, the agent's cache), by path: bytes or
   * base64. Read by own keys only (sources.ts sourcesFromMap). Ignored when `readSource` is given.
   */
  sources?: Readonly<Record<string, Uint8Array | string>>;
}

/** Validates a baseline's text. Throws BaselineInvalidError listing every problem, each with file:line:column and field. */
export function parseBaseline(text: string, opts: ParseOptions): Baseline {
  return parseLocated(text, opts).baseline;
}

/** Reads a baseline file; `source:` paths resolve inside its folder, never through a symlink. */
export function loadBaselineFile(path: string): Baseline {
  return loadLocated(path).baseline;
}

/**
 * Reads several baseline files, all of them even when some are invalid, and throws one BaselineInvalidError with the
 * problems of every file. Two files may not share a metadata.name.
 */
export function loadBaselineFiles(paths: string[]): Baseline[] {
  const baselines: Baseline[] = [];
  const issues: HsError[] = [];
  const failed: string[] = [];
  const byName = new Map<string, string>();
  for (const path of paths) {
    try {
      const { baseline, namePos } = loadLocated(path);
      const first = byName.get(baseline.name);
      if (first !== undefined) {
        failed.push(path);
        issues.push(
          new HsError('HS_BASELINE_DUPLICATE', `baseline name "${baseline.name}" is already used by ${first}; each baseline needs its own name`, {
            location: { file: path, line: namePos.line, column: namePos.column, field: 'metadata.name' },
          }),
        );
        continue;
      }
      byName.set(baseline.name, path);
      baselines.push(baseline);
    } catch (err) {
      if (!(err instanceof BaselineInvalidError)) throw err;
      failed.push(path);
      issues.push(...err.issues);
    }
  }
  if (issues.length > 0) throw new BaselineInvalidError(failed.join(', '), issues);
  return baselines;
}

function loadLocated(path: string): { baseline: Baseline; namePos: Pos } {
  let text: string;
  try {
    text = readBaselineText(path);
  } catch (err) {
    throw new BaselineInvalidError(path, [new HsError('HS_BASELINE_SOURCE', `cannot read baseline ${path}: ${reason(err)}`, { cause: err })]);
  }
  const dir = dirname(resolve(path));
  const readSource: SourceReader = (rel) => readSourceBeneath(dir, rel);
  return parseLocated(text, { file: path, readSource });
}

/**
 * Bounded before it is read: a baseline is configuration, and one this large is a mistake or an attack. (The controller
 * takes pushes of at most 16 MiB; files given to an agent directly may carry more inline content.)
 */
export const MAX_BASELINE_BYTES = 64 * 1024 * 1024;

function readBaselineText(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error('it is not a regular file');
    if (st.size > MAX_BASELINE_BYTES) throw new Error(`it is ${st.size} bytes; a baseline may hold at most ${MAX_BASELINE_BYTES}`);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

function parseLocated(text: string, opts: ParseOptions): { baseline: Baseline; namePos: Pos } {
  if (text.length > MAX_BASELINE_BYTES) {
    const issue = new HsError('HS_BASELINE_PARSE', `the baseline is ${text.length} characters; a baseline may hold at most ${MAX_BASELINE_BYTES}`, {
      location: { file: opts.file, line: 1, column: 1 },
    });
    throw new BaselineInvalidError(opts.file, [issue]);
  }
  const doc = readYaml(text, opts.file);
  if (!doc.readable) throw new BaselineInvalidError(opts.file, [...doc.issues, ...partsProblems(doc.parts, opts.file)]);
  const issues = new IssueList(opts.file, doc);
  const heads = checkDocument(doc, issues);
  const sent = opts.sources;
  const reader = opts.readSource ?? (sent ? sourcesFromMap(sent, (rel) => `source file ${rel} is not among the files sent with ${opts.file}`) : undefined);
  const sources = readSources(heads, issues, reader);
  if (issues.items.length > 0) throw new BaselineInvalidError(opts.file, issues.sorted());
  const baseline = buildBaseline(doc.value, heads, sources, issues, origin(text, opts.file, sources));
  return { baseline, namePos: issues.keyPosition(['metadata', 'name']) };
}

/** The schema and the rules, over the whole document or, for a text with syntax errors, over the parts that parsed. */
function checkDocument(doc: YamlDoc, issues: IssueList): ResourceHead[] {
  const heads = identifyResources(doc.value, issues);
  for (const d of doc.hasDuplicates ? doc.detail().duplicates : []) {
    issues.addAt('HS_BASELINE_DUPLICATE', `key "${String(d.path[d.path.length - 1])}" is written twice in the same mapping; keep one`, d.path, d.key);
  }
  checkSchema(doc, issues);
  checkRules(doc.value, heads, issues);
  return heads;
}

/**
 * A text with syntax errors is invalid as a whole, but each resource no error touched gets the same checks, so that one
 * round of fixes can cover its problems too; they follow the syntax errors, in line order. A resource an error cut short
 * is left out: it would draw misleading messages ("needs content" for content the error hid). Sources are not read.
 */
function partsProblems(parts: ParsedParts | undefined, file: string): HsError[] {
  if (!parts || parts.resources.size === 0) return [];
  const issues = new IssueList(file, parts.doc, (field) => inResource(field, parts.resources));
  checkDocument(parts.doc, issues);
  return issues.sorted();
}

/** sha256 over the text, then each source's path and bytes in path order: a change to any of them is a new version. */
function origin(text: string, file: string, sources: Map<string, Buffer>): Baseline['origin'] {
  const hash = createHash('sha256').update(text);
  const encoded: [string, string][] = [];
  for (const rel of [...sources.keys()].sort()) {
    const bytes = sources.get(rel) as Buffer;
    hash.update(`\0${rel}\0${bytes.length}\0`).update(bytes);
    encoded.push([rel, bytes.toString('base64')]);
  }
  // fromEntries defines each key as its own: a source named `__proto__` is an entry like any other, not a prototype.
  return { file, sha256: hash.digest('hex'), text, sources: Object.fromEntries(encoded) };
}

function reason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return err instanceof Error ? err.message : String(err);
}
