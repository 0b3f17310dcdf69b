// Owners and groups by name and by id, as the host's NSS sees them (local files, LDAP or sssd, systemd's dynamic users).
// Node has no getpwnam, so names are resolved with `getent` — asynchronously, once, and remembered — while the lookups
// that compare and describe states stay synchronous and read only what is remembered. When nsswitch.conf consults the
// local files first (the usual case), a name found there is what NSS would answer, so /etc/passwd and /etc/group answer
// without a process; everything else goes to getent. A resource resolves its names before it compares (observe).
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { HsError } from '../../lib/errors.js';

type Db = 'passwd' | 'group';

interface FileTable {
  checkedAt: number;
  mtimeMs: number;
  byName: Map<string, number>;
  byId: Map<number, string>;
}

interface Entry<T> {
  value: T | undefined;
  at: number;
}

/** How long a local file's table is trusted before its mtime is looked at again. */
const RECHECK_MS = 1000;
/** An answer from NSS is used this long; then it is asked again (LDAP entries change, nobody tells us). */
const NSS_TTL_MS = 10 * 60_000;
/** A name NSS did not know is asked about again after this long (a user may be created; LDAP may have been away). */
const MISS_TTL_MS = 5000;
/** getent waits no longer than this for a directory service. */
const GETENT_TIMEOUT_MS = 5000;

class Accounts {
  files: Record<Db, string> = { passwd: '/etc/passwd', group: '/etc/group' };
  nsswitch = '/etc/nsswitch.conf';
  private readonly tables = new Map<string, FileTable>();
  private readonly names: Record<Db, Map<string, Entry<number>>> = { passwd: new Map(), group: new Map() };
  private readonly ids: Record<Db, Map<number, Entry<string>>> = { passwd: new Map(), group: new Map() };
  private readonly inflight = new Map<string, Promise<void>>();
  private filesFirst: Record<Db, boolean> | undefined;

  /** The uid of an owner (a name or a number), from what is remembered; throws HS_HOST_NO_SUCH_USER when unknown. */
  uid(value: string | number, resource: string): number {
    return this.id('passwd', 'owner', value, resource);
  }

  gid(value: string | number, resource: string): number {
    return this.id('group', 'group', value, resource);
  }

  /** The name of a uid for records, or the number when it has none (or is not resolved yet). */
  userName(uid: number): string {
    return this.nameOf('passwd', uid) ?? String(uid);
  }

  groupName(gid: number): string {
    return this.nameOf('group', gid) ?? String(gid);
  }

  /**
   * Resolves what `uid`/`gid`/`userName`/`groupName` will be asked about (names of the desired owner and group, ids seen
   * on the host), going to NSS only for what is not known yet. Never throws: an unknown name is remembered as unknown.
   */
  async prepare(want: { owner?: string | number | undefined; group?: string | number | undefined; uid?: number; gid?: number }): Promise<void> {
    const work: Promise<void>[] = [];
    if (typeof want.owner === 'string' && !isNumeric(want.owner) && this.needsName('passwd', want.owner)) work.push(this.lookup('passwd', want.owner));
    if (typeof want.group === 'string' && !isNumeric(want.group) && this.needsName('group', want.group)) work.push(this.lookup('group', want.group));
    if (want.uid !== undefined && this.needsId('passwd', want.uid)) work.push(this.lookup('passwd', String(want.uid)));
    if (want.gid !== undefined && this.needsId('group', want.gid)) work.push(this.lookup('group', String(want.gid)));
    if (work.length > 0) await Promise.all(work);
  }

  private id(db: Db, kind: 'owner' | 'group', value: string | number, resource: string): number {
    if (typeof value === 'number' || isNumeric(value)) return Number(value);
    const local = this.fromFiles(db)?.byName.get(value);
    if (local !== undefined) return local;
    const e = this.names[db].get(value)?.value;
    if (e !== undefined) return e;
    // Retryable: the account may be created later (by a package install, say); until then the repair fails with this reason.
    throw new HsError('HS_HOST_NO_SUCH_USER', `${kind} '${value}' does not exist on this host (looked up through NSS: ${this.files[db]} and getent ${db})`, { retryable: true, resource });
  }

  private nameOf(db: Db, id: number): string | undefined {
    return this.fromFiles(db)?.byId.get(id) ?? this.ids[db].get(id)?.value;
  }

  private needsName(db: Db, name: string): boolean {
    if (this.fromFiles(db)?.byName.has(name)) return false;
    return stale(this.names[db].get(name));
  }

  private needsId(db: Db, id: number): boolean {
    if (this.fromFiles(db)?.byId.has(id)) return false;
    return stale(this.ids[db].get(id));
  }

  /** `getent DB KEY`, once at a time per key; remembers the answer both ways (or the miss). */
  private lookup(db: Db, key: string): Promise<void> {
    // Never a word getent would take for an option; no account name starts with a dash.
    if (key.startsWith('-') || key.length > 256) return Promise.resolve();
    const k = `${db}\0${key}`;
    let p = this.inflight.get(k);
    if (!p) {
      p = getent(db, key).then((line) => {
        this.inflight.delete(k);
        const now = Date.now();
        const fields = line?.split(':');
        const name = fields?.[0];
        const id = Number(fields?.[2]);
        if (line === undefined || !name || !Number.isInteger(id)) {
          if (isNumeric(key)) this.ids[db].set(Number(key), { value: undefined, at: now });
          else this.names[db].set(key, { value: undefined, at: now });
          return;
        }
        this.names[db].set(name, { value: id, at: now });
        if (!this.ids[db].get(id)?.value) this.ids[db].set(id, { value: name, at: now });
        if (!isNumeric(key) && key !== name) this.names[db].set(key, { value: id, at: now });
      });
      this.inflight.set(k, p);
    }
    return p;
  }

  /** The local file's table when NSS consults the files first, so what is found there is NSS's answer. */
  private fromFiles(db: Db): FileTable | undefined {
    this.filesFirst ??= readNsswitch(this.nsswitch);
    if (!this.filesFirst[db]) return undefined;
    return this.load(this.files[db]);
  }

  private load(file: string): FileTable {
    const now = Date.now();
    const cached = this.tables.get(file);
    if (cached && now - cached.checkedAt < RECHECK_MS) return cached;
    let mtimeMs = -1;
    try {
      mtimeMs = statSync(file).mtimeMs;
    } catch {
      // a host without the file resolves through getent only
    }
    if (cached && cached.mtimeMs === mtimeMs) {
      cached.checkedAt = now;
      return cached;
    }
    const byName = new Map<string, number>();
    const byId = new Map<number, string>();
    if (mtimeMs >= 0) {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const [name, , id] = line.split(':');
        const n = Number(id);
        if (!name || name.startsWith('+') || name.startsWith('-') || !Number.isInteger(n)) continue;
        if (!byName.has(name)) byName.set(name, n);
        if (!byId.has(n)) byId.set(n, name);
      }
    }
    const t = { checkedAt: now, mtimeMs, byName, byId };
    this.tables.set(file, t);
    return t;
  }

  /** Forgets everything remembered (tests point the files elsewhere). */
  reset(): void {
    this.tables.clear();
    for (const db of ['passwd', 'group'] as const) {
      this.names[db].clear();
      this.ids[db].clear();
    }
    this.filesFirst = undefined;
  }
}

function stale<T>(e: Entry<T> | undefined): boolean {
  if (!e) return true;
  return Date.now() - e.at > (e.value === undefined ? MISS_TTL_MS : NSS_TTL_MS);
}

function isNumeric(s: string): boolean {
  return /^\d+$/.test(s);
}

/** Which databases NSS answers from the local files first (`passwd: files ...`); glibc's default without the file does. */
function readNsswitch(file: string): Record<Db, boolean> {
  const out: Record<Db, boolean> = { passwd: true, group: true };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const m = /^\s*(passwd|group)\s*:\s*(\S+)/.exec(line);
    if (m) out[m[1] as Db] = m[2] === 'files' || m[2] === 'compat';
  }
  return out;
}

/** The line `getent DB KEY` prints, or undefined when NSS has no such entry (or cannot be asked in time). */
function getent(db: Db, key: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('getent', [db, key], { timeout: GETENT_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout) => {
      if (err) return resolve(undefined);
      resolve(stdout.split('\n')[0] || undefined);
    });
  });
}

/** The agent's one view of accounts. */
export const accounts = new Accounts();
