// The `file:` resource: content (inline or from a source file), mode, owner, group, present or absent; repaired atomically.
import { promises as fsp, readlinkSync, type BigIntStats } from 'node:fs';
import { execFile } from 'node:child_process';
import { HsError, hostError } from '../../lib/errors.js';
import { unifiedDiff } from '../../lib/textdiff.js';
import type { ResourceDecl } from '../../lib/baseline/types.js';
import { accounts } from '../host/accounts.js';
import { atomicWrite, fileType, lstatSyncOrUndefined, octal, permBits, readNoFollowSync, setMetadata, sha256 } from '../host/fsops.js';
import type { ApplyResult, Change, HostContext, Resource, ResourceKind, StateSummary } from './resource.js';

/** Replaced content larger than this is recorded by hash only. */
const KEEP_REPLACED_BYTES = 256 * 1024;
const VALIDATE_TIMEOUT_MS = 30_000;

interface FileSpec {
  path: string;
  ensure: 'present' | 'absent';
  content: Buffer | undefined;
  sha256: string | undefined;
  mode: number | undefined;
  owner: string | number | undefined;
  group: string | number | undefined;
  validate: string | undefined;
}

export type FileObserved =
  | { kind: 'missing' }
  | { kind: 'other'; type: 'directory' | 'symlink' | 'other'; mode: number; uid: number; gid: number; target?: string }
  | { kind: 'file'; stat: BigIntStats; sha256: string; content?: Buffer; mode: number; uid: number; gid: number };

function readSpec(decl: ResourceDecl): FileSpec {
  const f = decl.fields;
  const raw = f.content;
  const content = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : Buffer.isBuffer(raw) ? raw : undefined;
  const mode = typeof f.mode === 'string' ? parseInt(f.mode, 8) : undefined;
  return {
    path: decl.name,
    ensure: f.ensure === 'absent' ? 'absent' : 'present',
    content,
    sha256: content ? sha256(content) : undefined,
    mode,
    owner: typeof f.owner === 'string' || typeof f.owner === 'number' ? f.owner : undefined,
    group: typeof f.group === 'string' || typeof f.group === 'number' ? f.group : undefined,
    validate: typeof f.validate === 'string' ? f.validate : undefined,
  };
}

export class FileResource implements Resource<FileObserved> {
  readonly id: string;
  private readonly spec: FileSpec;

  constructor(
    readonly decl: ResourceDecl,
    private readonly host: HostContext,
  ) {
    this.id = decl.id;
    this.spec = readSpec(decl);
  }

  async observe(): Promise<FileObserved> {
    const p = this.spec.path;
    try {
      const st = lstatSyncOrUndefined(p);
      if (!st) return { kind: 'missing' };
      const type = fileType(st);
      if (type !== 'file') return this.other(type, st);
      // Unchanged since the agent last wrote or verified it: the stat is proof enough (ctime cannot be set from userspace).
      const known = this.host.journal.knownHash(p, st);
      if (known !== undefined && (this.spec.sha256 === undefined || known === this.spec.sha256)) {
        return { kind: 'file', stat: st, sha256: known, mode: permBits(st), uid: Number(st.uid), gid: Number(st.gid) };
      }
      const read = readNoFollowSync(p);
      // Replaced or removed between the lstat and the open: the next event or the verify will look again.
      if (!read) return { kind: 'missing' };
      const { content, stat } = read;
      const readType = fileType(stat);
      if (readType !== 'file') return this.other(readType, stat);
      const hash = sha256(content);
      const compliantContent = hash === this.spec.sha256;
      if (compliantContent || this.spec.content === undefined) this.host.journal.record(p, stat, hash);
      return {
        kind: 'file',
        stat,
        sha256: hash,
        ...(compliantContent ? {} : { content }),
        mode: permBits(stat),
        uid: Number(stat.uid),
        gid: Number(stat.gid),
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') return this.other('symlink', lstatSyncOrUndefined(p));
      throw hostError(err, this.id, `reading ${p}`);
    }
  }

  diff(o: FileObserved): Change[] {
    const s = this.spec;
    if (s.ensure === 'absent') return o.kind === 'missing' ? [] : [{ field: 'exists', observed: true, desired: false }];
    if (o.kind === 'missing') return [{ field: 'exists', observed: false, desired: true }];
    if (o.kind === 'other') {
      return [{ field: 'type', observed: o.type, desired: 'file', ...(o.target === undefined ? {} : { diff: `symlink to ${o.target}` }) }];
    }
    const changes: Change[] = [];
    if (s.sha256 !== undefined && o.sha256 !== s.sha256) {
      const d = o.content && s.content ? unifiedDiff(s.path, o.content, s.content) : undefined;
      changes.push({ field: 'content', observed: `sha256:${o.sha256}`, desired: `sha256:${s.sha256}`, ...(d === undefined ? {} : { diff: d }) });
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
    try {
      if (s.ensure === 'absent') {
        if (o.kind === 'other' && o.type === 'directory') {
          throw new HsError('HS_HOST_IO', `a directory stands at ${p}; refusing to remove a directory for a file resource`, { resource: this.id });
        }
        const replaced = o.kind === 'file' ? await this.keepReplaced(o) : undefined;
        await fsp.unlink(p);
        this.host.journal.forget(p);
        return replaced ? { replaced } : undefined;
      }
      if (o.kind === 'other' && o.type === 'directory') {
        throw new HsError('HS_HOST_IO', `a directory stands at ${p} where a file is wanted; remove it by hand`, { resource: this.id });
      }
      const rewrite = changes.some((c) => c.field === 'content' || c.field === 'exists' || c.field === 'type');
      // Metadata the baseline leaves open keeps its current value (or a safe default for a new file).
      const mode = s.mode ?? (o.kind === 'file' ? o.mode : 0o644);
      const wantUid = this.desiredUid();
      const wantGid = this.desiredGid();
      const uid = wantUid ?? (o.kind === 'file' ? o.uid : 0);
      const gid = wantGid ?? (o.kind === 'file' ? o.gid : 0);
      if (rewrite) {
        const content = s.content ?? (o.kind === 'file' ? undefined : Buffer.alloc(0));
        if (content === undefined) return; // no desired content and the file exists: only metadata is managed
        const replaced = o.kind === 'file' ? await this.keepReplaced(o) : undefined;
        const stat = await atomicWrite(p, { content, mode, uid, gid, ...(s.validate ? { validate: (tmp) => this.runValidate(tmp) } : {}) });
        this.host.journal.record(p, stat, sha256(content));
        return replaced ? { replaced } : undefined;
      }
      const stat = await setMetadata(p, {
        ...(s.mode !== undefined ? { mode: s.mode } : {}),
        ...(wantUid !== undefined ? { uid } : {}),
        ...(wantGid !== undefined ? { gid } : {}),
      });
      if (o.kind === 'file') this.host.journal.record(p, stat, o.sha256);
    } catch (err) {
      throw hostError(err, this.id, `repairing ${p}`);
    }
  }

  summarize(o: FileObserved): StateSummary {
    if (o.kind === 'missing') return { exists: false };
    if (o.kind === 'other') return { exists: true, type: o.type, mode: octal(o.mode), owner: accounts.userName(o.uid), group: accounts.groupName(o.gid), ...(o.target ? { target: o.target } : {}) };
    return { exists: true, type: 'file', sha256: o.sha256, size: Number(o.stat.size), mode: octal(o.mode), owner: accounts.userName(o.uid), group: accounts.groupName(o.gid) };
  }

  desired(): StateSummary {
    const s = this.spec;
    if (s.ensure === 'absent') return { exists: false };
    return {
      exists: true,
      type: 'file',
      ...(s.sha256 ? { sha256: s.sha256, size: s.content?.length } : {}),
      ...(s.mode !== undefined ? { mode: octal(s.mode) } : {}),
      ...(s.owner !== undefined ? { owner: String(s.owner) } : {}),
      ...(s.group !== undefined ? { group: String(s.group) } : {}),
    };
  }

  async watch(notify: (reason: string) => void): Promise<() => void> {
    return this.host.fsWatch.watchPath(this.spec.path, notify);
  }

  private other(type: 'directory' | 'symlink' | 'other', st: BigIntStats | undefined): FileObserved {
    if (!st) return { kind: 'missing' };
    const target = type === 'symlink' ? readlinkOrUndefined(this.spec.path) : undefined;
    return { kind: 'other', type, mode: permBits(st), uid: Number(st.uid), gid: Number(st.gid), ...(target === undefined ? {} : { target }) };
  }

  private desiredUid(): number | undefined {
    return this.spec.owner === undefined ? undefined : accounts.uid(this.spec.owner, this.id);
  }

  private desiredGid(): number | undefined {
    return this.spec.group === undefined ? undefined : accounts.gid(this.spec.group, this.id);
  }

  private async keepReplaced(o: Extract<FileObserved, { kind: 'file' }>): Promise<Buffer | undefined> {
    if (o.content) return o.content.length <= KEEP_REPLACED_BYTES ? o.content : undefined;
    if (Number(o.stat.size) > KEEP_REPLACED_BYTES) return undefined;
    try {
      return readNoFollowSync(this.spec.path)?.content;
    } catch {
      return undefined;
    }
  }

  /** Runs the baseline's validate command with `%s` replaced by the candidate file; a non-zero exit refuses the content. */
  private runValidate(tmp: string): Promise<void> {
    const cmd = (this.spec.validate ?? '').replaceAll('%s', `'${tmp.replaceAll("'", "'\\''")}'`);
    return new Promise((resolve, reject) => {
      execFile('/bin/sh', ['-c', cmd], { timeout: VALIDATE_TIMEOUT_MS, maxBuffer: 64 * 1024 }, (err, stdout, stderr) => {
        if (!err) return resolve();
        const output = `${stdout}${stderr}`.trim().slice(0, 4096);
        reject(new HsError('HS_VALIDATE_REJECTED', `validate command refused the new content: ${this.spec.validate} exited ${String((err as { code?: unknown }).code ?? err.message)}${output ? `: ${output}` : ''}`, { resource: this.id, retryable: false, cause: err }));
      });
    });
  }
}

export const fileKind: ResourceKind = {
  type: 'file',
  create: (decl, host) => new FileResource(decl, host),
};

function readlinkOrUndefined(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined;
  }
}
