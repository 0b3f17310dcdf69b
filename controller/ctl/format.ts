// How homeostatctl prints for people: tables with a header line and columns sized to their content, `key  value`
// blocks for one object, times as UTC ISO text, and every value from an agent on one line and cut to a readable length.

/** Times come from agents: one a Date cannot hold (past 8.64e15 ms) is printed as the number it is. */
export const time = (ms: unknown): string =>
  typeof ms !== 'number' || ms <= 0 ? '-' : ms > 8.64e15 || !Number.isFinite(ms) ? String(ms) : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

/** The local wall-clock time of `ms` as HH:MM:SS (when a soak ends, say). */
export function clockTime(ms: number): string {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** A span of time in the largest unit that keeps it short: `42s`, `5m`, `3h`, `2d`. */
export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

/** One line of at most `max` characters: line breaks become ` ⏎ `, tabs a space. */
export function oneLine(text: unknown, max = 160): string {
  const s = (typeof text === 'string' ? text : text === null || text === undefined ? '' : typeof text === 'object' ? JSON.stringify(text) : String(text))
    .replace(/\r?\n/g, ' ⏎ ')
    .replace(/[\t\v\f\r]/g, ' ')
    // Control characters an agent may have put in a value must not move the operator's cursor.
    .replace(/[\u0000-\u001f\u007f]/g, '?');
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** A table: the first row is the header; each column as wide as its widest cell; no trailing spaces. */
export function table(rows: string[][]): string {
  const clean = rows.map((r) => r.map((c) => oneLine(c, 400)));
  const widths = clean[0]?.map((_, i) => Math.max(...clean.map((r) => (r[i] ?? '').length))) ?? [];
  return clean.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
}

/** `key  value` lines, keys padded to the longest; entries whose value is undefined are left out. */
export function fields(entries: [string, string | undefined][]): string {
  const shown = entries.filter((e): e is [string, string] => e[1] !== undefined);
  const w = Math.max(0, ...shown.map(([k]) => k.length));
  return shown.map(([k, v]) => `${k.padEnd(w)}  ${v}`.trimEnd()).join('\n');
}

/** A block of text (a diff) indented under a heading, without trailing whitespace. */
export function indented(text: string, by = '  '): string {
  return text.replace(/\s+$/, '').split('\n').map((l) => `${by}${l}`.trimEnd()).join('\n');
}

/** `{exists: true, mode: "0644"}` as `exists=true mode=0644`; other JSON as compact text. */
export function stateText(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v !== 'object' || Array.isArray(v)) return oneLine(v);
  return oneLine(
    Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `${k}=${typeof x === 'string' ? x : JSON.stringify(x)}`)
      .join(' '),
    300,
  );
}
