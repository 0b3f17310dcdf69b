// `homeostat-agent validate` for policy documents (kind: Policy): the same located errors the agent and the controller
// give, so a policy file can be checked before it is given to `run --policy` or pushed.
import { readFileSync } from 'node:fs';
import { loadPolicyFile, PolicyInvalidError } from '../../lib/policy/index.js';

/** Whether `file` holds a policy rather than a baseline: a top-level `kind: Policy` in its first 64 KiB. */
export function isPolicyFile(file: string): boolean {
  try {
    const head = readFileSync(file, { encoding: 'utf8', flag: 'r' }).slice(0, 65_536);
    return /^kind:\s*["']?Policy["']?\s*(#.*)?$/m.test(head);
  } catch {
    return false; // the baseline reader reports what is wrong with the file
  }
}

export interface PolicyValidation {
  file: string;
  valid: boolean;
  kind: 'Policy';
  name?: string;
  rules?: number;
  windows?: number;
  errors?: unknown[];
  text?: string;
}

/** Validates one policy file; the located problems go to stderr unless `json`. Other errors are thrown. */
export function validatePolicyFile(file: string, json: boolean): PolicyValidation {
  try {
    const p = loadPolicyFile(file);
    return { file, valid: true, kind: 'Policy', name: p.name, rules: p.rules.length, windows: p.windows.size, text: `${file}: valid policy (${p.name}, ${p.rules.length} rules, ${p.windows.size} windows)` };
  } catch (err) {
    if (!(err instanceof PolicyInvalidError)) throw err;
    if (!json) process.stderr.write(`${err.describe()}\n`);
    return { file, valid: false, kind: 'Policy', errors: err.issues.map((i) => i.toJSON()) };
  }
}
