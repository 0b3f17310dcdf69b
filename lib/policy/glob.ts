// Glob patterns of policy rules (`file:/etc/ssh/*`, `/usr/bin/vim*`, `puppet*.service`), compiled once, matched in time
// linear in the text for each wildcard: no regular expression, so no pattern can make a match backtrack.

/**
 * `*` matches any run of characters except `/`, `**` any run including `/`, `?` one character except `/`; `\` makes the
 * next character literal (a trailing `\` is itself). Everything else matches itself, case-sensitively.
 */
export interface Glob {
  readonly source: string;
  matches(text: string): boolean;
}

type Token = { t: 'lit'; s: string } | { t: 'one' } | { t: 'star' } | { t: 'globstar' };

/** Longest pattern accepted: rules name paths and programs, not documents. */
export const MAX_GLOB_LENGTH = 1024;

/** Why `pattern` cannot be compiled, or undefined. */
export function globProblem(pattern: string): string | undefined {
  if (pattern.length === 0) return 'a pattern must not be empty';
  if (pattern.length > MAX_GLOB_LENGTH) return `a pattern must be at most ${MAX_GLOB_LENGTH} characters`;
  if (/[\0\n]/.test(pattern)) return 'a pattern must not contain NUL or line breaks';
  return undefined;
}

export function compileGlob(pattern: string): Glob {
  const tokens = tokenize(pattern);
  const first = tokens[0];
  if (tokens.length === 0) return { source: pattern, matches: (text) => text === '' };
  if (tokens.length === 1 && first?.t === 'lit') return { source: pattern, matches: (text) => text === first.s };
  // A literal head, then `**` alone: a prefix test (`file:/etc/**`).
  if (tokens.length === 2 && first?.t === 'lit' && tokens[1]?.t === 'globstar') return { source: pattern, matches: (text) => text.startsWith(first.s) };
  const prefix = first?.t === 'lit' ? first.s : '';
  return {
    source: pattern,
    matches: (text) => text.startsWith(prefix) && run(tokens, text),
  };
}

function tokenize(pattern: string): Token[] {
  const out: Token[] = [];
  let lit = '';
  const flush = (): void => {
    if (lit !== '') out.push({ t: 'lit', s: lit });
    lit = '';
  };
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '\\' && i + 1 < pattern.length) {
      lit += pattern[++i];
    } else if (c === '*') {
      flush();
      const double = pattern[i + 1] === '*';
      if (double) while (pattern[i + 1] === '*') i++;
      const kind = double ? 'globstar' : 'star';
      const last = out[out.length - 1];
      // Adjacent stars collapse: `***` is `**`, and a `**` absorbs a `*` next to it.
      if (last?.t === 'globstar') continue;
      if (last?.t === 'star') out[out.length - 1] = { t: kind };
      else out.push({ t: kind });
    } else if (c === '?') {
      flush();
      out.push({ t: 'one' });
    } else {
      lit += c;
    }
  }
  flush();
  return out;
}

/** The set of text positions reachable after each token, advanced token by token. */
function run(tokens: Token[], text: string): boolean {
  const n = text.length;
  let reach = new Uint8Array(n + 1);
  reach[0] = 1;
  for (const tok of tokens) {
    const next = new Uint8Array(n + 1);
    let any = false;
    switch (tok.t) {
      case 'lit':
        for (let i = 0; i + tok.s.length <= n; i++) {
          if (reach[i] && text.startsWith(tok.s, i)) {
            next[i + tok.s.length] = 1;
            any = true;
          }
        }
        break;
      case 'one':
        for (let i = 0; i < n; i++) {
          if (reach[i] && text.charCodeAt(i) !== 47) {
            next[i + 1] = 1;
            any = true;
          }
        }
        break;
      case 'star':
        for (let i = 0; i <= n; i++) {
          if (reach[i] || (i > 0 && next[i - 1] && text.charCodeAt(i - 1) !== 47)) {
            next[i] = 1;
            any = true;
          }
        }
        break;
      case 'globstar':
        for (let i = 0; i <= n; i++) {
          if (reach[i] || (i > 0 && next[i - 1])) {
            next[i] = 1;
            any = true;
          }
        }
        break;
    }
    if (!any) return false;
    reach = next;
  }
  return reach[n] === 1;
}

/** True when the pattern has no wildcard: it names one thing. */
export function isLiteralGlob(pattern: string): boolean {
  const tokens = tokenize(pattern);
  return tokens.length === 1 && tokens[0]?.t === 'lit';
}
