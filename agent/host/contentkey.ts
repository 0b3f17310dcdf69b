// The host's key for hashes of secret content: records name such content by HMAC-SHA256 under a key that never leaves the
// host, so nobody who reads the records (the controller, the dashboard) can confirm a guess of the content offline.
import { closeSync, constants as C, fstatSync, fsyncSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { createHmac, randomBytes } from 'node:crypto';
import path from 'node:path';

const KEY_FILE = 'content-hash.key';
const KEY_BYTES = 32;

export class ContentKey {
  private constructor(
    private readonly key: Buffer,
    /** False when the key lives in this process only (no state dir): its hashes differ from one run to the next. */
    readonly persistent: boolean,
  ) {}

  /** `hmac-sha256:<hex>` of `content`. */
  hash(content: Buffer): string {
    return `hmac-sha256:${createHmac('sha256', this.key).update(content).digest('hex')}`;
  }

  /**
   * The key kept in `stateDir`, made on first use when the state dir exists (the daemon makes it before anything is
   * observed). A one-shot `check` without a state dir, or a key file that is not what the agent wrote, gives a key for
   * this process only: hashes then cannot be compared with earlier records, which is safe, not wrong.
   */
  static forStateDir(stateDir: string): ContentKey {
    const file = path.join(stateDir, KEY_FILE);
    return readKey(file) ?? createKey(file) ?? new ContentKey(randomBytes(KEY_BYTES), false);
  }

  static fromBytes(key: Buffer, persistent: boolean): ContentKey {
    return new ContentKey(key, persistent);
  }
}

function readKey(file: string): ContentKey | undefined {
  let fd: number;
  try {
    fd = openSync(file, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    // Only a key only the agent's user could have written and read.
    if (!st.isFile() || st.size !== KEY_BYTES || st.uid !== (process.geteuid?.() ?? 0) || (st.mode & 0o077) !== 0) return undefined;
    const key = Buffer.alloc(KEY_BYTES);
    if (readSync(fd, key, 0, KEY_BYTES, 0) !== KEY_BYTES) return undefined;
    return ContentKey.fromBytes(key, true);
  } finally {
    closeSync(fd);
  }
}

function createKey(file: string): ContentKey | undefined {
  const key = randomBytes(KEY_BYTES);
  let fd: number;
  try {
    fd = openSync(file, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
  } catch (err) {
    // Made by another process in between: use that one.
    return (err as NodeJS.ErrnoException).code === 'EEXIST' ? readKey(file) : undefined;
  }
  let written = false;
  try {
    writeSync(fd, key);
    fsyncSync(fd);
    written = true;
  } catch {
    // below: a half-written key is removed, and the next start makes one again
  } finally {
    closeSync(fd);
  }
  if (!written) {
    try {
      unlinkSync(file);
    } catch {
      // nothing more to do
    }
    return undefined;
  }
  return ContentKey.fromBytes(key, true);
}
