// Resolves user and group names to ids from /etc/passwd and /etc/group (Node has no getpwnam), re-read when those files change.
import { readFileSync, statSync } from 'node:fs';
import { HsError } from '../../lib/errors.js';

interface Table {
  checkedAt: number;
  mtimeMs: number;
  byName: Map<string, number>;
  byId: Map<number, string>;
}

const tables = new Map<string, Table>();

/** How long a table is trusted before its file's mtime is looked at again: resolving 10,000 owners must not cost 10,000 stats. */
const RECHECK_MS = 1000;

function load(file: string): Table {
  const now = Date.now();
  const cached = tables.get(file);
  if (cached && now - cached.checkedAt < RECHECK_MS) return cached;
  let mtimeMs = -1;
  try {
    mtimeMs = statSync(file).mtimeMs;
  } catch {
    // a host without the file resolves numeric ids only
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
      if (!name || !Number.isInteger(n)) continue;
      byName.set(name, n);
      if (!byId.has(n)) byId.set(n, name);
    }
  }
  const t = { checkedAt: now, mtimeMs, byName, byId };
  tables.set(file, t);
  return t;
}

function resolve(kind: 'owner' | 'group', file: string, value: string | number, resource: string): number {
  if (typeof value === 'number' || /^\d+$/.test(value)) return Number(value);
  const id = load(file).byName.get(value);
  if (id === undefined) {
    // Retryable: the account may be created later (by a package install, say); until then the repair fails with this reason.
    throw new HsError('HS_HOST_NO_SUCH_USER', `${kind} '${value}' does not exist on this host (${file})`, { retryable: true, resource });
  }
  return id;
}

export const accounts = {
  passwd: '/etc/passwd',
  group: '/etc/group',
  uid(value: string | number, resource: string): number {
    return resolve('owner', this.passwd, value, resource);
  },
  gid(value: string | number, resource: string): number {
    return resolve('group', this.group, value, resource);
  },
  userName(uid: number): string {
    return load(this.passwd).byId.get(uid) ?? String(uid);
  },
  groupName(gid: number): string {
    return load(this.group).byId.get(gid) ?? String(gid);
  },
};
