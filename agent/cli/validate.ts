// `homeostat-agent validate FILE...`: checks baselines (and policies, validate-policy.ts) and reports every problem with its location.
import { BaselineInvalidError } from '../../lib/errors.js';
import { loadBaselineFile } from '../../lib/baseline/index.js';
import { EXIT, printJson, println, reportError } from './output.js';
import { isPolicyFile, validatePolicyFile } from './validate-policy.js';

export function validateCommand(files: string[], opts: { json?: boolean }): number {
  const results: { file: string; valid: boolean; name?: string; resources?: number; errors?: unknown[]; text?: string }[] = [];
  for (const file of files) {
    try {
      if (isPolicyFile(file)) { results.push(validatePolicyFile(file, opts.json ?? false)); continue; } // prettier-ignore
      const b = loadBaselineFile(file);
      results.push({ file, valid: true, name: b.name, resources: b.resources.length });
    } catch (err) {
      if (!(err instanceof BaselineInvalidError)) return reportError(err, opts.json ?? false);
      results.push({ file, valid: false, errors: err.issues.map((i) => i.toJSON()) });
      if (!opts.json) process.stderr.write(`${err.describe()}\n`);
    }
  }
  const valid = results.every((r) => r.valid);
  if (opts.json) printJson({ valid, files: results.map(({ text: _text, ...r }) => r) });
  else for (const r of results) if (r.valid) println(r.text ?? `${r.file}: valid (${r.name}, ${r.resources} resources)`);
  return valid ? EXIT.ok : EXIT.error;
}
