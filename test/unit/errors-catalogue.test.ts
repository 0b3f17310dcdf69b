// Keeps docs/errors.md and ERROR_CODES in lib/errors.ts in step: every code documented, nothing documented that does not exist.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_CODES } from '../../lib/errors.js';

// dist/test/unit → repository root
const DOC = new URL('../../../docs/errors.md', import.meta.url);

interface Row {
  code: string;
  meaning: string;
  action: string;
}

function rows(markdown: string): Row[] {
  const out: Row[] = [];
  for (const line of markdown.split('\n')) {
    const m = /^\|\s*`(HS_[A-Z_]+)`\s*\|(.*)\|(.*)\|\s*$/.exec(line);
    if (m) out.push({ code: m[1] as string, meaning: (m[2] as string).trim(), action: (m[3] as string).trim() });
  }
  return out;
}

describe('error catalogue (docs/errors.md)', () => {
  const documented = rows(readFileSync(DOC, 'utf8'));
  const codes = Object.keys(ERROR_CODES);

  it('documents every code in ERROR_CODES', () => {
    const missing = codes.filter((c) => !documented.some((r) => r.code === c));
    assert.deepEqual(missing, [], `add a row to docs/errors.md for: ${missing.join(', ')}`);
  });

  it('documents no code that ERROR_CODES lacks', () => {
    const extra = documented.map((r) => r.code).filter((c) => !codes.includes(c));
    assert.deepEqual(extra, [], `docs/errors.md lists codes that do not exist: ${extra.join(', ')}`);
  });

  it('documents each code once, with a meaning and what to do', () => {
    const seen = new Set<string>();
    for (const r of documented) {
      assert.ok(!seen.has(r.code), `${r.code} is listed twice`);
      seen.add(r.code);
      assert.ok(r.meaning.length > 10, `${r.code} needs a meaning`);
      assert.ok(r.action.length > 10, `${r.code} needs a "what to do"`);
    }
  });
});
