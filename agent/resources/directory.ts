// The `directory:` resource: existence, mode, owner and group of a directory (its contents are other resources' business),
// read and changed through its parent held open without following symlinks (host/pathwalk.ts).
import { HsError, hostError } from '../../lib/errors.js';
import type { ResourceDecl } from '../../lib/baseline/types.js';
import { accounts } from '../host/accounts.js';
import { fileType, lstatAt, mkdirAt, octal, permBits, rmdirAt, setMetadataAt } from '../host/fsops.js';
import type { BigIntStats } from 'node:fs';
import { closeFd, fsGuard, lstatAsync, openParentAsync } from '../host/fsguard.js';
import { MountHome } from '../host/mounts.js';
import { openParent, splitManaged, withParent, type HeldDir } from '../host/pathwalk.js';
import type { Change, HostContext, Resource, ResourceKind, StateSummary } from './resource.js';

export type DirectoryObserved = (
  | { kind: 'missing' }
  | { kind: 'present'; type: 'file' | 'directory' | 'symlink' | 'other'; mode: number; uid: number; gid: number }
) & {
  /** The device of the parent directory, when it exists. */
  parentDev?: bigint;
};

export class DirectoryResource implements Resource<DirectoryObserved> {
  readonly id: string;
  private readonly path: string;
  private readonly name: string;
  private readonly ensure: 'present' | 'absent';
  private readonly mode: number | undefined;
  private readonly owner: string | number | undefined;
  private readonly group: string | number | undefined;
  /**
   * The filesystem the parent directory was seen compliant on (shared with the folder's other managed paths): no repair
   * writes to another one where it went away.
   */
  private readonly home: MountHome;

  constructor(
    decl: ResourceDecl,
    private readonly host: HostContext,
  ) {
    const f = decl.fields;
    this.id = decl.id;
    this.path = decl.name;
    const { parents, name } = splitManaged(decl.name);
    this.name = name;
    this.home = MountHome.of(`/${parents.join('/')}`);
    this.ensure = f.ensure === 'absent' ? 'absent' : 'present';
    this.mode = typeof f.mode === 'string' ? parseInt(f.mode, 8) : undefined;
    this.owner = typeof f.owner === 'string' || typeof f.owner === 'number' ? f.owner : undefined;
    this.group = typeof f.group === 'string' || typeof f.group === 'number' ? f.group : undefined;
  }

  async observe(): Promise<DirectoryObserved> {
    let o: DirectoryObserved;
    const present = (st: BigIntStats | undefined, parentDev: bigint): DirectoryObserved =>
      st ? { kind: 'present', type: fileType(st), mode: permBits(st), uid: Number(st.uid), gid: Number(st.gid), parentDev } : { kind: 'missing', parentDev };
    try {
      // A filesystem that can hang (NFS, FUSE, ...) is read through the thread pool within a deadline (host/fsguard.ts).
      const remote = fsGuard.mounts.hanging(this.path);
      o = remote
        ? await fsGuard.run(remote, this.id, `reading ${this.path}`, async () => {
            const dir = await openParentAsync(splitManaged(this.path).parents, this.id);
            if (!dir) return { kind: 'missing' as const };
            try {
              return present(await lstatAsync(`/proc/self/fd/${dir.fd}/${this.name}`), dir.dev);
            } finally {
              await closeFd(dir.fd);
            }
          })
        : withParent(this.path, this.id, (dir) => (dir ? present(lstatAt(dir, this.name), dir.dev) : { kind: 'missing' }));
    } catch (err) {
      throw hostError(err, this.id, `reading ${this.path}`);
    }
    // The names diff and summarize will look up, resolved through NSS now if they are not known yet.
    await accounts.prepare({ owner: this.owner, group: this.group, ...(o.kind === 'missing' ? {} : { uid: o.uid, gid: o.gid }) });
    return o;
  }

  diff(o: DirectoryObserved): Change[] {
    if (this.ensure === 'absent') return o.kind === 'missing' ? [] : [{ field: 'exists', observed: true, desired: false }];
    if (o.kind === 'missing') return [{ field: 'exists', observed: false, desired: true }];
    if (o.type !== 'directory') return [{ field: 'type', observed: o.type, desired: 'directory' }];
    const changes: Change[] = [];
    if (this.mode !== undefined && o.mode !== this.mode) changes.push({ field: 'mode', observed: octal(o.mode), desired: octal(this.mode) });
    const uid = this.uid();
    if (uid !== undefined && o.uid !== uid) changes.push({ field: 'owner', observed: accounts.userName(o.uid), desired: String(this.owner) });
    const gid = this.gid();
    if (gid !== undefined && o.gid !== gid) changes.push({ field: 'group', observed: accounts.groupName(o.gid), desired: String(this.group) });
    return changes;
  }

  commit(o: DirectoryObserved): void {
    if (o.parentDev !== undefined) this.home.learn(o.parentDev);
  }

  async apply(o: DirectoryObserved): Promise<void> {
    const p = this.path;
    let dir: HeldDir | undefined;
    try {
      const remote = fsGuard.mounts.hanging(p);
      if (remote) fsGuard.refuseIfHung(remote, this.id, `repairing ${p}`);
      this.home.check(this.id);
      dir = openParent(p, this.id, this.ensure === 'present' ? { create: { mode: 0o755 } } : {});
      if (!dir) return; // absent, and so is its parent
      if (this.ensure === 'absent') {
        if (o.kind === 'missing') return;
        if (o.type !== 'directory') {
          throw new HsError('HS_HOST_IO', `a ${o.type} stands at ${p}; a directory resource only removes directories`, { resource: this.id });
        }
        // Only an empty directory is removed: deleting a tree by policy is too dangerous to do silently.
        try {
          rmdirAt(dir, this.name);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOTEMPTY' || code === 'EEXIST') {
            throw new HsError('HS_HOST_IO', `${p} is not empty; remove its contents or manage them as absent resources`, { resource: this.id, cause: err });
          }
          throw err;
        }
        return;
      }
      if (o.kind === 'present' && o.type !== 'directory') {
        throw new HsError('HS_HOST_IO', `a ${o.type} stands at ${p} where a directory is wanted; remove it by hand`, { resource: this.id });
      }
      if (o.kind === 'missing') {
        try {
          mkdirAt(dir, this.name, this.mode ?? 0o755);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // made by someone else meanwhile: set what is declared
        }
      }
      const uid = this.uid();
      const gid = this.gid();
      await setMetadataAt(dir, this.name, {
        ...(this.mode !== undefined ? { mode: this.mode } : {}),
        ...(uid !== undefined ? { uid } : {}),
        ...(gid !== undefined ? { gid } : {}),
      });
    } catch (err) {
      throw hostError(err, this.id, `repairing ${p}`);
    } finally {
      dir?.close();
    }
  }

  summarize(o: DirectoryObserved): StateSummary {
    if (o.kind === 'missing') return { exists: false };
    return { exists: true, type: o.type, mode: octal(o.mode), owner: accounts.userName(o.uid), group: accounts.groupName(o.gid) };
  }

  desired(): StateSummary {
    if (this.ensure === 'absent') return { exists: false };
    return {
      exists: true,
      type: 'directory',
      ...(this.mode !== undefined ? { mode: octal(this.mode) } : {}),
      ...(this.owner !== undefined ? { owner: String(this.owner) } : {}),
      ...(this.group !== undefined ? { group: String(this.group) } : {}),
    };
  }

  async watch(notify: (reason: string) => void): Promise<() => void> {
    return this.host.fsWatch.watchPath(this.path, notify);
  }

  private uid(): number | undefined {
    return this.owner === undefined ? undefined : accounts.uid(this.owner, this.id);
  }

  private gid(): number | undefined {
    return this.group === undefined ? undefined : accounts.gid(this.group, this.id);
  }
}

export const directoryKind: ResourceKind = {
  type: 'directory',
  create: (decl, host) => new DirectoryResource(decl, host),
};
