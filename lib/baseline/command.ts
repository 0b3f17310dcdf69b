// The `validate:` command of a file resource as words (argv), never a shell line: the list form is taken as written, the
// string form is split the small, documented way below. `%s` becomes the candidate file's path inside whichever word holds it.

/** Words a shell would treat as operators: written unquoted in a command that runs without a shell, they are a mistake. */
const SHELL_OPERATORS = new Set(['|', '||', '&', '&&', ';', ';;', '<', '>', '>>', '<<', '2>', '2>>', '&>', '2>&1', '>&2', '(', ')']);

export type SplitResult = { words: string[] } | { error: string };

/**
 * Splits the string form into words: spaces and tabs separate words; '...' keeps everything inside as it is; "..." keeps
 * everything inside, with \" and \\ for a quote and a backslash; outside quotes a backslash keeps the next character.
 * Nothing else is special: no variables, globs, pipes or redirections. An unquoted shell operator is refused with advice.
 */
export function splitCommand(text: string): SplitResult {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quotedPart = false;
  let i = 0;
  const end = (): SplitResult | undefined => {
    if (!inWord) return undefined;
    if (!quotedPart && (SHELL_OPERATORS.has(word) || word.includes('$(') || word.includes('`'))) {
      return {
        error: `validate runs its command without a shell, so ${JSON.stringify(word)} would reach the program as an argument; for shell features write [/bin/sh, -c, "...", sh, "%s"] and use "$1" inside`,
      };
    }
    words.push(word);
    word = '';
    inWord = false;
    quotedPart = false;
    return undefined;
  };
  while (i < text.length) {
    const c = text[i] as string;
    if (c === ' ' || c === '\t') {
      const bad = end();
      if (bad) return bad;
      i++;
      continue;
    }
    inWord = true;
    if (c === "'") {
      const close = text.indexOf("'", i + 1);
      if (close === -1) return { error: `validate has a ' at character ${i + 1} that is never closed` };
      word += text.slice(i + 1, close);
      quotedPart = true;
      i = close + 1;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === '\\' && (text[j + 1] === '"' || text[j + 1] === '\\')) j++;
        word += text[j];
      }
      if (j >= text.length) return { error: `validate has a " at character ${i + 1} that is never closed` };
      quotedPart = true;
      i = j + 1;
    } else if (c === '\\') {
      if (i + 1 >= text.length) return { error: 'validate ends with a lone backslash' };
      word += text[i + 1];
      quotedPart = true;
      i += 2;
    } else {
      word += c;
      i++;
    }
  }
  const bad = end();
  if (bad) return bad;
  return { words };
}

/** The words of a validate value as the schema admits it (a string or a list of strings); undefined when it has none. */
export function commandWords(value: unknown): string[] | undefined {
  if (typeof value === 'string') {
    const r = splitCommand(value);
    return 'words' in r ? r.words : undefined;
  }
  if (Array.isArray(value) && value.every((w) => typeof w === 'string')) return [...(value as string[])];
  return undefined;
}

/** The argv to run: every `%s` in every word replaced by the candidate's path, each word staying one argument. */
export function commandFor(words: readonly string[], candidate: string): string[] {
  return words.map((w) => w.replaceAll('%s', candidate));
}
