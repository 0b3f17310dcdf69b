// Finds the better-sqlite3 addon to load: in a single executable, the embedded copy extracted once to a content-addressed cache dir; under plain node, none (better-sqlite3 finds its own build).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as sea from 'node:sea';
import { HsError } from './errors.js';

/** Asset names the packaging build embeds (packaging/build.sh writes the same names into the SEA config). */
export const SQLITE_ASSET = 'better_sqlite3.node';
/** sha256 of the addon, hex, computed at build time so a warm start never reads the 2 MB asset. */
export const SQLITE_ASSET_DIGEST = 'better_sqlite3.node.sha256';

let cached: { binding: string | object | undefined } | undefined;

/**
 * The better-sqlite3 native binding to pass as `nativeBinding`: the loaded addon object inside a
 * single executable, `undefined` under plain node. Loaded once per process.
 */
export function sqliteNativeBinding(): string | object | undefined {
  if (cached === undefined) cached = { binding: sea.isSea() ? loadEmbedded() : undefined };
  return cached.binding;
}

function loadEmbedded(): object {
  const digest = assetDigest();
  const failures: string[] = [];
  for (const root of cacheRoots()) {
    try {
      const file = extract(root, digest);
      return dlopen(file);
    } catch (err) {
      // A read-only or noexec dir (dlopen: "failed to map segment") is why there are fallbacks.
      failures.push(`${root}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  throw new HsError('HS_STORE', `cannot load the embedded SQLite addon; set HOMEOSTAT_CACHE_DIR to a writable, exec-mounted dir (${failures.join('; ')})`, {
    retryable: false,
  });
}

function assetDigest(): string {
  try {
    const text = sea.getAsset(SQLITE_ASSET_DIGEST, 'utf8').trim();
    if (/^[0-9a-f]{64}$/.test(text)) return text;
  } catch {
    // An older build without the digest asset: hash the addon itself.
  }
  return createHash('sha256').update(new Uint8Array(sea.getRawAsset(SQLITE_ASSET) as ArrayBuffer)).digest('hex');
}

/** Candidate cache roots, most specific first. systemd's CacheDirectory= sets CACHE_DIRECTORY. */
export function cacheRoots(env: NodeJS.ProcessEnv = process.env): string[] {
  const roots: string[] = [];
  if (env.HOMEOSTAT_CACHE_DIR) roots.push(env.HOMEOSTAT_CACHE_DIR);
  const systemd = env.CACHE_DIRECTORY?.split(':')[0];
  if (systemd) roots.push(systemd);
  if (env.XDG_CACHE_HOME) roots.push(path.join(env.XDG_CACHE_HOME, 'homeostat'));
  if (env.HOME) roots.push(path.join(env.HOME, '.cache', 'homeostat'));
  if (process.getuid?.() === 0) roots.push('/var/cache/homeostat');
  roots.push(path.join(os.tmpdir(), `homeostat-${process.getuid?.() ?? 'user'}`));
  return [...new Set(roots)];
}

/** Writes the addon to ROOT/native/DIGEST/ unless a sound copy is there already; returns its path. */
function extract(root: string, digest: string): string {
  const dir = path.join(root, 'native', digest.slice(0, 32));
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  ownedPrivate(dir);
  const file = path.join(dir, SQLITE_ASSET);
  const raw = sea.getRawAsset(SQLITE_ASSET) as ArrayBuffer;
  if (soundCopy(file, raw.byteLength)) return file;
  // Write aside and rename, so a crash or a concurrent start never leaves a half-written addon to dlopen.
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.rmSync(tmp, { force: true });
    fs.writeFileSync(tmp, new Uint8Array(raw), { mode: 0o500, flag: 'w' });
    fs.renameSync(tmp, file);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return file;
}

/** Whoever can write the addon controls the agent: accept only a dir we own that nobody else can enter. */
function ownedPrivate(dir: string): void {
  const st = fs.lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o077) !== 0) {
    throw new Error(`${dir} is not a private directory owned by uid ${uid ?? '?'}`);
  }
}

function soundCopy(file: string, size: number): boolean {
  try {
    const st = fs.lstatSync(file);
    return st.isFile() && st.size === size && st.uid === (process.getuid?.() ?? st.uid) && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

function dlopen(file: string): object {
  const mod: { exports: object } = { exports: {} };
  process.dlopen(mod, file, os.constants.dlopen.RTLD_NOW);
  return mod.exports;
}
