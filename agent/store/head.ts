// The audit log's head (last seq and hash) kept in a small file beside the database, written after every append. The
// database can lose committed records without SQLite noticing — its write-ahead log deleted after a crash, the file
// restored from a backup, truncated, replaced — and the next run would then number new records as old ones. The head
// file says how far the log went, so the loss is found, recorded, and never papered over by reused numbers.
import { closeSync, constants as C, openSync, readFileSync, writeSync } from 'node:fs';

export interface Head {
  seq: number;
  hash: string;
}

export const HEAD_FILE = 'audit-head';
const WIDTH = 20;
const LINE = WIDTH + 1 + 64 + 1;

/** The head as last written, or undefined when there is none (first run) or it is unreadable. */
export function readHead(file: string): Head | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'latin1');
  } catch {
    return undefined;
  }
  const m = /^\s*(\d+) ([0-9a-f]{64})\n/.exec(text);
  if (!m) return undefined;
  const seq = Number(m[1]);
  return Number.isSafeInteger(seq) ? { seq, hash: m[2] as string } : undefined;
}

/**
 * Writes the head in place: one pwrite of a fixed-size line at offset 0 on a descriptor kept open, so it costs a few
 * microseconds per record, needs no new disk blocks once the file exists (it works on a full disk), and a crash leaves
 * the old line or the new one. Never throws: a head that cannot be written only weakens the check at the next start.
 */
export class HeadFile {
  private fd: number | undefined;
  private readonly buf = Buffer.alloc(LINE);

  constructor(private readonly file: string) {}

  write(head: Head): void {
    try {
      this.fd ??= openSync(this.file, C.O_WRONLY | C.O_CREAT | C.O_NOFOLLOW, 0o600);
      this.buf.write(`${String(head.seq).padStart(WIDTH, ' ')} ${head.hash}\n`, 0, 'latin1');
      writeSync(this.fd, this.buf, 0, LINE, 0);
    } catch {
      this.close();
    }
  }

  close(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // nothing left to release
    }
    this.fd = undefined;
  }
}
