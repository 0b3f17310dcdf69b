// The version both binaries print is the package's.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { VERSION } from '../../lib/version.js';

describe('version', () => {
  it('lib/version.ts says what package.json says', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(VERSION, pkg.version);
  });
});
