// Collects every problem found in one baseline, each located at the key or value it is about.
import { HsError, type ErrorCode } from '../errors.js';
import { fieldPath, type Path, type Pos, type YamlDoc } from './yaml-doc.js';

/**
 * Which part of the text a problem points at: the `key` that names the field (unknown or conflicting keys), its `value`
 * (a bad value), or the `owner` mapping that should have held a missing key.
 */
export type Anchor = 'key' | 'value' | 'owner';

export class IssueList {
  readonly items: HsError[] = [];
  /** The id of each resource by its index in spec.resources, once known, so every problem inside one names it. */
  readonly resourceIds: (string | undefined)[] = [];

  /** `keep`: which fields' problems are kept, when only part of the document may be checked; all by default. */
  constructor(
    readonly file: string,
    private readonly doc: YamlDoc,
    private readonly keep: (field: Path) => boolean = () => true,
  ) {}

  add(code: ErrorCode, message: string, path: Path, anchor: Anchor, field: Path = path): void {
    if (this.keep(field)) this.addAt(code, message, field, this.position(path, anchor));
  }

  /** An issue at a position known already, e.g. the second of two equal keys (a lookup by path finds the last). */
  addAt(code: ErrorCode, message: string, path: Path, pos: Pos): void {
    if (!this.keep(path)) return;
    const index = path[0] === 'spec' && path[1] === 'resources' && typeof path[2] === 'number' ? path[2] : undefined;
    const resource = index === undefined ? undefined : this.resourceIds[index];
    const field = fieldPath(path);
    this.items.push(
      new HsError(code, clip(message, MAX_MESSAGE), {
        location: { file: this.file, line: pos.line, column: pos.column, field: field === '' ? undefined : clip(field, MAX_FIELD), resource: resource === undefined ? undefined : clip(resource, MAX_FIELD) },
      }),
    );
  }

  /** The place `path` names; when the document has no such place (a missing key), the nearest enclosing one. */
  position(path: Path, anchor: Anchor): Pos {
    const at = this.doc.detail().locator;
    if (anchor === 'owner') return at.keyPos(path) ?? this.position(path.slice(0, -1), 'owner');
    const found = anchor === 'key' ? (at.keyPos(path) ?? at.valuePos(path)) : (at.valuePos(path) ?? at.keyPos(path));
    return found ?? this.position(path.slice(0, -1), 'owner');
  }

  /** Where the key naming `path` is; cheap for a valid document, which only needs resource locations. */
  keyPosition(path: Path): Pos {
    return this.doc.keys.keyPos(path) ?? this.position(path, 'key');
  }

  /** The source text of the scalar at `path` (`0644`, where the value reads 644). */
  raw(path: Path): string | undefined {
    return this.doc.detail().locator.raw(path);
  }

  /** Problems in the order they appear in the text. */
  sorted(): HsError[] {
    return [...this.items].sort((a, b) => (a.location?.line ?? 0) - (b.location?.line ?? 0) || (a.location?.column ?? 0) - (b.location?.column ?? 0));
  }
}

/** Messages quote what the baseline says; a value of megabytes must not become a message of megabytes. */
const MAX_MESSAGE = 1000;
const MAX_FIELD = 300;

/** `text`, or its start and end around a note of how much was left out. */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  const head = Math.floor(max * 0.6);
  const tail = max - head;
  return `${text.slice(0, head)}…(${text.length - head - tail} characters left out)…${text.slice(-tail)}`;
}

/** A value from the baseline as messages quote it: JSON-quoted, at most `max` characters of it. */
export function quoted(text: string, max = 80): string {
  return JSON.stringify(clip(text, max));
}
