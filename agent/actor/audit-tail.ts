// Follows auditd's log file as it grows and as auditd rotates it (renames it away and starts a new one): lines are handed
// on as they are written, read when inotify says the folder changed, on demand, and once a second as a safety net.
import { closeSync, constants as fsc, fstatSync, lstatSync, openSync, readSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { Logger } from '../../lib/log.js';
import { errorMessage } from '../../lib/errors.js';
import { MAX_RECORD_LINE } from './audit-records.js';

export interface AuditLogTailOptions {
  file: string;
  onLine: (line: string) => void;
  log: Logger;
  /** Most bytes read in one go, so a burst of records never holds the event loop long. */
  maxReadBytes?: number;
  /** The safety-net poll, in case an inotify event is missed. */
  pollMs?: number;
}

export class AuditLogTail {
  private fd: number | undefined;
  private ino: number | undefined;
  private offset = 0;
  private partial = '';
  private skipping = false;
  /** Keeps a character split between two reads whole. */
  private decoder = new StringDecoder('utf8');
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private scheduled = false;
  private readonly buf: Buffer;
  /** Why the log cannot be read right now, or undefined when it can. */
  problem: string | undefined;

  constructor(private readonly opts: AuditLogTailOptions) {
    this.buf = Buffer.alloc(Math.max(MAX_RECORD_LINE * 2, opts.maxReadBytes ?? 1024 * 1024));
  }

  /** Starts at the end of the log: only what is written from now on is read. */
  start(): void {
    this.open(true);
    try {
      this.watcher = watch(path.dirname(this.opts.file), { persistent: false }, () => this.schedule());
      this.watcher.on('error', (err) => {
        this.opts.log.warn({ file: this.opts.file, err: errorMessage(err) }, 'audit log watch failed; polling');
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch (err) {
      this.opts.log.warn({ file: this.opts.file, err: errorMessage(err) }, 'audit log watch failed; polling');
    }
    this.timer = setInterval(() => this.readNow(), this.opts.pollMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.close();
  }

  /** Reads whatever has been written since the last read, following a rotation; returns the number of lines handed on. */
  readNow(): number {
    let lines = 0;
    try {
      if (this.fd === undefined) this.open(false);
      if (this.fd === undefined) return 0;
      lines += this.drain();
      // A rotation renames the file away: finish the old one (done above), then go on with the new one from its start.
      const now = this.statPath();
      if (now !== undefined && now.ino !== this.ino) {
        this.close();
        this.open(false);
        lines += this.drain();
      } else if (now !== undefined && this.fd !== undefined && fstatSync(this.fd).size < this.offset) {
        this.offset = 0; // truncated in place
        this.partial = '';
        this.decoder = new StringDecoder('utf8');
        lines += this.drain();
      }
      this.problem = undefined;
    } catch (err) {
      this.problem = `cannot read ${this.opts.file}: ${errorMessage(err)}`;
      this.close();
    }
    return lines;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.readNow();
    });
  }

  private drain(): number {
    let lines = 0;
    const fd = this.fd;
    if (fd === undefined) return 0;
    const limit = this.opts.maxReadBytes ?? 1024 * 1024;
    let budget = limit;
    while (budget > 0) {
      const n = readSync(fd, this.buf, 0, Math.min(this.buf.length, budget), this.offset);
      if (n === 0) break;
      this.offset += n;
      budget -= n;
      lines += this.split(this.decoder.write(this.buf.subarray(0, n)));
    }
    if (budget <= 0) this.schedule(); // more to read: go on after other work had its turn
    return lines;
  }

  private split(chunk: string): number {
    let lines = 0;
    const text = this.partial + chunk;
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      if (!this.skipping) {
        this.opts.onLine(text.slice(start, nl));
        lines++;
      }
      this.skipping = false;
      start = nl + 1;
    }
    this.partial = text.slice(start);
    // A line longer than any record is not one: drop it up to its end instead of holding it.
    if (this.partial.length > MAX_RECORD_LINE) {
      this.partial = '';
      this.skipping = true;
    }
    return lines;
  }

  private statPath(): { ino: number } | undefined {
    try {
      const st = lstatSync(this.opts.file);
      return st.isFile() ? { ino: st.ino } : undefined;
    } catch {
      return undefined; // between auditd's rename and its new file
    }
  }

  private open(atEnd: boolean): void {
    try {
      const fd = openSync(this.opts.file, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
      const st = fstatSync(fd);
      if (!st.isFile()) {
        closeSync(fd);
        this.problem = `${this.opts.file} is not a regular file`;
        return;
      }
      this.fd = fd;
      this.ino = st.ino;
      this.offset = atEnd ? st.size : 0;
      this.partial = '';
      this.skipping = false;
      this.decoder = new StringDecoder('utf8');
      this.problem = undefined;
    } catch (err) {
      this.problem = `cannot open ${this.opts.file}: ${errorMessage(err)}`;
    }
  }

  private close(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // already gone
      }
    }
    this.fd = undefined;
  }
}
