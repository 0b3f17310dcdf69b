// Unified diffs of text, bounded so a huge or binary file never bloats a record.
import { createTwoFilesPatch } from 'diff';

export const DIFF_LIMIT_BYTES = 64 * 1024;

/** True when the bytes look like text: valid UTF-8 with no NUL. */
export function isText(buf: Buffer): boolean {
  if (buf.includes(0)) return false;
  return Buffer.from(buf.toString('utf8'), 'utf8').equals(buf);
}

/** A unified diff of two texts, or undefined when either side is binary or over the limit. */
export function unifiedDiff(label: string, before: Buffer, after: Buffer, limit = DIFF_LIMIT_BYTES): string | undefined {
  if (before.length > limit || after.length > limit || !isText(before) || !isText(after)) return undefined;
  return createTwoFilesPatch(`${label} (observed)`, `${label} (desired)`, before.toString('utf8'), after.toString('utf8'), '', '', {
    context: 3,
  });
}
