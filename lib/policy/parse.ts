// Reading policies: text or files in, a validated PolicyDocument out, or one PolicyInvalidError listing every problem found.
import { createHash } from 'node:crypto';
import { closeSync, constants as fsc, fstatSync, openSync, readSync } from 'node:fs';
import { HsError } from '../errors.js';
import { IssueList } from '../baseline/issues.js';
import { checkAndBuild } from './build.js';
import { PolicyInvalidError } from './errors.js';
import { checkPolicySchema } from './schema.js';
import { readPolicyYaml } from './yaml.js';
import type { PolicyDocument } from './types.js';

/** A policy is a page of rules; a larger text is refused before it is parsed. */
export const MAX_POLICY_BYTES = 1024 * 1024;

export interface PolicyParseOptions {
  /** Names the text in every message: a path, or e.g. `cache:fleet-governance@3`. */
  file: string;
}

/** Validates a policy's text. Throws PolicyInvalidError listing every problem, each with file:line:column and field. */
export function parsePolicy(text: string, opts: PolicyParseOptions): PolicyDocument {
  const file = opts.file;
  if (Buffer.byteLength(text, 'utf8') > MAX_POLICY_BYTES) {
    throw new PolicyInvalidError(file, [
      new HsError('HS_POLICY_INVALID', `the policy is larger than ${MAX_POLICY_BYTES / 1024} KiB; split it into several documents`, {
        location: { file, line: 1, column: 1 },
      }),
    ]);
  }
  const doc = readPolicyYaml(text, file);
  if (!doc.readable) throw new PolicyInvalidError(file, doc.issues);
  const issues = new IssueList(file, doc);
  for (const d of doc.hasDuplicates ? doc.detail().duplicates : []) {
    issues.addAt('HS_POLICY_DUPLICATE', `key "${String(d.path[d.path.length - 1])}" is written twice in the same mapping; keep one`, d.path, d.key);
  }
  checkPolicySchema(doc, issues);
  const sha256 = createHash('sha256').update(text).digest('hex');
  const policy = checkAndBuild(doc.value, issues, { file, sha256, text });
  if (!policy || issues.items.length > 0) throw new PolicyInvalidError(file, issues.sorted());
  return policy;
}

/** Reads a policy file (at most MAX_POLICY_BYTES, never through a symlink). */
export function loadPolicyFile(path: string): PolicyDocument {
  return parsePolicy(readBounded(path), { file: path });
}

/**
 * Reads several policy files, all of them even when some are invalid, and throws one PolicyInvalidError with the problems of
 * every file. Two files may not share a metadata.name.
 */
export function loadPolicyFiles(paths: string[]): PolicyDocument[] {
  const out: PolicyDocument[] = [];
  const issues: HsError[] = [];
  const failed: string[] = [];
  const byName = new Map<string, string>();
  for (const path of paths) {
    try {
      const p = loadPolicyFile(path);
      const first = byName.get(p.name);
      if (first !== undefined) {
        failed.push(path);
        issues.push(
          new HsError('HS_POLICY_DUPLICATE', `policy name "${p.name}" is already used by ${first}; each policy needs its own name`, {
            location: { file: path, line: 1, column: 1, field: 'metadata.name' },
          }),
        );
        continue;
      }
      byName.set(p.name, path);
      out.push(p);
    } catch (err) {
      if (!(err instanceof PolicyInvalidError)) throw err;
      failed.push(path);
      issues.push(...err.issues);
    }
  }
  if (issues.length > 0) throw new PolicyInvalidError(failed.join(', '), issues);
  return out;
}

function readBounded(path: string): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    const size = fstatSync(fd).size;
    if (size > MAX_POLICY_BYTES) {
      throw new PolicyInvalidError(path, [
        new HsError('HS_POLICY_INVALID', `the policy is larger than ${MAX_POLICY_BYTES / 1024} KiB; split it into several documents`, {
          location: { file: path, line: 1, column: 1 },
        }),
      ]);
    }
    const buf = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const n = readSync(fd, buf, off, size - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.toString('utf8', 0, off);
  } catch (err) {
    if (err instanceof PolicyInvalidError) throw err;
    throw new PolicyInvalidError(path, [
      new HsError('HS_POLICY_INVALID', `cannot read policy ${path}: ${reason(err)}`, { cause: err, location: { file: path, line: 1, column: 1 } }),
    ]);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function reason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  if (code === 'ELOOP') return 'it is a symlink, which is not followed';
  return err instanceof Error ? err.message : String(err);
}
