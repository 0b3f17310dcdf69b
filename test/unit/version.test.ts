// The version the three CLIs print is the package's, and the tests run on the one runtime the project pins and ships.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { VERSION, versionLine } from '../../lib/version.js';

const read = <T>(rel: string): T => JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as T;
const pkg = read<{ version: string; engines: { node: string }; devDependencies: Record<string, string>; dependencies: Record<string, string> }>('../../../package.json');

describe('version', () => {
  it('lib/version.ts says what package.json says', () => {
    assert.equal(VERSION, pkg.version);
  });

  it('--version names the product, the runtime and the SQLite binding', () => {
    const sqlite = read<{ version: string }>('../../../node_modules/better-sqlite3/package.json').version;
    assert.equal(versionLine(), `${VERSION} (node ${process.version}, better-sqlite3 ${sqlite})`);
  });

  it('runs on exactly the Node.js that package.json pins (engines and the `node` package npm brings), whatever the machine has', () => {
    assert.equal(pkg.devDependencies.node, pkg.engines.node, 'one exact version, stated once for npm and once for people');
    assert.equal(process.version, `v${pkg.engines.node}`);
    assert.equal(process.versions.modules, '137', 'Node 24 ABI');
  });
});
