// The path journal never hides drift: a write landing between the agent's rename and what it remembers, or between its
// observation and a mode repair, is found by the verify and repaired; observing writes nothing, committing does.
import assert from 'node:assert/strict';
import fs, { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Engine, type ManagedResource } from '../../agent/engine/engine.js';
import { Journal } from '../../agent/engine/journal.js';
import type { HostContext } from '../../agent/resources/resource.js';
import type { AuditEntry } from '../../agent/store/types.js';
import { ManualClock } from '../../lib/clock.js';
import { silentLogger } from '../../lib/log.js';
import { tempDir } from '../helpers/agent.js';
import { createResource, testDecl, testHost } from '../helpers/resource-runner.js';

const DESIRED = 'listen = 8080\n';
const TAMPERED = 'listen = 6666\n'; // same size: only the content differs

async function engineFor(host: HostContext, clock: ManualClock, target: string): Promise<{ engine: Engine; events: AuditEntry[] }> {
  const engine = new Engine({ host, clock, log: silentLogger });
  const events: AuditEntry[] = [];
  engine.onAudit((e) => events.push(e));
  const managed: ManagedResource = { decl: testDecl('file', target, { ensure: 'present', content: DESIRED, mode: '0644' }), baseline: { name: 't', version: 1 } };
  await engine.setResources([managed]);
  return { engine, events };
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 60)); // older than a timestamp tick, so it may be remembered

describe('the path journal never hides drift', () => {
  let t: { dir: string; cleanup: () => void };
  let target: string;
  let journal: Journal;
  let host: HostContext;
  const realRename = fs.promises.rename;
  const realOpen = fs.promises.open;

  beforeEach(() => {
    t = tempDir('hs-journal-');
    target = path.join(t.dir, 'app.conf');
    journal = new Journal(undefined);
    host = { ...testHost({ stateDir: path.join(t.dir, 'state') }), journal };
  });
  afterEach(() => {
    fs.promises.rename = realRename;
    fs.promises.open = realOpen;
    t.cleanup();
  });

  it('finds a write that lands right after the repair renamed the new file into place, and repairs it', async () => {
    writeFileSync(target, 'old\n');
    const clock = new ManualClock(Date.now());
    const { engine, events } = await engineFor(host, clock, target);
    let tampered = 0;
    // The window between the agent's rename and anything it does next: another writer rewrites the new file in place.
    fs.promises.rename = async (from: fs.PathLike, to: fs.PathLike): Promise<void> => {
      await realRename(from, to);
      if (tampered === 0 && String(to).endsWith('/app.conf')) {
        tampered++;
        writeFileSync(target, TAMPERED);
      }
    };
    await engine.converge('manual');
    fs.promises.rename = realRename;
    assert.equal(tampered, 1, 'the write landed in the window');
    assert.equal(readFileSync(target, 'utf8'), TAMPERED);
    // Whatever the first pass concluded, the next ones must see the tampered content and put the desired one back.
    for (let i = 0; i < 3 && readFileSync(target, 'utf8') !== DESIRED; i++) {
      clock.advance(3_600_000); // past any retry backoff
      await engine.converge('manual');
    }
    assert.equal(readFileSync(target, 'utf8'), DESIRED, `the tampered content was masked; events: ${events.map((e) => `${e.event}:${e.detail ?? ''}`).join(' | ')}`);
    await settle();
    await engine.converge('manual');
    assert.equal(engine.results()[0]?.outcome, 'kept');
    await engine.stop();
  });

  it('finds a write that lands between the observation and a mode repair, and repairs it', async () => {
    writeFileSync(target, DESIRED);
    chmodSync(target, 0o644);
    await settle();
    const r = createResource(testDecl('file', target, { ensure: 'present', content: DESIRED, mode: '0644' }), host);
    const first = await r.observe();
    assert.deepEqual(r.diff(first), []);
    r.commit?.(first); // the engine's record of a settled, verified file
    chmodSync(target, 0o600);
    const o = await r.observe();
    const changes = r.diff(o);
    assert.deepEqual(changes.map((c) => c.field), ['mode']);
    writeFileSync(target, TAMPERED); // lands after the observation, before the repair: same size, mode still wrong
    await r.apply(o, changes);
    assert.equal(statSync(target).mode & 0o777, 0o644);
    const after = await r.observe();
    assert.deepEqual(r.diff(after).map((c) => c.field), ['content'], 'the verify sees the tampered content');
  });

  it('observing writes nothing to the journal; the engine commits a settled, verified file', async () => {
    writeFileSync(target, DESIRED);
    chmodSync(target, 0o644);
    await settle();
    const r = createResource(testDecl('file', target, { ensure: 'present', content: DESIRED, mode: '0644' }), host);
    const o = await r.observe();
    assert.equal(journal.knownHash(target, statSync(target, { bigint: true })), undefined, 'observe recorded something');
    r.commit?.(o);
    assert.ok(journal.knownHash(target, statSync(target, { bigint: true })), 'commit records a settled file');
    // A file written just now is not remembered yet: a write in the same timestamp tick could share its stat.
    writeFileSync(target, DESIRED);
    const fresh = await r.observe();
    r.commit?.(fresh);
    assert.equal(journal.knownHash(target, statSync(target, { bigint: true })), undefined, 'a file younger than a tick was remembered');
  });
});
