// The `file:` resource: content (inline or from a source file), mode, owner, group, present or absent. Read and repaired
// through its parent directory held open without following symlinks (host/pathwalk.ts); secret content never leaves the host.
import type { BigIntStats } from 'node:fs';
import { HsError, hostError } from '../../lib/errors.js';
import { unifiedDiff } from '../../lib/textdiff.js';
import type { ResourceDecl } from '../../lib/baseline/types.js';
import { accounts } from '../host/accounts.js';
import { ContentKey } from '../host/contentkey.js';
import {
  atomicWriteAt,
  NOATIME,
  fileType,
  lstatAt,
  octal,
  permBits,
  readAt,
  readlinkAt,
  refuseForeignHardLink,
  setMetadataAt,
  sha256,
  unlinkAt,
  type MetadataChange,
} from '../host/fsops.js';
import { closeFd, fsGuard, lstatAsync, openParentAsync, readAtAsync, readdirAsync, readlinkAsync } from '../host/fsguard.js';
import { MountHome } from '../host/mounts.js';
import { openParent, splitManaged, withParent, type HeldDir } from '../host/pathwalk.js';
import { isLeftover, isTempOf, TempFileIndex } from '../host/tempfiles.js';
import { runValidator } from '../host/validator.js';
import type { ApplyResult, Change, HostContext, Resource, ResourceKind, StateSummary } from './resource.js';

/** Replaced content larger than this is recorded by hash only. */
const KEEP_REPLACED_BYTES = 256 * 1024;
/**
 * A stat is remembered only once its ctime is older than the read by more than a timestamp tick (1–10 ms by kernel):
 * a write landing in the same tick as the read could leave size and times as they were, and then the journal would
 * vouch for content nobody verified. Younger files are read again next time, until they settle.
 */
const SETTLE_NS = 25_000_000n;

interface FileSpec {
  path: string;
  ensure: 'present' | 'absent';
  content: Buffer | undefined;
  sha256: string | undefined;
  mode: number | undefined;
  owner: string | number | undefined;
  group: string | number | undefined;
  /** The validate command's words, run without a shell. */
  validate: string[] | undefined;
  /** Content that never leaves the host: `secret: true`, or by default a mode that gives group and others no read. */
  secret: boolean;
}

interface FileState {
  stat: BigIntStats;
  sha256: string;
  mode: number;
  uid: number;
  gid: number;
  /** The content as read, when it differs from the desired content: for the diff and the local backup, never for records. */
  content?: Buffer;
  /** The content is secret (declared, or the file is not readable by others): records get `hmac`, never text or sha256. */
  private: boolean;
  hmac?: string;
  /** When the content was read (wall clock, ns), before its stat; absent when the journal vouched for it without a read. */
  readAtNs?: bigint;
}

export type FileObserved = (
  | { kind: 'missing' }
  | { kind: 'other'; type: 'directory' | 'symlink' | 'other'; mode: number; uid: number; gid: number; target?: string }
  | ({ kind: 'file' } & FileState)
) & {
  /** Temporary files an interrupted repair left next to the path (looked for at a resource's first observation). */
  leftovers: string[];
  /** The device of the parent directory, when it exists. */
  parentDev?: bigint;
};

/**
 * One Buffer (and one sha256 string) per distinct desired content across the agent's file resources: a host's 10,000
 * managed files often share a handful of contents. Entries go once no resource holds their bytes any more.
 */
class ContentTable {
  private readonly bySha = new Map<string, { bytes: WeakRef<Buffer>; sha256: string }>();
  private readonly gone = new FinalizationRegistry<string>((sha) => {
    if (this.bySha.get(sha)?.bytes.deref() === undefined) this.bySha.delete(sha);
  });

  intern(bytes: Buffer): { content: Buffer; sha256: string } {
    const sha = sha256(bytes);
    const entry = this.bySha.get(sha);
    const kept = entry?.bytes.deref();
    if (entry && kept) return { content: kept, sha256: entry.sha256 };
    this.bySha.set(sha, { bytes: new WeakRef(bytes), sha256: sha });
    this.gone.register(bytes, sha);
    return { content: bytes, sha256: sha };
  }
}

const contents = new ContentTable();

function readSpec(decl: ResourceDecl): FileSpec {
  const f = decl.fields;
  const raw = f.content;
  const bytes = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : Buffer.isBuffer(raw) ? raw : undefined;
  const desired = bytes ? contents.intern(bytes) : undefined;
  const mode = typeof f.mode === 'string' ? parseInt(f.mode, 8) : undefined;
  const validate = Array.isArray(f.validate) && f.validate.every((w) => typeof w === 'string') ? (f.validate as string[]) : undefined;
  return {
    path: decl.name,
    ensure: f.ensure === 'absent' ? 'absent' : 'present',
    content: desired?.content,
    sha256: desired?.sha256,
    mode,
    owner: typeof f.owner === 'string' || typeof f.owner === 'number' ? f.owner : undefined,
    group: typeof f.group === 'string' || typeof f.group === 'number' ? f.group : undefined,
    validate,
    secret: typeof f.secret === 'boolean' ? f.secret : mode !== undefined && (mode & 0o044) === 0,
  };
}

/** What the file kind shares across the agent's resources: the content key and the listing of temporary files. */
interface FileKindState {
  key: ContentKey | undefined;
  temps: TempFileIndex;
}

function kindState(host: HostContext): FileKindState {
  let s = host.adapters.get('file') as FileKindState | undefined;
  if (!s) {
    s = { key: undefined, temps: new TempFileIndex() };
    host.adapters.set('file', s);
  }
  return s;
}

const NONE: string[] = [];

export class FileResource implements Resource<FileObserved> {
  readonly id: string;
  private readonly spec: FileSpec;
  private readonly name: string;
  private desiredHmacCache: string | undefined;
  /** Set once an observation found no temporary files left by an earlier process: they cannot appear again. */
  private leftoversChecked = false;
  /**
   * The filesystem the parent directory was seen compliant on (shared with the folder's other managed paths): no repair
   * writes to another one where it went away.
   */
  private readonly home: MountHome;

  constructor(
    decl: ResourceDecl,
    private readonly host: HostContext,
  ) {
    this.id = decl.id;
    this.spec = readSpec(decl);
    const { parents, name } = splitManaged(this.spec.path);
    this.name = name;
    this.home = MountHome.of(`/${parents.join('/')}`);
  }

  async observe(): Promise<FileObserved> {
    const p = this.spec.path;
    let o: FileObserved;
    try {
      // A filesystem that can hang (NFS, FUSE, ...) is read through the thread pool within a deadline (host/fsguard.ts).
      const remote = fsGuard.mounts.hanging(p);
      o = remote
        ? await fsGuard.run(remote, this.id, `reading ${p}`, () => this.observeRemote())
        : withParent(p, this.id, (dir): FileObserved => {
            if (!dir) return { kind: 'missing', leftovers: NONE };
            const seen = this.observeIn(dir);
            seen.parentDev = dir.dev;
            return seen;
          });
    } catch (err) {
      throw hostError(err, this.id, `reading ${p}`);
    }
    // The names diff and summarize will look up, resolved through NSS now if they are not known yet.
    await accounts.prepare({ owner: this.spec.owner, group: this.spec.group, ...(o.kind === 'missing' ? {} : { uid: o.uid, gid: o.gid }) });
    return o;
  }

  private observeIn(dir: HeldDir): FileObserved {
    const leftovers = this.findLeftovers(dir);
    const st = lstatAt(dir, this.name);
    if (!st) return { kind: 'missing', leftovers };
    const type = fileType(st);
    if (type !== 'file') return this.other(type, st, type === 'symlink' ? readlinkAt(dir, this.name) : undefined, leftovers);
    const known = this.fromJournal(st, leftovers);
    if (known) return known;
    const readAtNs = BigInt(Date.now()) * 1_000_000n;
    let read: ReturnType<typeof readAt>;
    try {
      read = readAt(dir, this.name);
    } catch (err) {
      // Replaced by a symlink between the lstat and the open: report what is there now.
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
        const now = lstatAt(dir, this.name);
        return now ? this.other('symlink', now, readlinkAt(dir, this.name), leftovers) : { kind: 'missing', leftovers };
      }
      throw err;
    }
    if (!read) return { kind: 'missing', leftovers };
    return this.fromContent(read.content, read.stat, readAtNs, leftovers);
  }

  /** The same observation on a filesystem that can hang: every call through the thread pool, nothing kept open. */
  private async observeRemote(): Promise<FileObserved> {
    const dir = await openParentAsync(splitManaged(this.spec.path).parents, this.id);
    if (!dir) return { kind: 'missing', leftovers: NONE };
    try {
      const o = await this.observeRemoteIn(dir.fd);
      o.parentDev = dir.dev;
      return o;
    } finally {
      await closeFd(dir.fd);
    }
  }

  private async observeRemoteIn(dirFd: number): Promise<FileObserved> {
    const at = (n: string): string => `/proc/self/fd/${dirFd}/${n}`;
    let leftovers = NONE;
    if (!this.leftoversChecked) {
      const names = (await readdirAsync(dirFd)).filter((n) => isTempOf(n, this.name));
      const found: string[] = [];
      for (const n of names) if (isLeftover(await lstatAsync(at(n)))) found.push(n);
      if (found.length === 0) this.leftoversChecked = true;
      leftovers = found.length > 0 ? found : NONE;
    }
    const st = await lstatAsync(at(this.name));
    if (!st) return { kind: 'missing', leftovers };
    const type = fileType(st);
    if (type !== 'file') return this.other(type, st, type === 'symlink' ? await readlinkAsync(at(this.name)) : undefined, leftovers);
    const known = this.fromJournal(st, leftovers);
    if (known) return known;
    const readAtNs = BigInt(Date.now()) * 1_000_000n;
    let read: Awaited<ReturnType<typeof readAtAsync>>;
    try {
      read = await readAtAsync(dirFd, this.name, NOATIME);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
        const now = await lstatAsync(at(this.name));
        return now ? this.other('symlink', now, await readlinkAsync(at(this.name)), leftovers) : { kind: 'missing', leftovers };
      }
      throw err;
    }
    if (!read) return { kind: 'missing', leftovers };
    return this.fromContent(read.content, read.stat, readAtNs, leftovers);
  }

  /** Unchanged since the agent last verified it: the stat is proof enough (ctime cannot be set from userspace). */
  private fromJournal(st: BigIntStats, leftovers: string[]): FileObserved | undefined {
    const known = this.host.journal.knownHash(this.spec.path, st);
    if (known === undefined || (this.spec.sha256 !== undefined && known !== this.spec.sha256)) return undefined;
    const mode = permBits(st);
    const priv = this.isPrivate(mode);
    const hmac = priv && known === this.spec.sha256 ? this.desiredHmac() : undefined;
    return { kind: 'file', stat: st, sha256: known, mode, uid: Number(st.uid), gid: Number(st.gid), private: priv, ...(hmac ? { hmac } : {}), leftovers };
  }

  private fromContent(content: Buffer, stat: BigIntStats, readAtNs: bigint, leftovers: string[]): FileObserved {
    const readType = fileType(stat);
    if (readType !== 'file') return this.other(readType, stat, undefined, leftovers);
    const hash = sha256(content);
    const readMode = permBits(stat);
    const readPriv = this.isPrivate(readMode);
    return {
      kind: 'file',
      stat,
      sha256: hash,
      ...(hash === this.spec.sha256 ? {} : { content }),
      mode: readMode,
      uid: Number(stat.uid),
      gid: Number(stat.gid),
      private: readPriv,
      ...(readPriv ? { hmac: this.key().hash(content) } : {}),
      readAtNs,
      leftovers,
    };
  }

  /**
   * The engine hands back an observation it found compliant (directly, or verifying a repair): a settled file's stat and
   * hash go to the journal, so its next observation costs one lstat. Observation itself never writes anything.
   */
  commit(o: FileObserved): void {
    if (o.parentDev !== undefined) this.home.learn(o.parentDev);
    if (o.kind !== 'file' || o.readAtNs === undefined) return;
    if (o.stat.ctimeNs + SETTLE_NS > o.readAtNs) return;
    if (this.spec.sha256 !== undefined && o.sha256 !== this.spec.sha256) return;
    // The spec's own string when they are equal: 10,000 journal entries then share a handful of hashes.
    this.host.journal.record(this.spec.path, o.stat, this.spec.sha256 ?? o.sha256);
  }

  diff(o: FileObserved): Change[] {
    const s = this.spec;
    const changes: Change[] = [];
    if (o.leftovers.length > 0) changes.push({ field: 'leftovers', observed: o.leftovers.join(', '), desired: 'none' });
    if (s.ensure === 'absent') {
      if (o.kind !== 'missing') changes.push({ field: 'exists', observed: true, desired: false });
      return changes;
    }
    if (o.kind === 'missing') return [...changes, { field: 'exists', observed: false, desired: true }];
    if (o.kind === 'other') {
      return [...changes, { field: 'type', observed: o.type, desired: 'file', ...(o.target === undefined ? {} : { diff: `symlink to ${o.target}` }) }];
    }
    if (s.sha256 !== undefined && o.sha256 !== s.sha256) {
      if (o.private) {
        // No text, no plain hash: a keyed hash says "it changed" and lets an exception recognise the same drift again.
        changes.push({ field: 'content', observed: o.hmac ?? 'secret', desired: s.secret ? this.desiredHmac() : `sha256:${s.sha256}` });
      } else {
        const d = o.content && s.content ? unifiedDiff(s.path, o.content, s.content) : undefined;
        changes.push({ field: 'content', observed: `sha256:${o.sha256}`, desired: `sha256:${s.sha256}`, ...(d === undefined ? {} : { diff: d }) });
      }
    }
    if (s.mode !== undefined && o.mode !== s.mode) changes.push({ field: 'mode', observed: octal(o.mode), desired: octal(s.mode) });
    const uid = this.desiredUid();
    if (uid !== undefined && o.uid !== uid) changes.push({ field: 'owner', observed: accounts.userName(o.uid), desired: String(s.owner) });
    const gid = this.desiredGid();
    if (gid !== undefined && o.gid !== gid) changes.push({ field: 'group', observed: accounts.groupName(o.gid), desired: String(s.group) });
    return changes;
  }

  async apply(o: FileObserved, changes: Change[]): Promise<ApplyResult | void> {
    const s = this.spec;
    const p = s.path;
    let dir: HeldDir | undefined;
    try {
      // The observation just before went through the guard; a filesystem found hung since is not written to.
      const remote = fsGuard.mounts.hanging(p);
      if (remote) fsGuard.refuseIfHung(remote, this.id, `repairing ${p}`);
      this.home.check(this.id);
      dir = openParent(p, this.id, s.ensure === 'present' ? { create: { mode: 0o755 } } : {});
      if (!dir) return; // absent and its folder is gone: nothing to remove
      this.removeLeftovers(dir, o.leftovers);
      if (s.ensure === 'absent') {
        if (o.kind === 'missing') return;
        if (o.kind === 'other' && o.type === 'directory') {
          throw new HsError('HS_HOST_IO', `a directory stands at ${p}; refusing to remove a directory for a file resource`, { resource: this.id });
        }
        const replaced = o.kind === 'file' ? this.keepReplaced(dir, o) : undefined;
        unlinkAt(dir, this.name);
        this.host.journal.forget(p);
        return replaced ? { replaced } : undefined;
      }
      if (o.kind === 'other' && o.type === 'directory') {
        throw new HsError('HS_HOST_IO', `a directory stands at ${p} where a file is wanted; remove it by hand`, { resource: this.id });
      }
      const meta = changes.some((c) => c.field === 'mode' || c.field === 'owner' || c.field === 'group');
      let rewrite = changes.some((c) => c.field === 'content' || c.field === 'exists' || c.field === 'type');
      // Metadata the baseline leaves open keeps its current value (or a safe default for a new file).
      const mode = s.mode ?? (o.kind === 'file' ? o.mode : 0o644);
      const wantUid = this.desiredUid();
      const wantGid = this.desiredGid();
      const uid = wantUid ?? (o.kind === 'file' ? o.uid : 0);
      const gid = wantGid ?? (o.kind === 'file' ? o.gid : 0);
      if (!rewrite && meta && (mode & 0o6000) !== 0 && dir.writableByOthers()) {
        // setuid/setgid on a file others could have put there (and still hold open) would hand them its privileges:
        // install a fresh copy of the declared content instead, or refuse when the content is not declared.
        if (!s.content) {
          throw new HsError('HS_HOST_UNSAFE_PATH', `${p} should be setuid/setgid, but ${dir.path} is writable by others than root and the file's content is not declared: its mode is not changed in place`, { resource: this.id, retryable: false });
        }
        rewrite = true;
      }
      if (rewrite) {
        const content = s.content ?? (o.kind === 'file' ? undefined : Buffer.alloc(0));
        if (content !== undefined) {
          const replaced = o.kind === 'file' ? this.keepReplaced(dir, o) : undefined;
          const validate = s.validate;
          await atomicWriteAt(dir, this.name, { content, mode, uid, gid, ...(validate ? { validate: (tmp) => runValidator(validate, tmp, this.id) } : {}) });
          return replaced ? { replaced } : undefined;
        }
        // no desired content and the file exists: only metadata is managed
      }
      if (!meta) return;
      const change: MetadataChange = {
        ...(s.mode !== undefined ? { mode: s.mode } : {}),
        ...(wantUid !== undefined ? { uid } : {}),
        ...(wantGid !== undefined ? { gid } : {}),
      };
      await setMetadataAt(dir, this.name, change, refuseForeignHardLink(dir, this.name, this.id));
    } catch (err) {
      throw hostError(err, this.id, `repairing ${p}`);
    } finally {
      dir?.close();
    }
  }

  summarize(o: FileObserved): StateSummary {
    const left = o.leftovers.length > 0 ? { leftovers: o.leftovers } : {};
    if (o.kind === 'missing') return { exists: false, ...left };
    if (o.kind === 'other') {
      return { exists: true, type: o.type, mode: octal(o.mode), owner: accounts.userName(o.uid), group: accounts.groupName(o.gid), ...(o.target ? { target: o.target } : {}), ...left };
    }
    const content = o.private ? { secret: true, ...(o.hmac ? { hmac: o.hmac } : {}) } : { sha256: o.sha256 };
    return { exists: true, type: 'file', ...content, size: Number(o.stat.size), mode: octal(o.mode), owner: accounts.userName(o.uid), group: accounts.groupName(o.gid), ...left };
  }

  desired(): StateSummary {
    const s = this.spec;
    if (s.ensure === 'absent') return { exists: false };
    const content = s.content === undefined ? {} : s.secret ? { secret: true, hmac: this.desiredHmac(), size: s.content.length } : { sha256: s.sha256, size: s.content.length };
    return {
      exists: true,
      type: 'file',
      ...content,
      ...(s.mode !== undefined ? { mode: octal(s.mode) } : {}),
      ...(s.owner !== undefined ? { owner: String(s.owner) } : {}),
      ...(s.group !== undefined ? { group: String(s.group) } : {}),
    };
  }

  async watch(notify: (reason: string) => void): Promise<() => void> {
    return this.host.fsWatch.watchPath(this.spec.path, notify);
  }

  /** Content others cannot read, or declared secret, is secret to the records too. */
  private isPrivate(mode: number): boolean {
    return this.spec.secret || (mode & 0o004) === 0;
  }

  private key(): ContentKey {
    const state = kindState(this.host);
    state.key ??= ContentKey.forStateDir(this.host.settings.stateDir);
    return state.key;
  }

  private desiredHmac(): string {
    this.desiredHmacCache ??= this.key().hash(this.spec.content ?? Buffer.alloc(0));
    return this.desiredHmacCache;
  }

  private findLeftovers(dir: HeldDir): string[] {
    if (this.leftoversChecked) return NONE;
    const found = kindState(this.host)
      .temps.candidates(dir, this.name)
      .filter((n) => isLeftover(lstatAt(dir, n)));
    if (found.length === 0) this.leftoversChecked = true;
    return found;
  }

  private removeLeftovers(dir: HeldDir, names: string[]): void {
    for (const n of names) {
      // Checked again right before: only our own pattern, a regular root-owned file with no other link.
      if (!isTempOf(n, this.name) || !isLeftover(lstatAt(dir, n))) continue;
      try {
        unlinkAt(dir, n);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }

  private other(type: 'directory' | 'symlink' | 'other', st: BigIntStats, target: string | undefined, leftovers: string[]): FileObserved {
    return { kind: 'other', type, mode: permBits(st), uid: Number(st.uid), gid: Number(st.gid), ...(target === undefined ? {} : { target }), leftovers };
  }

  private desiredUid(): number | undefined {
    return this.spec.owner === undefined ? undefined : accounts.uid(this.spec.owner, this.id);
  }

  private desiredGid(): number | undefined {
    return this.spec.group === undefined ? undefined : accounts.gid(this.spec.group, this.id);
  }

  /** The content being replaced, for the local backup (kept in the agent's database, never sent anywhere). */
  private keepReplaced(dir: HeldDir, o: Extract<FileObserved, { kind: 'file' }>): Buffer | undefined {
    if (o.content) return o.content.length <= KEEP_REPLACED_BYTES ? o.content : undefined;
    if (Number(o.stat.size) > KEEP_REPLACED_BYTES) return undefined;
    try {
      return readAt(dir, this.name)?.content;
    } catch {
      return undefined;
    }
  }
}

export const fileKind: ResourceKind = {
  type: 'file',
  create: (decl, host) => new FileResource(decl, host),
};
