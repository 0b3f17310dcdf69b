// Reads the example blocks of the Markdown docs as the docs-examples test runs them: fenced blocks, the
// `<!-- docs-test: ... -->` marker before each, and the commands of ```sh blocks (docs/operators.md, "How this page is tested").
import { readFileSync } from 'node:fs';

export type Marker = { kind: 'run' } | { kind: 'illustration'; why: string } | { kind: 'file'; path: string };

export interface DocBlock {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  marker: Marker;
  /** The `## ` heading the block sits under ('' before the first). */
  section: string;
  body: string;
}

export interface DocCommand {
  /** Where the command starts, file:line. */
  where: string;
  /** The command as typed, heredoc lines included, without the reader's trailing comment. */
  text: string;
  comment: string;
  expectedExit: number;
}

const MARKER = /^<!--\s*docs-test:\s*(illustration|file)\b:?\s*(.*?)\s*-->$/;

export function readBlocks(file: string, displayName = file): DocBlock[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const blocks: DocBlock[] = [];
  let section = '';
  let lastText = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    const open = /^```(\S*)\s*$/.exec(line);
    if (!open) {
      if (line.startsWith('## ')) section = line.slice(3).trim();
      if (line.trim() !== '') lastText = line.trim();
      continue;
    }
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i] ?? ''); i++) body.push(lines[i] ?? '');
    const m = MARKER.exec(lastText);
    let marker: Marker = { kind: 'run' };
    if (m?.[1] === 'illustration') marker = { kind: 'illustration', why: m[2] ?? '' };
    else if (m?.[1] === 'file') marker = { kind: 'file', path: m[2] ?? '' };
    if (m && marker.kind === 'file' && !marker.path) throw new Error(`${displayName}:${start}: docs-test file marker without a path`);
    blocks.push({ file: displayName, line: start + 1, lang: open[1] ?? '', marker, section, body: body.join('\n') });
    lastText = '';
  }
  return blocks;
}

/** Splits a shell line into the command and the reader's comment: the first `#` outside quotes that starts a word. */
export function splitComment(line: string): { command: string; comment: string } {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"') i++;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === '\\') i++;
    else if (c === '#' && (i === 0 || /\s/.test(line[i - 1] ?? ''))) return { command: line.slice(0, i).trimEnd(), comment: line.slice(i + 1).trim() };
  }
  return { command: line.trimEnd(), comment: '' };
}

/** The commands of a ```sh block: one a line, a heredoc with its lines; `(exit N)` opening the comment is the expected status. */
export function commandsOf(block: DocBlock): DocCommand[] {
  const lines = block.body.split('\n');
  const out: DocCommand[] = [];
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? '';
    if (raw.trim() === '' || raw.trim().startsWith('#')) continue;
    const first = i;
    const { command, comment } = splitComment(raw);
    let text = command;
    const here = /<<-?\s*(['"]?)([A-Za-z_]+)\1/.exec(command);
    if (here) {
      const end = here[2] ?? '';
      for (i++; i < lines.length && (lines[i] ?? '') !== end; i++) text += `\n${lines[i] ?? ''}`;
      if (i >= lines.length) throw new Error(`${block.file}:${block.line + 1 + i}: heredoc ${end} never closed`);
      text += `\n${end}`;
    }
    const exit = /^\(exit (\d+)\)/.exec(comment);
    out.push({ where: `${block.file}:${block.line + 1 + first}`, text, comment, expectedExit: exit ? Number(exit[1]) : 0 });
  }
  return out;
}

/** Every invocation of one of the three programs in a command: its words up to the end of that simple command. */
export function invocations(text: string): { program: string; words: string[] }[] {
  const firstLine = text.split('\n')[0] ?? '';
  const found: { program: string; words: string[] }[] = [];
  // Only where a command starts: the line's start, after ; | & ( or $( and backquote, not as another command's argument.
  const re = /(?:^|[;|&(`]\s*)(homeostat-agent|homeostat-controller|homeostatctl)(?=\s|$)/g;
  for (let m = re.exec(firstLine); m; m = re.exec(firstLine)) {
    const rest = firstLine.slice(m.index + m[0].length);
    const stop = /[;|&)`]|\s#/.exec(rest);
    found.push({ program: m[1] ?? '', words: shellWords(stop ? rest.slice(0, stop.index) : rest) });
  }
  return found;
}

/** Words as the shell splits them, quotes removed (no expansion). */
export function shellWords(s: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: string | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i] ?? '';
    if (quote) {
      if (c === quote) quote = undefined;
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}
