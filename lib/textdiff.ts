// Unified diffs of text, bounded in size and in work: a diff runs on every drift of a managed file, in `check`, in
// plans and at the controller, so whoever can write one managed file must not be able to stall any of them.
import { createTwoFilesPatch } from 'diff';

export const DIFF_LIMIT_BYTES = 64 * 1024;
/**
 * Most changed lines (added plus removed) a diff is computed for. Myers' algorithm costs O((N + D) · D) for D edits:
 * unbounded, 16,000 changed short lines took over a minute; at 500 the worst 64 KiB input takes about 25 ms here
 * (bench/diff.ts), and a diff that long is not read by anyone anyway.
 */
export const MAX_DIFF_EDITS = 500;
/** A wall-clock cap on top, for a slower host than the one the edit bound was measured on. */
export const DIFF_TIMEOUT_MS = 40;

/** True when the bytes look like text: valid UTF-8 with no NUL. */
export function isText(buf: Buffer): boolean {
  if (buf.includes(0)) return false;
  return Buffer.from(buf.toString('utf8'), 'utf8').equals(buf);
}

/**
 * A unified diff of two texts, or undefined when either side is binary or over the size limit, or when the two differ
 * in more than `MAX_DIFF_EDITS` lines (the record then carries both hashes and no diff).
 */
export function unifiedDiff(label: string, before: Buffer, after: Buffer, limit = DIFF_LIMIT_BYTES, timeoutMs = DIFF_TIMEOUT_MS): string | undefined {
  if (before.length > limit || after.length > limit || !isText(before) || !isText(after)) return undefined;
  return createTwoFilesPatch(`${label} (observed)`, `${label} (desired)`, before.toString('utf8'), after.toString('utf8'), '', '', {
    context: 3,
    maxEditLength: MAX_DIFF_EDITS,
    timeout: timeoutMs,
  });
}
