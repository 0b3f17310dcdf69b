// A YAML syntax error as someone writing a baseline needs it: the parser's complaint turned into what is wrong at
// line:column and what to do, for the usual mistakes (a tab, a key out of line with its siblings, a mapping on its key's
// line, a key without its colon, a list item without a space after "-"). Anything else keeps the parser's words.

export interface SyntaxSpot {
  /** The parser's error code (yaml's BAD_INDENT, TAB_AS_INDENT, ...). */
  code: string;
  message: string;
  line: number;
  column: number;
}

const indentOf = (s: string): number => s.length - s.trimStart().length;
const meaningful = (s: string): boolean => s.trim() !== '' && !s.trimStart().startsWith('#');
const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Where a line's key starts: after its indentation and, for a list item, after "- ". */
function keyColumn(s: string): number {
  const m = /^(\s*)((?:-\s+)*)/.exec(s);
  return (m?.[1]?.length ?? 0) + (m?.[2]?.length ?? 0);
}

function keyName(s: string): string {
  return /^\s*(?:-\s+)*([^:#\s][^:#]*?)\s*:/.exec(s)?.[1] ?? s.trim().slice(0, 40);
}

/** The nearest line above `line` (1-based) with content, or undefined. */
function previous(lines: string[], line: number, pred: (s: string) => boolean = meaningful): number | undefined {
  for (let i = line - 2; i >= 0; i--) if (pred(lines[i] ?? '')) return i + 1;
  return undefined;
}

export function explainSyntax(text: string, spot: SyntaxSpot): SyntaxSpot {
  const lines = text.split('\n');
  const here = lines[spot.line - 1] ?? '';
  const say = (message: string, line = spot.line, column = spot.column): SyntaxSpot => ({ code: spot.code, message: `YAML syntax: ${message}`, line, column: Math.max(1, column) });

  if (spot.code === 'TAB_AS_INDENT' || (spot.code === 'BAD_INDENT' && /^ *\t/.test(here))) {
    // The parser may place the error at the end of the line before the tab's: name the line that holds it.
    const at = [spot.line, spot.line + 1].find((n) => /^ *\t/.test(lines[n - 1] ?? '')) ?? spot.line;
    const tab = (lines[at - 1] ?? '').indexOf('\t');
    return say(`line ${at} is indented with a tab; YAML indents with spaces only: replace the tab with spaces, lining the key up with its siblings`, at, tab >= 0 ? tab + 1 : spot.column);
  }

  if (spot.code === 'BLOCK_AS_IMPLICIT_KEY' || /Nested mappings are not allowed in compact mappings/.test(spot.message)) {
    const m = /^(\s*(?:-\s+)*)([^:#\s][^:#]*?):\s+([^:#\s][^:#]*?):\s*(.*)$/.exec(here);
    if (m) {
      const [, lead = '', outer = '', inner = '', rest = ''] = m;
      const under = ' '.repeat(keyColumn(lead + 'x') + 2);
      return say(
        `"${outer}: ${inner}: ..." puts a mapping on the same line as its key "${outer}"; move "${inner}: ${rest}" to the next line, indented under "${outer}" (${under.length} spaces), or write ${outer}: { ${inner}: ${rest} }`,
        spot.line,
        lead.length + outer.length + 3,
      );
    }
  }

  if (/^\s*-[^\s-]/.test(here) && (spot.code === 'BAD_INDENT' || spot.code === 'MISSING_CHAR')) {
    const dash = here.indexOf('-');
    return say(`a list item needs a space after "-": write "- ${here.slice(dash + 1).trim()}"`, spot.line, dash + 1);
  }

  if (spot.code === 'MISSING_CHAR' && /Implicit map keys need to be followed by map values/.test(spot.message)) {
    const m = /^(\s*(?:-\s+)*)([A-Za-z0-9_.\/-]+)\s+(\S.*)$/.exec(here);
    if (m) {
      const [, lead = '', key = '', value = ''] = m;
      return say(`"${key}" has no ":" after it; write "${key}: ${value}" (the key, a colon and a space, then the value)`, spot.line, lead.length + key.length + 1);
    }
    return say(`this line is neither "key: value" nor a list item ("- ..."); write "key: value"`);
  }

  const sequence = /sequence items/.test(spot.message);
  if (spot.code === 'BAD_INDENT' || /Sequence item without - indicator/.test(spot.message)) {
    if (sequence && here.trimStart().startsWith('-')) {
      // A list item out of line with the item before it.
      const prev = previous(lines, spot.line, (s) => meaningful(s) && s.trimStart().startsWith('-') && indentOf(s) !== indentOf(here));
      if (prev !== undefined) {
        const want = indentOf(lines[prev - 1] ?? '');
        const diff = indentOf(here) - want;
        return say(`this list item is indented ${plural(Math.abs(diff), 'space')} ${diff > 0 ? 'more' : 'fewer'} than the item at line ${prev}; start its "-" at column ${want + 1}`, spot.line, indentOf(here) + 1);
      }
    }
    const prev = previous(lines, spot.line);
    if (prev !== undefined) {
      const sibling = lines[prev - 1] ?? '';
      const want = keyColumn(sibling);
      const have = keyColumn(here);
      if (have !== want) {
        const diff = have - want;
        return say(
          `this key is indented ${plural(Math.abs(diff), 'space')} ${diff > 0 ? 'more' : 'fewer'} than its sibling "${keyName(sibling)}" at line ${prev}; start "${keyName(here)}" at column ${want + 1}, as its siblings do`,
          spot.line,
          have + 1,
        );
      }
    }
  }
  return say(spot.message);
}
