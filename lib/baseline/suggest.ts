// "Did you mean ...?" for a misspelt key or value, from the words allowed at its place.

/** ` (did you mean "owner"?)` when `word` is one or two edits from an allowed word, else an empty string. */
export function suggestion(word: string, allowed: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = Math.min(2, Math.floor(word.length / 3));
  for (const candidate of allowed) {
    // Lengths further apart than the edits allowed cannot match: long input costs nothing.
    if (Math.abs(word.length - candidate.length) > bestDistance) continue;
    const d = distance(word.toLowerCase(), candidate.toLowerCase());
    if (d <= bestDistance && d < word.length) {
      best = candidate;
      bestDistance = d - 1; // only a closer word replaces it
    }
  }
  return best === undefined ? '' : ` (did you mean "${best}"?)`;
}

/** Edit distance between short words. */
export function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}
