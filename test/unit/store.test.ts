// The agent's local cache against real SQLite files: persistence, a concurrent reader, baseline versions, the outbox,
// journal, backups, exceptions, schema versions, and the host refusing (permissions, read-only mount, full disk).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HsError } from '../../lib/errors.js';
import { ManualClock } from '../../lib/clock.js';
import { openDatabase } from '../../lib/sqlite.js';
import { AGENT_DB_FILE, AgentStore } from '../../agent/store/store.js';
import { AGENT_SCHEMA, SCHEMA_VERSION } from '../../agent/store/schema.js';
import type { JournalEntry, NewAuditEntry, NewBaseline } from '../../agent/store/types.js';

const STORE_MODULE = fileURLToPath(new URL('../../agent/store/store.js', import.meta.url));

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'hs-store-'));
}

function record(i: number, over: Partial<NewAuditEntry> = {}): NewAuditEntry {
  return {
    time: 1_700_000_000_000 + i,
    resource: `file:/etc/app/${i % 3}.conf`,
    event: i % 2 ? 'drift_detected' : 'repaired',
    trigger: 'watch',
    baseline: 'web',
    version: 1,
    observed: { exists: true, sha256: createHash('sha256').update(String(i)).digest('hex'), mode: '0644' },
    desired: { exists: true, sha256: 'a'.repeat(64), mode: '0644' },
    diff: i % 2 ? `--- a\n+++ b\n@@ -1 +1 @@\n-x\n+${i}\n` : null,
    detail: null,
    ...over,
  };
}

function baseline(name: string, text: string, over: Partial<NewBaseline> = {}): NewBaseline {
  return { name, text, sha256: createHash('sha256').update(text).digest('hex'), sources: {}, origin: 'local', ...over };
}

/** What AgentStore.open threw, as plain fields (also what a child process prints). */
interface Failure {
  code: string;
  message: string;
}

function failure(fn: () => unknown): Failure {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof HsError, `expected an HsError, got ${String(err)}`);
    return { code: err.code, message: err.message };
  }
  assert.fail('expected a failure');
}

/** Runs AgentStore.open for each case in a child node process (optionally under a prefix such as setpriv) and returns the outcomes. */
function openInChild(cases: { dir: string; readonly: boolean }[], prefix: string[] = []): (Failure | { ok: true; records: number })[] {
  const script = `
    const { AgentStore } = await import(process.argv[1]);
    const out = [];
    for (const c of JSON.parse(process.argv[2])) {
      try {
        const s = AgentStore.open(c.dir, { readonly: c.readonly });
        out.push({ ok: true, records: s.auditHead().seq });
        s.close();
      } catch (e) { out.push({ code: e.code, message: e.message }); }
    }
    console.log(JSON.stringify(out));`;
  const [cmd, ...args] = [...prefix, process.execPath, '--input-type=module', '-e', script, STORE_MODULE, JSON.stringify(cases)];
  const r = spawnSync(cmd ?? process.execPath, args, { encoding: 'utf8', cwd: '/' });
  assert.equal(r.status, 0, `child failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as (Failure | { ok: true; records: number })[];
}

describe('agent store', () => {
  let dir: string;
  let store: AgentStore | undefined;

  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => {
    store?.close();
    store = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('files and persistence', () => {
    it('creates the state dir 0700 and the database 0600, and keeps everything across close and reopen', () => {
      const stateDir = path.join(dir, 'state', 'nested');
      store = AgentStore.open(stateDir);
      assert.equal(fs.statSync(stateDir).mode & 0o777, 0o700);
      assert.equal(fs.statSync(path.join(stateDir, AGENT_DB_FILE)).mode & 0o777, 0o600);

      store.setMeta('agent.id', 'a-1');
      store.putBaseline(baseline('web', 'v1 text', { sources: { 'files/x': 'eA==' } }));
      store.activate('local', undefined, 'web', 1);
      const appended = [store.appendAudit(record(1)), store.appendAudit(record(2))];
      const journal: JournalEntry = { path: '/etc/motd', dev: 2049, ino: 1234567, size: 21, mtimeNs: '1700000000123456789', ctimeNs: '1700000000123456790', mode: 0o100644, uid: 0, gid: 0, sha256: 'b'.repeat(64) };
      store.putJournal(journal);
      store.putBackup('file:/etc/motd', 5, Buffer.from('old\n'), 'c'.repeat(64));
      store.putException({ resource: 'file:/etc/motd', fingerprint: 'fp', reason: 'operator rejected', expiresAt: 99 });
      store.close();

      store = AgentStore.open(stateDir);
      assert.equal(store.getMeta('agent.id'), 'a-1');
      assert.equal(store.getMeta('missing'), undefined);
      const [active] = store.getActive();
      assert.equal(active?.name, 'web');
      assert.equal(active?.text, 'v1 text');
      assert.deepEqual(active?.sources, { 'files/x': 'eA==' });
      assert.deepEqual(store.queryAudit(), appended);
      assert.deepEqual(store.auditHead(), { seq: 2, hash: appended[1]?.hash });
      assert.deepEqual([...store.loadJournal().entries()], [['/etc/motd', journal]]);
      assert.equal(store.listBackups('file:/etc/motd')[0]?.size, 4);
      assert.deepEqual(store.listExceptions(), [{ resource: 'file:/etc/motd', fingerprint: 'fp', reason: 'operator rejected', expiresAt: 99 }]);
      // The chain continues from the stored head, not from scratch.
      const third = store.appendAudit(record(3));
      assert.equal(third.seq, 3);
      assert.equal(third.prevHash, appended[1]?.hash);
      assert.deepEqual(store.verifyAudit(), { ok: true, count: 3 });
    });

    it('tightens an existing database file that others could read', () => {
      const stateDir = path.join(dir, 'state');
      fs.mkdirSync(stateDir);
      fs.writeFileSync(path.join(stateDir, AGENT_DB_FILE), '', { mode: 0o644 });
      fs.chmodSync(path.join(stateDir, AGENT_DB_FILE), 0o644);
      store = AgentStore.open(stateDir);
      assert.equal(fs.statSync(path.join(stateDir, AGENT_DB_FILE)).mode & 0o777, 0o600);
    });

    it('runs several writes atomically, and a throw leaves none of them nor a broken chain', () => {
      store = AgentStore.open(dir);
      const s = store;
      s.appendAudit(record(1));
      assert.throws(
        () =>
          s.transaction(() => {
            s.setMeta('k', 'v');
            s.appendAudit(record(2, { resource: 'file:/never/stored' }));
            throw new Error('caller changed its mind');
          }),
        /caller changed its mind/,
      );
      assert.equal(s.getMeta('k'), undefined);
      assert.equal(s.auditHead().seq, 1);
      // The interned resource text of the rolled-back record is gone too; using it again must still work.
      const next = s.appendAudit(record(3, { resource: 'file:/never/stored' }));
      assert.equal(next.seq, 2);
      assert.equal(s.queryAudit({ resource: 'file:/never/stored' }).length, 1);
      assert.deepEqual(s.verifyAudit(), { ok: true, count: 2 });
      s.transaction(() => {
        s.setMeta('a', '1');
        s.setMeta('b', '2');
      });
      assert.equal(s.getMeta('b'), '2');
    });

    it('keeps one chain when two writers append to the same file', () => {
      store = AgentStore.open(dir);
      const other = AgentStore.open(dir);
      try {
        store.appendAudit(record(1));
        const second = other.appendAudit(record(2));
        // `store` still caches seq 1 as its head: it must chain onto the other writer's record instead.
        const third = store.appendAudit(record(3));
        assert.equal(third.seq, 3);
        assert.equal(third.prevHash, second.hash);
        assert.deepEqual(store.verifyAudit(), { ok: true, count: 3 });
      } finally {
        other.close();
      }
    });

    it('refuses a database written by a newer agent with HS_STORE_MIGRATION naming both versions', () => {
      store = AgentStore.open(dir);
      store.close();
      store = undefined;
      const db = openDatabase(path.join(dir, AGENT_DB_FILE));
      db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
      db.close();
      for (const readonly of [false, true]) {
        const f = failure(() => AgentStore.open(dir, { readonly }));
        assert.equal(f.code, 'HS_STORE_MIGRATION');
        assert.match(f.message, new RegExp(`schema version ${SCHEMA_VERSION + 1}`));
        assert.match(f.message, new RegExp(`supports up to version ${SCHEMA_VERSION}`));
        assert.ok(f.message.includes(path.join(dir, AGENT_DB_FILE)));
      }
    });

    it('says there is no state when a read-only open finds no database', () => {
      const f = failure(() => AgentStore.open(path.join(dir, 'never-ran'), { readonly: true }));
      assert.equal(f.code, 'HS_HOST_NOT_FOUND');
      assert.ok(f.message.includes(path.join(dir, 'never-ran')));
      assert.equal(fs.existsSync(path.join(dir, 'never-ran')), false, 'a reader creates nothing');
    });

    it('rejects writes through a read-only store and any call after close', () => {
      store = AgentStore.open(dir);
      const reader = AgentStore.open(dir, { readonly: true });
      assert.equal(failure(() => reader.appendAudit(record(1))).code, 'HS_STORE');
      assert.equal(failure(() => reader.setMeta('a', 'b')).code, 'HS_STORE');
      reader.close();
      assert.match(failure(() => reader.getMeta('a')).message, /closed/);
    });
  });

  describe('write-ahead log upkeep', () => {
    it('copies the WAL into the database file after a quiet spell, not inside the writes', async () => {
      store = AgentStore.open(dir);
      const dbFile = path.join(dir, AGENT_DB_FILE);
      const before = fs.statSync(dbFile).size;
      for (let i = 1; i <= 100; i++) store.appendAudit(record(i, { detail: 'd'.repeat(2000) }));
      assert.equal(fs.statSync(dbFile).size, before, 'the appends went to the WAL only');
      const deadline = Date.now() + 10_000;
      while (fs.statSync(dbFile).size === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.ok(fs.statSync(dbFile).size > before + 100 * 2000, 'the checkpoint moved the records into the database file');
      assert.equal(store.queryAudit().length, 100);
    });
  });

  describe('a reader next to the writing daemon (WAL)', () => {
    it('sees what the writer appended, from another process, also while the writer is inside a transaction', () => {
      store = AgentStore.open(dir);
      const writer = store;
      for (let i = 1; i <= 3; i++) writer.appendAudit(record(i));
      const reader = AgentStore.open(dir, { readonly: true });
      try {
        assert.equal(reader.queryAudit().length, 3);
        writer.appendAudit(record(4));
        assert.equal(reader.auditHead().seq, 4, 'the reader caches nothing');
        assert.deepEqual(reader.auditHead(), writer.auditHead());

        writer.transaction(() => {
          writer.appendAudit(record(5));
          // The writer holds the write lock with record 5 uncommitted: another process reads without waiting.
          assert.deepEqual(openInChild([{ dir, readonly: true }]), [{ ok: true, records: 4 }]);
        });
        assert.deepEqual(openInChild([{ dir, readonly: true }]), [{ ok: true, records: 5 }]);
        assert.deepEqual(reader.verifyAudit(), { ok: true, count: 5 });
      } finally {
        reader.close();
      }
    });
  });

  describe('baselines', () => {
    /** The stored versions of `name` from `source`, read the way the agent never needs to: straight from the table. */
    function versions(name: string, source = 'local'): [number, string, number][] {
      const db = openDatabase(path.join(dir, AGENT_DB_FILE), { readonly: true });
      try {
        return (db.prepare('SELECT version, text, stored_at FROM baselines WHERE source = ? AND name = ? ORDER BY version').all(source, name) as { version: number; text: string; stored_at: number }[]).map((r) => [r.version, r.text, r.stored_at]);
      } finally {
        db.close();
      }
    }

    it('numbers local versions per name and returns the existing version for the same text', () => {
      const clock = new ManualClock(1000);
      store = AgentStore.open(dir, { clock });
      assert.deepEqual(store.putBaseline(baseline('web', 'A')), { version: 1, isNew: true });
      assert.deepEqual(store.putBaseline(baseline('web', 'A')), { version: 1, isNew: false });
      assert.deepEqual(store.putBaseline(baseline('web', 'B')), { version: 2, isNew: true });
      assert.deepEqual(store.putBaseline(baseline('db', 'B')), { version: 1, isNew: true }, 'numbering is per name');
      assert.deepEqual(store.putBaseline(baseline('web', 'A')), { version: 1, isNew: false }, 'going back to old text is the old version');
      assert.deepEqual(versions('web'), [
        [1, 'A', 1000],
        [2, 'B', 1000],
      ]);
      assert.equal(store.findVersion('local', undefined, 'web', baseline('web', 'B').sha256), 2);
      assert.equal(store.findVersion('local', undefined, 'web', baseline('web', 'C').sha256), undefined);
    });

    it("takes a controller's version numbers, refuses a second content under one number from the same key, and keeps every source apart", () => {
      store = AgentStore.open(dir);
      const s = store;
      const signed = { origin: 'controller' as const, version: 7, signature: 'sig', signedBy: 'key-1', expiresAt: 5000 };
      assert.deepEqual(s.putBaseline(baseline('web', 'A', signed)), { version: 7, isNew: true });
      assert.deepEqual(s.putBaseline(baseline('web', 'A', signed)), { version: 7, isNew: false });
      s.activate('controller', 'key-1', 'web', 7);
      const stored = s.getActive()[0];
      assert.deepEqual([stored?.source, stored?.origin, stored?.signature, stored?.signedBy, stored?.expiresAt], ['controller:key-1', 'controller', 'sig', 'key-1', 5000]);
      const conflict = failure(() => s.putBaseline(baseline('web', 'other', { origin: 'controller', signedBy: 'key-1', version: 7 })));
      assert.equal(conflict.code, 'HS_CONFLICT');
      assert.match(conflict.message, /controller:key-1/);
      // Another controller (re-enrolled, a new signing key) and the host's own files number on their own.
      assert.deepEqual(s.putBaseline(baseline('web', 'other', { origin: 'controller', signedBy: 'key-2', version: 7 })), { version: 7, isNew: true });
      assert.deepEqual(s.putBaseline(baseline('web', 'C')), { version: 1, isNew: true }, 'local versions count from 1 whatever a controller sent');
      assert.deepEqual(s.putBaseline(baseline('web', 'A', { origin: 'controller', signedBy: 'key-2', version: 1 })), { version: 1, isNew: true });
      assert.deepEqual(versions('web', 'controller:key-2').map((v) => v[0]), [1, 7]);
      assert.equal(failure(() => s.putBaseline(baseline('web', 'D', { version: 0 }))).code, 'HS_STORE');
    });

    it('activates validated versions per source, and deactivates', () => {
      const clock = new ManualClock(10);
      store = AgentStore.open(dir, { clock });
      const s = store;
      s.putBaseline(baseline('web', 'A'));
      s.putBaseline(baseline('web', 'B'));
      s.putBaseline(baseline('db', 'X'));
      s.putBaseline(baseline('web', 'K', { origin: 'controller', signedBy: 'k', version: 3 }));
      assert.deepEqual(s.getActive(), []);

      s.activate('local', undefined, 'web', 1);
      clock.advance(10);
      s.activate('local', undefined, 'web', 2);
      s.activate('local', undefined, 'db', 1);
      s.activate('controller', 'k', 'web', 3);
      assert.deepEqual(
        s.getActive().map((b) => [b.source, b.name, b.version, b.activatedAt]),
        [
          ['controller:k', 'web', 3, 20],
          ['local', 'db', 1, 20],
          ['local', 'web', 2, 20],
        ],
      );
      clock.advance(10);
      s.activate('local', undefined, 'web', 2);
      assert.equal(s.getActive().find((b) => b.source === 'local' && b.name === 'web')?.activatedAt, 20, 'activating the active version again changes nothing');

      const f = failure(() => s.activate('local', undefined, 'web', 9));
      assert.equal(f.code, 'HS_NOT_FOUND');
      assert.equal(failure(() => s.activate('local', undefined, 'web', 3)).code, 'HS_NOT_FOUND', "a controller's version is not a local one");
      assert.equal(s.getActive().find((b) => b.source === 'local' && b.name === 'web')?.version, 2, 'a failed activation keeps the last good one');

      s.deactivate('local', undefined, 'web');
      assert.deepEqual(
        s.getActive().map((b) => `${b.source}/${b.name}`),
        ['controller:k/web', 'local/db'],
      );
      s.deactivateAll('controller');
      assert.deepEqual(
        s.getActive().map((b) => `${b.source}/${b.name}`),
        ['local/db'],
      );
    });

    it('keeps the newest ten versions of a name, and the active one and the one before it whatever their age', () => {
      store = AgentStore.open(dir);
      const s = store;
      s.putBaseline(baseline('web', 'v1'));
      s.putBaseline(baseline('web', 'v2'));
      s.activate('local', undefined, 'web', 1);
      s.activate('local', undefined, 'web', 2);
      s.activate('local', undefined, 'web', 1);
      for (let v = 3; v <= 20; v++) s.putBaseline(baseline('web', `v${v}`));
      assert.deepEqual(versions('web').map((v) => v[0]), [1, 2, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
      assert.deepEqual(s.putBaseline(baseline('web', 'v5')), { version: 21, isNew: true }, 'a text whose version went is a new version');
    });

    it('moves baselines stored before sources existed into their source', () => {
      const db = openDatabase(path.join(dir, AGENT_DB_FILE));
      db.exec(AGENT_SCHEMA.steps[0] as string);
      db.pragma('user_version = 1');
      const ins = db.prepare("INSERT INTO baselines (name, version, sha256, text, sources, origin, signed_by, stored_at) VALUES (?, ?, ?, ?, '{}', ?, ?, 1)");
      ins.run('web', 1, 'a', 'A', 'local', null);
      ins.run('web', 2, 'b', 'B', 'local', null);
      ins.run('app', 5, 'c', 'C', 'controller', null);
      db.prepare('INSERT INTO baseline_state (name, active, previous) VALUES (?, ?, ?)').run('web', 2, 1);
      db.prepare('INSERT INTO baseline_state (name, active, previous) VALUES (?, ?, ?)').run('app', 5, null);
      db.close();
      store = AgentStore.open(dir);
      assert.deepEqual(
        store.getActive().map((b) => [b.source, b.name, b.version]),
        [
          ['controller:', 'app', 5],
          ['local', 'web', 2],
        ],
      );
      assert.deepEqual(store.putBaseline(baseline('web', 'C')), { version: 3, isNew: true });
    });

    it('keeps stored versions immutable', () => {
      store = AgentStore.open(dir);
      store.putBaseline(baseline('web', 'A'));
      store.close();
      store = undefined;
      const db = openDatabase(path.join(dir, AGENT_DB_FILE));
      try {
        assert.throws(() => db.prepare("UPDATE baselines SET text = 'evil'").run(), /immutable/);
      } finally {
        db.close();
      }
    });
  });

  describe('outbox', () => {
    it('hands out pending records in order, and an ack removes them', () => {
      const s = (store = AgentStore.open(dir));
      const appended = [1, 2, 3, 4, 5].map((i) => s.appendAudit(record(i)));
      assert.deepEqual(store.outboxStats(), { pending: 5, dropped: 0, oldestSeq: 1 });
      const first = store.outboxPending(2);
      assert.deepEqual(
        first.map((p) => p.seq),
        [1, 2],
      );
      assert.deepEqual(first[0]?.entry, appended[0]);
      store.outboxAck(2);
      assert.deepEqual(
        store.outboxPending(10).map((p) => p.seq),
        [3, 4, 5],
      );
      assert.deepEqual(store.outboxStats(), { pending: 3, dropped: 0, oldestSeq: 3 });
      store.outboxAck(1);
      assert.equal(store.outboxStats().pending, 3, 'an old ack never takes records back');
      store.outboxAck(5);
      assert.deepEqual(store.outboxStats(), { pending: 0, dropped: 0, oldestSeq: null });
      assert.deepEqual(store.outboxPending(10), []);
      assert.equal(store.queryAudit().length, 5, 'delivered records stay in the audit log');
    });

    it('continues after an ack past its end (the controller holds records this log lost): no seq is used twice, nothing later is swallowed', () => {
      store = AgentStore.open(dir);
      store.appendAudit(record(1));
      store.outboxAck(100);
      store.appendAudit(record(2));
      const pending = store.outboxPending(10).map((p) => p.entry);
      assert.deepEqual(
        pending.map((e) => [e.seq, e.event]),
        [
          [101, 'records_lost'],
          [102, 'repaired'],
        ],
      );
      assert.deepEqual(pending[0]?.observed, { firstLost: 2, lastLost: 100 });
      const v = store.verifyAudit();
      assert.ok(v.ok, JSON.stringify(v));
      assert.deepEqual(v.ok && v.lost, [{ from: 2, to: 100, recordedAt: 101 }]);
    });

    it('drops the oldest records past its bound and counts them, persistently', () => {
      store = AgentStore.open(dir, { outboxLimit: 3 });
      for (let i = 1; i <= 5; i++) store.appendAudit(record(i));
      assert.deepEqual(store.outboxStats(), { pending: 3, dropped: 2, oldestSeq: 3 });
      assert.deepEqual(
        store.outboxPending(10).map((p) => p.seq),
        [3, 4, 5],
      );
      store.outboxAck(4);
      store.appendAudit(record(6));
      assert.deepEqual(store.outboxStats(), { pending: 2, dropped: 2, oldestSeq: 5 });
      store.close();
      store = AgentStore.open(dir, { outboxLimit: 3 });
      for (let i = 7; i <= 9; i++) store.appendAudit(record(i));
      assert.deepEqual(store.outboxStats(), { pending: 3, dropped: 4, oldestSeq: 7 });
      assert.deepEqual(store.verifyAudit(), { ok: true, count: 9 }, 'dropping from the outbox leaves the audit log whole');
    });
  });

  describe('audit retention', () => {
    const DAY = 86_400_000;
    const at = (days: number, i: number): NewAuditEntry => record(i, { time: 1_700_000_000_000 + days * DAY + i });

    it('removes delivered records past their age, never undelivered ones, and the chain still verifies from where it starts', async () => {
      const clock = new ManualClock(1_700_000_000_000 + 100 * DAY);
      store = AgentStore.open(dir, { clock });
      const appended = [at(1, 1), at(2, 2), at(3, 3), at(4, 4), at(95, 5), at(96, 6)].map((e) => store?.appendAudit(e));
      store.outboxAck(3);
      // Older than 30 days: records 1 to 4; delivered: 1 to 3. Record 4 stays until the controller has it.
      assert.equal(await store.retainAudit(30 * DAY, true), 3);
      assert.deepEqual(store.queryAudit().map((e) => e.seq), [4, 5, 6]);
      assert.equal(store.queryAudit()[0]?.prevHash, appended[2]?.hash, 'the first kept record still names its predecessor');
      assert.deepEqual(store.verifyAudit(), { ok: true, count: 3, retainedFrom: 4 });
      assert.equal(await store.retainAudit(30 * DAY, true), 0);
      store.outboxAck(6);
      assert.equal(await store.retainAudit(30 * DAY, true), 1);
      // Appending goes on, reusing documents remembered before the retention (they were stored again if removed).
      const next = store.appendAudit(at(99, 1));
      assert.equal(next.seq, 7);
      assert.deepEqual(store.queryAudit({ afterSeq: 6 })[0]?.observed, at(99, 1).observed);
      assert.deepEqual(store.verifyAudit(), { ok: true, count: 3, retainedFrom: 5 });
      store.close();
      const reader = AgentStore.open(dir, { readonly: true });
      try {
        assert.deepEqual(reader.verifyAudit(), { ok: true, count: 3, retainedFrom: 5 });
      } finally {
        reader.close();
      }
      store = undefined;
    });

    it('without a controller removes every old record but the last, batch by batch', async () => {
      const clock = new ManualClock(1_700_000_000_000 + 100 * DAY);
      store = AgentStore.open(dir, { clock });
      for (let i = 1; i <= 50; i++) store.appendAudit(at(1, i));
      assert.equal(await store.retainAudit(30 * DAY, false, 7), 49);
      assert.deepEqual(store.queryAudit().map((e) => e.seq), [50]);
      assert.deepEqual(store.verifyAudit(), { ok: true, count: 1, retainedFrom: 50 });
    });

    it('refuses to move the retention floor back or delete records above it', () => {
      store = AgentStore.open(dir);
      for (let i = 1; i <= 3; i++) store.appendAudit(record(i));
      store.close();
      store = undefined;
      const db = openDatabase(path.join(dir, AGENT_DB_FILE));
      try {
        assert.throws(() => db.prepare('DELETE FROM audit WHERE seq = 2').run(), /append-only/);
        db.prepare('UPDATE audit_retention SET first_seq = 3').run();
        assert.throws(() => db.prepare('UPDATE audit_retention SET first_seq = 1').run(), /only moves forward/);
      } finally {
        db.close();
      }
    });
  });

  describe('journal, backups, meta, exceptions', () => {
    it('replaces and deletes journal entries per path', () => {
      store = AgentStore.open(dir);
      const e: JournalEntry = { path: '/a', dev: 1, ino: 2, size: 3, mtimeNs: '4', ctimeNs: '5', mode: 0o40755, uid: 6, gid: 7, sha256: null };
      store.putJournal(e);
      store.putJournal({ ...e, size: 30 });
      store.putJournal({ ...e, path: '/b' });
      assert.equal(store.loadJournal().get('/a')?.size, 30);
      assert.equal(store.loadJournal().get('/a')?.sha256, null);
      store.deleteJournal('/a');
      assert.deepEqual([...store.loadJournal().keys()], ['/b']);
    });

    it('keeps backup bytes up to the size limit, the hash and size always, and the newest ten per resource', () => {
      store = AgentStore.open(dir, { backupLimitBytes: 8 });
      const small = store.putBackup('file:/a', 1, Buffer.from('12345678'), 'h-small');
      const big = store.putBackup('file:/a', 2, Buffer.from('123456789'), 'h-big');
      assert.equal(small.kept, true);
      assert.equal(big.kept, false);
      assert.deepEqual(store.getBackup(small.id)?.content, Buffer.from('12345678'));
      assert.deepEqual(store.getBackup(big.id), { ...big, content: null });
      for (let t = 3; t <= 12; t++) store.putBackup('file:/a', t, Buffer.from(`v${t}`), `h${t}`);
      store.putBackup('file:/b', 1, Buffer.from('b'), 'hb');
      const list = store.listBackups('file:/a');
      assert.deepEqual(
        list.map((b) => b.time),
        [12, 11, 10, 9, 8, 7, 6, 5, 4, 3],
      );
      assert.equal(store.getBackup(small.id), undefined, 'the oldest were pruned');
      assert.equal(store.listBackups('file:/b').length, 1);
    });

    it('stores meta and one exception per resource', () => {
      store = AgentStore.open(dir);
      store.setMeta('k', 'v1');
      store.setMeta('k', 'v2');
      assert.equal(store.getMeta('k'), 'v2');
      store.putException({ resource: 'file:/b', fingerprint: 'f1', reason: 'r', expiresAt: 1 });
      store.putException({ resource: 'file:/a', fingerprint: 'f2', reason: 'r', expiresAt: 2 });
      store.putException({ resource: 'file:/a', fingerprint: 'f3', reason: 'r2', expiresAt: 3 });
      assert.deepEqual(
        store.listExceptions().map((e) => [e.resource, e.fingerprint]),
        [
          ['file:/a', 'f3'],
          ['file:/b', 'f1'],
        ],
      );
      store.deleteException('file:/a');
      assert.deepEqual(store.listExceptions().map((e) => e.resource), ['file:/b']);
    });
  });

  describe('when the host refuses', () => {
    it('names the path when the state dir is not ours (run as nobody)', function () {
      if (spawnSync('setpriv', ['--version']).status !== 0) this.skip();
      fs.chmodSync(dir, 0o755);
      const locked = path.join(dir, 'locked');
      store = AgentStore.open(locked);
      store.close();
      store = undefined;
      const results = openInChild(
        [
          { dir: locked, readonly: false },
          { dir: locked, readonly: true },
          { dir: path.join(locked, 'sub'), readonly: false },
        ],
        ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'],
      );
      for (const r of results) {
        assert.ok(!('ok' in r), 'nobody must not open root-only state');
        assert.equal(r.code, 'HS_HOST_PERMISSION', r.message);
        assert.ok(r.message.includes(locked), r.message);
        assert.match(r.message, /permission denied/);
      }
    });

    it('says the filesystem is read-only when the state dir is mounted read-only', function () {
      const ro = path.join(dir, 'ro');
      store = AgentStore.open(ro);
      store.appendAudit(record(1));
      store.close();
      store = undefined;
      const script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"';
      const probe = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, '_', ro, 'true']);
      if (probe.status !== 0) this.skip();
      const [writable, reader] = openInChild(
        [
          { dir: ro, readonly: false },
          { dir: ro, readonly: true },
        ],
        ['unshare', '-m', '--propagation', 'private', 'sh', '-c', script, '_', ro],
      );
      assert.ok(writable && !('ok' in writable));
      assert.equal(writable.code, 'HS_HOST_READ_ONLY', writable.message);
      assert.ok(writable.message.includes(ro), writable.message);
      // A reader must create the -shm file next to a WAL database whose writer is gone: it says why it cannot.
      assert.ok(reader && !('ok' in reader));
      assert.equal(reader.code, 'HS_HOST_READ_ONLY', reader.message);
      assert.ok(reader.message.includes(ro), reader.message);
    });

    describe('on a full disk', () => {
      let mnt: string;
      let mounted = false;
      before(function () {
        mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'hs-store-full-'));
        try {
          execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'hs-store-full', mnt], { stdio: 'pipe' });
          mounted = true;
        } catch (err) {
          fs.rmSync(mnt, { recursive: true, force: true });
          console.log(`      (skipped: cannot mount a tmpfs: ${String(err)})`);
          this.skip();
        }
      });
      after(() => {
        if (!mounted) return;
        store?.close();
        store = undefined;
        spawnSync('umount', [mnt]);
        if (spawnSync('mountpoint', ['-q', mnt]).status === 0) spawnSync('umount', ['-l', mnt]);
        fs.rmSync(mnt, { recursive: true, force: true });
      });

      it('fails with HS_HOST_DISK_FULL naming the path, keeps the chain whole, and carries on once space is back', () => {
        const filler = path.join(mnt, 'filler');
        fs.writeFileSync(filler, Buffer.alloc(256 * 1024));
        store = AgentStore.open(path.join(mnt, 'state'));
        const s = store;
        let full: Failure | undefined;
        const detail = 'x'.repeat(16 * 1024);
        for (let i = 1; i <= 200 && !full; i++) {
          try {
            s.appendAudit(record(i, { detail }));
          } catch (err) {
            assert.ok(err instanceof HsError, String(err));
            full = { code: err.code, message: err.message };
          }
        }
        assert.ok(full, 'a 1 MiB filesystem must fill up');
        assert.equal(full.code, 'HS_HOST_DISK_FULL', full.message);
        assert.ok(full.message.includes(path.join(mnt, 'state', AGENT_DB_FILE)), full.message);
        const before = s.auditHead().seq;
        assert.ok(before > 0);

        fs.rmSync(filler);
        const next = s.appendAudit(record(1000));
        assert.equal(next.seq, before + 1, 'no seq was used up by the failed append');
        assert.deepEqual(s.verifyAudit(), { ok: true, count: before + 1 });
      });
    });
  });
});
