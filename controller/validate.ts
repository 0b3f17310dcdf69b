// Validation of a pushed baseline with the agent's own parser, against the source files sent with it instead of a disk.
import { parseBaseline } from '../lib/baseline/index.js';
import type { Baseline } from '../lib/baseline/types.js';
import { HsError } from '../lib/errors.js';

/** Throws BaselineInvalidError with located issues, exactly as `homeostat-agent validate` would report them. */
export function validateBaseline(yaml: string, file: string, sources: Record<string, Buffer>): Baseline {
  return parseBaseline(yaml, {
    file,
    readSource: (rel: string): Buffer => {
      const bytes = sources[rel];
      if (bytes === undefined) throw new HsError('HS_BASELINE_SOURCE', `source file ${rel} was not sent with the baseline`);
      return bytes;
    },
  });
}
