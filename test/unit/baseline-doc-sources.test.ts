// Signed baseline documents whose source files are named like inherited properties (`__proto__`, `constructor`,
// `toString`): decoded with those names as keys of their own, never as a prototype, so the agent activates such a
// baseline, the controller renews its signature without losing a file, and a cached copy loads after a restart.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cachedBaselines } from '../../agent/daemon.js';
import { materialize } from '../../agent/link/assignments.js';
import { AgentStore } from '../../agent/store/store.js';
import { parseBaseline } from '../../lib/baseline/index.js';
import { sourcesFromMap } from '../../lib/baseline/sources.js';
import { silentLogger, type Logger } from '../../lib/log.js';
import { decodeBaselineDoc, encodeBaselineDoc, type BaselineDoc } from '../../proto/codec.js';

const NAMES = ['__proto__', 'constructor', 'toString'] as const;
const bytesOf = (name: string): Buffer => Buffer.from(`the file named ${name}\n`);
const yaml = `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: odd-names
spec:
  resources:
${NAMES.map((n, i) => `    - file: /srv/odd/f${i}\n      source: ${n}\n`).join('')}`;

/** The document a controller signs for this baseline. */
function signedDoc(): BaselineDoc {
  const files: Record<string, Buffer> = Object.fromEntries(NAMES.map((n) => [n, bytesOf(n)]));
  const b = parseBaseline(yaml, { file: 'odd-names.yaml', readSource: sourcesFromMap(files, (rel) => `no ${rel}`) });
  return { name: b.name, version: 1, sha256: b.origin.sha256, yaml, sources: files, file: 'odd-names.yaml', issuedAt: 1, expiresAt: 2, rollback: false };
}

const contentOf = (resources: { name: string; fields: Record<string, unknown> }[]): string[] =>
  resources.map((r) => `${r.name}: ${Buffer.from(r.fields.content as Uint8Array).toString()}`);
const expected = NAMES.map((n, i) => `/srv/odd/f${i}: ${bytesOf(n).toString()}`);

describe('signed baseline documents with sources named like inherited properties', () => {
  it('decodes each such name as a key of its own, with the map’s prototype untouched', () => {
    const doc = decodeBaselineDoc(encodeBaselineDoc(signedDoc()));
    assert.equal(Object.getPrototypeOf(doc.sources), Object.prototype);
    assert.deepEqual(Object.keys(doc.sources).sort(), [...NAMES].sort());
    for (const n of NAMES) assert.ok(Object.hasOwn(doc.sources, n) && Buffer.from(doc.sources[n] ?? []).equals(bytesOf(n)), n);
  });

  it('activates from the document, and a renewed signature (decoded, re-encoded) keeps every file', () => {
    const decoded = decodeBaselineDoc(encodeBaselineDoc(signedDoc()));
    assert.deepEqual(contentOf(materialize(decoded).resources), expected);
    // What the controller does to renew a signature: decode the stored payload, change the times, encode again.
    const renewed = decodeBaselineDoc(encodeBaselineDoc({ ...decoded, issuedAt: 3, expiresAt: 4 }));
    assert.deepEqual(contentOf(materialize(renewed).resources), expected);
  });

  it('loads a cached copy by its own files only: a missing one named like a property is an error naming it', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hs-doc-sources-'));
    const store = AgentStore.open(dir);
    const errors: string[] = [];
    const log = { ...silentLogger, error: (f: { err?: string }, m: string) => errors.push(`${m}: ${f.err ?? ''}`) } as unknown as Logger;
    try {
      const b = materialize(decodeBaselineDoc(encodeBaselineDoc(signedDoc())));
      store.putBaseline({ name: b.name, sha256: b.origin.sha256, text: b.origin.text, sources: b.origin.sources, origin: 'controller', version: 1 });
      store.activate('controller', undefined, b.name, 1);
      assert.deepEqual(contentOf(cachedBaselines(store, log).controller.baselines[0]?.resources ?? []), expected);

      // A cached version whose map lacks a file it names (`valueOf`, which every object inherits): not enforced, and the
      // log names the missing file.
      const text = `${yaml}    - file: /srv/odd/f3\n      source: valueOf\n`;
      store.putBaseline({ name: b.name, sha256: 'f'.repeat(64), text, sources: b.origin.sources, origin: 'controller', version: 2 });
      store.activate('controller', undefined, b.name, 2);
      assert.deepEqual(cachedBaselines(store, log).controller.baselines, []);
      assert.equal(errors.length, 1);
      assert.match(errors[0] ?? '', /^cached baseline unreadable; not enforced: cache:odd-names@2:14:15: source file valueOf is not among the files sent with cache:odd-names@2 .*\[HS_BASELINE_SOURCE\]$/);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
