// Validation of a pushed baseline with the agent's own parser, against the source files sent with it instead of a disk.
import { parseBaseline } from '../lib/baseline/index.js';
import { sourcePathProblem, sourcesFromMap } from '../lib/baseline/sources.js';
import type { Baseline } from '../lib/baseline/types.js';
import { BaselineInvalidError, HsError } from '../lib/errors.js';

/** Throws BaselineInvalidError with located issues, exactly as `homeostat-agent validate` would report them. */
export function validateBaseline(yaml: string, file: string, sources: Record<string, Buffer>): Baseline {
  const b = parseBaseline(yaml, { file, readSource: sourcesFromMap(sources, (rel) => `source file ${rel} was not sent with the baseline`) });
  // Files sent along are stored and handed to every agent: only the ones the baseline reads, by paths it may read.
  const unused = Object.keys(sources).filter((rel) => !Object.hasOwn(b.origin.sources, rel));
  if (unused.length > 0) {
    const issues = unused.map((rel) => {
      const why = sourcePathProblem(rel) ?? 'no resource of the baseline uses it';
      return new HsError('HS_BASELINE_SOURCE', `source file ${JSON.stringify(rel)} was sent with the baseline but is refused: ${why}`, { location: { file, line: 1, column: 1, field: `sources[${JSON.stringify(rel)}]` } });
    });
    throw new BaselineInvalidError(file, issues);
  }
  return b;
}
