// The product version shared by the three CLIs, and what `--version` prints: the version and the runtime under it. A test keeps VERSION equal to package.json's.
import sqlitePackage from 'better-sqlite3/package.json' with { type: 'json' };

export const VERSION = '0.1.0';

/** `0.1.0 (node v24.21.0, better-sqlite3 13.2.0)`: the runtime that is actually running, and the SQLite binding bundled with it. */
export function versionLine(): string {
  return `${VERSION} (node ${process.version}, better-sqlite3 ${sqlitePackage.version})`;
}
