// The audit log's hash chain against a real database: the documented hashing rule, queries, and tampering
// (an edited, re-hashed, deleted, reordered or cut-off record) found by verify with the record's seq.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openDatabase, type Database } from '../../lib/sqlite.js';
import { AGENT_DB_FILE, AgentStore } from '../../agent/store/store.js';
import { GENESIS_HASH, canonicalJson, entryHash, hashedText } from '../../agent/store/chain.js';
import type { AuditEntry, NewAuditEntry } from '../../agent/store/types.js';

function record(i: number, over: Partial<NewAuditEntry> = {}): NewAuditEntry {
  return {
    time: 1_700_000_000_000 + i * 1000,
    resource: `file:/etc/app/${i % 2}.conf`,
    event: i % 2 ? 'drift_detected' : 'repaired',
    trigger: i === 1 ? 'startup' : 'watch',
    baseline: 'web',
    version: 2,
    observed: { sha256: String(i).repeat(64).slice(0, 64), mode: '0644', nested: { z: 1, a: [true, null, 'é"\n'] } },
    desired: { sha256: 'a'.repeat(64), mode: '0644' },
    diff: i % 2 ? `--- a\n+++ b\n-x\n+${i}\n` : null,
    detail: i === 3 ? 'line one\nline "two"' : null,
    // Records of decisions carry the actor, the decision with its rule, the change kinds and the risk; others do not.
    ...(i === 5
      ? {
          actor: { source: 'audit' as const, pid: 42, exe: '/usr/bin/bash', cmdline: '/bin/bash /opt/x.sh', uid: 0, user: 'root', parents: ['/usr/sbin/cron'] },
          decision: { action: 'defer' as const, cause: 'rule' as const, rule: { document: 'gov', version: 3, index: 1 }, reason: 'a "hotfix" stands', until: 1_700_000_900_000 },
          changes: ['content', 'mode'],
          risk: 'medium',
        }
      : {}),
    ...(i === 6 ? { decision: { action: 'repair' as const, cause: 'enforce' as const, rule: { baseline: 'web' }, reason: 'repair' }, changes: ['content'], risk: 'low' } : {}),
    ...over,
  };
}

/** The rule as documented in types.ts, written out independently: sha256(prevHash + canonical JSON without prevHash/hash). */
function documentedHash(e: AuditEntry): string {
  const { prevHash, hash: _hash, ...rest } = e;
  return createHash('sha256')
    .update(prevHash + canonicalJson(rest))
    .digest('hex');
}

describe('audit hash chain', () => {
  let dir: string;
  let store: AgentStore | undefined;
  let appended: AuditEntry[];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hs-audit-'));
    store = AgentStore.open(dir);
    const s = store;
    appended = [1, 2, 3, 4, 5, 6].map((i) => s.appendAudit(record(i)));
  });
  afterEach(() => {
    store?.close();
    store = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Closes the store and runs raw SQL on the file, as someone with root on the host could. */
  function tamper(fn: (db: Database) => void): void {
    store?.close();
    store = undefined;
    const db = openDatabase(path.join(dir, AGENT_DB_FILE));
    try {
      for (const t of ['audit_no_update', 'audit_no_delete', 'docs_no_update', 'strings_no_update']) db.exec(`DROP TRIGGER ${t}`);
      fn(db);
    } finally {
      db.close();
    }
  }

  function verify(): ReturnType<AgentStore['verifyAudit']> {
    const reader = AgentStore.open(dir, { readonly: true });
    try {
      return reader.verifyAudit();
    } finally {
      reader.close();
    }
  }

  describe('canonical JSON', () => {
    it('sorts keys at every depth, has no whitespace, and follows JSON.stringify otherwise', () => {
      assert.equal(canonicalJson({ b: 1, a: { d: [3, { y: 1, x: 2 }], c: 'é' } }), '{"a":{"c":"é","d":[3,{"x":2,"y":1}]},"b":1}');
      assert.equal(canonicalJson({ u: undefined, f: () => 1, n: NaN, i: -Infinity, z: -0, arr: [undefined] }), '{"arr":[null],"i":null,"n":null,"z":0}');
      assert.equal(canonicalJson({ d: new Date(0), s: 'a"b\n\u2028' }), `{"d":"1970-01-01T00:00:00.000Z","s":${JSON.stringify('a"b\n\u2028')}}`);
      assert.equal(canonicalJson(null), 'null');
      assert.equal(canonicalJson(undefined), 'null');
      assert.throws(() => canonicalJson({ big: 1n }), /bigint/);
    });

    it('gives the same text again after a parse', () => {
      const v = { z: [1.5, 'x', { b: null, a: false }], a: 1e21, m: 'ü\ud800' };
      const once = canonicalJson(v);
      assert.equal(canonicalJson(JSON.parse(once)), once);
    });

    it('writes the hashed fields exactly as canonicalJson does', () => {
      for (const e of appended) {
        const { prevHash: _p, hash: _h, observed, desired, actor, decision, changes, ...rest } = e;
        const opt = (v: unknown): string | null => (v === undefined ? null : canonicalJson(v));
        const direct = hashedText({ ...rest, observed: opt(observed ?? undefined), desired: opt(desired ?? undefined), actor: opt(actor), decision: opt(decision), changes: opt(changes) });
        assert.equal(direct, canonicalJson({ ...rest, observed, desired, actor, decision, changes }));
      }
    });
  });

  describe('appending and reading', () => {
    it('chains every record by the documented rule, starting from 64 zeros', () => {
      assert.equal(appended[0]?.prevHash, GENESIS_HASH);
      assert.equal(GENESIS_HASH, '0'.repeat(64));
      appended.forEach((e, i) => {
        assert.equal(e.seq, i + 1);
        assert.equal(e.hash, documentedHash(e), `record ${e.seq}`);
        assert.equal(e.hash, entryHash(e));
        if (i > 0) assert.equal(e.prevHash, appended[i - 1]?.hash);
      });
      assert.deepEqual(store?.auditHead(), { seq: 6, hash: appended[5]?.hash });
      assert.deepEqual(store?.verifyAudit(), { ok: true, count: 6 });
    });

    it('reads back exactly what was appended, and the hashes still follow from what is read', () => {
      const read = store?.queryAudit() ?? [];
      assert.deepEqual(read, appended);
      for (const e of read) assert.equal(documentedHash(e), e.hash);
    });

    it('keeps JSON semantics for summaries: what is read back hashes the same', () => {
      const s = store;
      assert.ok(s);
      const odd = s.appendAudit(record(7, { observed: { when: new Date(0), gone: undefined, n: Number.NaN } }));
      const [back] = s.queryAudit({ afterSeq: 6 });
      assert.deepEqual(back?.observed, { when: '1970-01-01T00:00:00.000Z', n: null });
      assert.equal(back && documentedHash(back), odd.hash);
      assert.deepEqual(s.verifyAudit(), { ok: true, count: 7 });
    });

    it('stores texts with broken UTF-16 the way it hashes them', () => {
      const s = store;
      assert.ok(s);
      const e = s.appendAudit(record(7, { diff: 'half \ud83d of an emoji', detail: 'ok \ud83d\ude00', resource: 'file:/x\udc00' }));
      assert.equal(e.diff, 'half \ufffd of an emoji');
      assert.equal(e.detail, 'ok \ud83d\ude00');
      assert.deepEqual(s.queryAudit({ afterSeq: 6 }), [e]);
      assert.deepEqual(s.verifyAudit(), { ok: true, count: 7 });
    });

    it('filters by time, resource, event and seq, limits, and takes the newest', () => {
      const s = store;
      assert.ok(s);
      const seqs = (es: AuditEntry[]): number[] => es.map((e) => e.seq);
      assert.deepEqual(seqs(s.queryAudit({ since: 1_700_000_000_000 + 4000 })), [4, 5, 6]);
      assert.deepEqual(seqs(s.queryAudit({ resource: 'file:/etc/app/1.conf' })), [1, 3, 5]);
      assert.deepEqual(seqs(s.queryAudit({ resource: 'file:/nowhere' })), []);
      assert.deepEqual(seqs(s.queryAudit({ event: 'repaired' })), [2, 4, 6]);
      assert.deepEqual(seqs(s.queryAudit({ event: 'repaired', resource: 'file:/etc/app/0.conf', afterSeq: 2 })), [4, 6]);
      assert.deepEqual(seqs(s.queryAudit({ limit: 2 })), [1, 2]);
      assert.deepEqual(seqs(s.queryAudit({ limit: 2, newest: true })), [5, 6]);
      assert.deepEqual(seqs(s.queryAudit({ limit: 0 })), []);
      assert.deepEqual(s.auditCounts(), { drift_detected: 3, repaired: 3 });
    });

    it('verifies an empty log', () => {
      const empty = AgentStore.open(path.join(dir, 'empty'));
      try {
        assert.deepEqual(empty.verifyAudit(), { ok: true, count: 0 });
        assert.deepEqual(empty.auditHead(), { seq: 0, hash: GENESIS_HASH });
        assert.deepEqual(empty.queryAudit(), []);
      } finally {
        empty.close();
      }
    });
  });

  describe('tampering', () => {
    it('refuses UPDATE and DELETE while the triggers stand', () => {
      store?.close();
      store = undefined;
      const db = openDatabase(path.join(dir, AGENT_DB_FILE));
      try {
        assert.throws(() => db.prepare('UPDATE audit SET time = 0 WHERE seq = 2').run(), /append-only/);
        assert.throws(() => db.prepare('DELETE FROM audit WHERE seq = 2').run(), /append-only/);
        assert.throws(() => db.prepare("UPDATE docs SET json = '{}'").run(), /append-only/);
        assert.throws(() => db.prepare("UPDATE strings SET text = 'x'").run(), /append-only/);
      } finally {
        db.close();
      }
      assert.deepEqual(verify(), { ok: true, count: 6 });
    });

    it('finds an edited field with the record\'s seq', () => {
      tamper((db) => db.prepare("UPDATE audit SET detail = 'nothing happened here' WHERE seq = 3").run());
      const v = verify();
      assert.equal(v.ok, false);
      assert.equal(!v.ok && v.seq, 3);
      assert.equal(v.count, 2, 'the records before it verified');
      assert.match(!v.ok ? v.reason : '', /record 3 .*edited/);
    });

    it('finds an edited decision: the rule, the actor or the risk a record names', () => {
      for (const sql of [
        `UPDATE audit SET decision = replace(decision, '"index":1', '"index":0') WHERE seq = 5`,
        `UPDATE audit SET actor = replace(actor, '/opt/x.sh', '/opt/y.sh') WHERE seq = 5`,
        "UPDATE audit SET risk = 'low' WHERE seq = 5",
        "UPDATE audit SET changes = NULL WHERE seq = 6",
      ]) {
        tamper((db) => db.prepare(sql).run());
        const v = verify();
        assert.equal(v.ok, false, sql);
        assert.ok(!v.ok && v.seq === 5 + (sql.includes('seq = 6') ? 1 : 0), sql);
        fs.rmSync(dir, { recursive: true, force: true });
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hs-audit-'));
        store = AgentStore.open(dir);
        const s = store;
        appended = [1, 2, 3, 4, 5, 6].map((i) => s.appendAudit(record(i)));
      }
    });

    it('finds an edited event or summary, also through the shared texts and documents', () => {
      tamper((db) => db.prepare("UPDATE audit SET event_id = (SELECT id FROM strings WHERE text = 'repaired') WHERE seq = 5").run());
      assert.deepEqual(pick(verify()), { ok: false, seq: 5 });
      // Restore by reopening a fresh copy: edit the desired document every record shares instead.
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(dir);
      store = AgentStore.open(dir);
      for (let i = 1; i <= 4; i++) store.appendAudit(record(i));
      tamper((db) => db.prepare(`UPDATE docs SET json = replace(json, '"0644"', '"0777"') WHERE json LIKE '%"sha256":"aaaa%'`).run());
      assert.deepEqual(pick(verify()), { ok: false, seq: 1 });
    });

    it('finds a record edited and re-hashed by someone who knows the rule, at the next record', () => {
      tamper((db) => {
        const forged = { ...appended[2], detail: 'forged' } as AuditEntry;
        db.prepare("UPDATE audit SET detail = 'forged', hash = ? WHERE seq = 3").run(Buffer.from(documentedHash(forged), 'hex'));
      });
      assert.deepEqual(pick(verify()), { ok: false, seq: 4 });
    });

    it('finds a deleted record', () => {
      tamper((db) => db.prepare('DELETE FROM audit WHERE seq = 4').run());
      const v = verify();
      assert.deepEqual(pick(v), { ok: false, seq: 4 });
      assert.match(!v.ok ? v.reason : '', /missing/);
      // Reading still works; the record after the gap has no predecessor to show.
      const reader = AgentStore.open(dir, { readonly: true });
      try {
        assert.equal(reader.queryAudit({ afterSeq: 4 })[0]?.prevHash, '');
      } finally {
        reader.close();
      }
    });

    it('finds the first record deleted', () => {
      tamper((db) => db.prepare('DELETE FROM audit WHERE seq = 1').run());
      assert.deepEqual(pick(verify()), { ok: false, seq: 1 });
    });

    it('finds two records swapped', () => {
      tamper((db) => {
        db.prepare('UPDATE audit SET seq = -4 WHERE seq = 4').run();
        db.prepare('UPDATE audit SET seq = 4 WHERE seq = 5').run();
        db.prepare('UPDATE audit SET seq = 5 WHERE seq = -4').run();
      });
      assert.deepEqual(pick(verify()), { ok: false, seq: 4 });
    });

    it('finds records cut from the end after the controller acknowledged them', () => {
      store?.outboxAck(6);
      tamper((db) => db.prepare('DELETE FROM audit WHERE seq > 4').run());
      const v = verify();
      assert.deepEqual(pick(v), { ok: false, seq: 5 });
      assert.match(!v.ok ? v.reason : '', /5 to 6 are missing/);
    });

    it('finds the damage from the writer too, which then keeps appending after it', () => {
      tamper((db) => db.prepare("UPDATE audit SET trigger_id = NULL WHERE seq = 2").run());
      store = AgentStore.open(dir);
      assert.deepEqual(pick(store.verifyAudit()), { ok: false, seq: 2 });
      const next = store.appendAudit(record(7));
      assert.equal(next.prevHash, appended[5]?.hash, 'the chain continues from the stored head');
    });
  });
});

function pick(v: { ok: boolean; seq?: number }): { ok: boolean; seq?: number } {
  return v.ok ? { ok: true } : { ok: false, seq: v.seq ?? -1 };
}
