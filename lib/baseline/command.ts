// The `validate:` command of a file resource as words (argv), never a shell line: the list form is taken as written, the
// string form is split the small, documented way below. `%s` becomes the candidate file's path inside whichever word holds it.

/** Characters a shell would act on when unquoted; here they would reach the program as text, which is never what was meant. */
const SHELL_SYNTAX = new Set([';', '|', '&', '<', '>', '`', '(', ')']);

export type SplitResult = { words: string[] } | { error: string };

function shellSyntax(what: string): SplitResult {
  return {
    error: `validate runs its command without a shell, so ${what} would reach the program as text; quote it if it is meant as text, or for shell features write [/bin/sh, -c, "...", sh, "%s"] and use "$1" inside`,
  };
}

/**
 * Splits the string form into words: spaces and tabs separate words; '...' keeps everything inside as it is; "..." keeps
 * everything inside, with \" and \\ for a quote and a backslash; outside quotes a backslash keeps the next character.
 * Nothing is expanded: no variables, globs, pipes or redirections. Unquoted shell syntax is refused with advice.
 */
export function splitCommand(text: string): SplitResult {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === ' ' || c === '\t') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      i++;
      continue;
    }
    inWord = true;
    if (c === "'") {
      const close = text.indexOf("'", i + 1);
      if (close === -1) return { error: `validate has a ' at character ${i + 1} that is never closed` };
      word += text.slice(i + 1, close);
      i = close + 1;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < text.length && text[j] !== '"'; j++) {
        if (text[j] === '\\' && (text[j + 1] === '"' || text[j + 1] === '\\')) j++;
        word += text[j];
      }
      if (j >= text.length) return { error: `validate has a " at character ${i + 1} that is never closed` };
      i = j + 1;
    } else if (c === '\\') {
      if (i + 1 >= text.length) return { error: 'validate ends with a lone backslash' };
      word += text[i + 1];
      i += 2;
    } else {
      if (SHELL_SYNTAX.has(c)) return shellSyntax(`the unquoted ${JSON.stringify(c)} at character ${i + 1}`);
      if (c === '$' && /[({A-Za-z_]/.test(text[i + 1] ?? '')) return shellSyntax(`the unquoted "$" at character ${i + 1} (no variable is expanded)`);
      word += c;
      i++;
    }
  }
  if (inWord) words.push(word);
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
