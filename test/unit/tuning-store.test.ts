// The tuning part of the controller store (SQLite): history pages in each agent's order on the (agent, seq) index whatever
// the time range, the structured fields of events kept and read back, proposals and settings, a database of schema 4
// migrated with its events intact, and one of schema 6 migrated without its own table of tuning document versions.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDatabase } from '../../lib/sqlite.js';
import { MIGRATIONS, SqliteControllerStore } from '../../controller/store/sqlite.js';
import { HISTORY_SQL } from '../../controller/store/sqlite-tuning.js';
import type { EventInput } from '../../controller/store/types.js';
import type { ProposalRecord } from '../../controller/store/tuning.js';
import { changesOf } from '../../controller/tuning/history.js';

const ev = (seq: number, time: number, over: Partial<EventInput> = {}): EventInput => ({
  seq,
  time,
  resource: 'file:/etc/motd',
  event: 'drift_detected',
  trigger: 'watch',
  baseline: 'web',
  version: 1,
  observed: '{}',
  desired: '{}',
  diff: null,
  detail: 'content: sha256:a -> sha256:b',
  prevHash: '',
  hash: `h${seq}`,
  ...over,
});

describe('tuning store (SQLite)', () => {
  let dir: string;
  let store: SqliteControllerStore;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-tuning-store-'));
    store = new SqliteControllerStore(path.join(dir, 'controller.db'));
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads history by the (agent, seq) index in pages, never sorting a time range', async () => {
    const db = openDatabase(path.join(dir, 'controller.db'));
    const plan = (db.prepare(`EXPLAIN QUERY PLAN ${HISTORY_SQL}`).all('', -1, 0, 1, 10) as { detail: string }[]).map((r) => r.detail);
    db.close();
    assert.deepEqual(plan, ['SEARCH events USING INDEX sqlite_autoindex_events_1 ((agent_id,seq)>(?,?))']);
  });

  it('walks every agent in its own order across pages, within the time range, resource records and pauses only', async () => {
    // Arrival order mixes agents; agent b's clock runs behind.
    await store.appendEvents(
      [
        { agentId: 'b', events: [ev(1, 500), ev(2, 600, { event: 'repaired', detail: 'verified' })] },
        { agentId: 'a', events: [ev(1, 1000), ev(2, 1100, { resource: null, event: 'agent_started', detail: 'x' })] },
      ],
      1,
    );
    await store.appendEvents(
      [
        { agentId: 'a', events: [ev(3, 1200, { resource: null, event: 'enforcement_paused', detail: 'paused: expired' }), ev(4, 5000)] },
        { agentId: 'b', events: [ev(3, 700, { actor: '{"source":"audit","exe":"/usr/bin/vim"}', decision: '{"action":"defer"}', changes: '["content"]', risk: 'high' })] },
      ],
      2,
    );
    const seen: string[] = [];
    let after: { agentId: string; seq: number } | null = null;
    for (;;) {
      const page = await store.tuning.scanHistory({ since: 0, until: 5000, after, limit: 2 });
      if (page.length === 0) break;
      for (const r of page) seen.push(`${r.agentId}${r.seq}:${r.event}:${r.detail === null ? '-' : 'detail'}`);
      const last = page[page.length - 1];
      after = last ? { agentId: last.agentId, seq: last.seq } : null;
    }
    assert.deepEqual(seen, ['a1:drift_detected:detail', 'a3:enforcement_paused:detail', 'b1:drift_detected:detail', 'b2:repaired:-', 'b3:drift_detected:detail']);
    const [structured] = await store.tuning.scanHistory({ since: 700, until: 701, after: null, limit: 10 });
    assert.deepEqual(
      [structured?.actor, structured?.decision, structured?.changes, structured?.risk],
      ['{"source":"audit","exe":"/usr/bin/vim"}', '{"action":"defer"}', '["content"]', 'high'],
    );
    const listed = await store.listEvents({ agent: 'b', kind: 'drift_detected', since: 700 });
    assert.equal(listed[0]?.risk, 'high', 'the events API shows them too');
  });

  it('keeps proposals with their evidence, and settings', async () => {
    const p: Omit<ProposalRecord, 'id'> = {
      key: 'k',
      kind: 'auto-repair',
      target: { baseline: 'web', resource: 'file:/etc/motd', change: ['content'] },
      rationale: 'r',
      evidence: { approvals: 3 },
      confidence: { mean: 0.8, low: 0.5, high: 0.95, n: 3 },
      backtest: null,
      rule: { action: 'repair' },
      window: null,
      autotune: { eligible: false, reasons: ['x'] },
      state: 'open',
      createdAt: 1,
      updatedAt: 1,
      decidedAt: null,
      decidedBy: null,
      reason: null,
      applied: null,
      reverted: null,
    };
    const rec = await store.tuning.addProposal(p);
    await store.tuning.updateProposal(rec.id, { state: 'accepted', decidedBy: 'carol', applied: { name: 'homeostat-tuning', version: 2 }, evidence: { approvals: 4 } });
    assert.deepEqual(await store.tuning.getProposal(rec.id), { ...p, id: rec.id, state: 'accepted', decidedBy: 'carol', applied: { name: 'homeostat-tuning', version: 2 }, evidence: { approvals: 4 } });
    assert.deepEqual((await store.tuning.listProposals({ state: 'open' })).length, 0);
    assert.equal(await store.tuning.getSetting('tuning'), undefined);
    await store.tuning.putSetting('tuning', { mode: 'bounded' }, 5, 'erin');
    await store.tuning.putSetting('tuning', { mode: 'off' }, 6, 'frank');
    assert.deepEqual(await store.tuning.getSetting('tuning'), { value: { mode: 'off' }, updatedAt: 6, updatedBy: 'frank' });
  });

  it("reads a drift's kinds of change from its changes field, else from its detail, whichever came first", () => {
    assert.deepEqual(changesOf(null, 'mode: 0666 -> 0644; content: sha256:a -> sha256:b; active: inactive -> running'), ['content', 'mode', 'state']);
    assert.deepEqual(changesOf(null, 'not: a field; exists: true -> false'), ['exists']);
    // The same text as a changes field and as a detail means different things; neither answer may stand for the other.
    assert.deepEqual(changesOf('["value"]', null), ['value']);
    assert.deepEqual(changesOf(null, '["value"]'), []);
    assert.deepEqual(changesOf('["value"]', null), ['value']);
  });

  it('migrates a schema 4 database: its events stay, without structured fields', async () => {
    await store.close();
    const file = path.join(dir, 'controller-v4.db');
    // A database as schema 4 left it: the migrations up to 4 and nothing later.
    const db = openDatabase(file);
    for (let v = 1; v <= 4; v++) db.exec(MIGRATIONS[v - 1] ?? '');
    db.exec(`INSERT INTO events (agent_id, seq, time, received_at, resource, event, prev_hash, hash, detail) VALUES ('old', 1, 10, 10, 'file:/etc/motd', 'drift_detected', '', 'h', 'mode: 0666 -> 0644');
      PRAGMA user_version = 4;`);
    db.close();
    store = new SqliteControllerStore(file);
    const [r] = await store.tuning.scanHistory({ since: 0, until: 100, after: null, limit: 10 });
    assert.deepEqual([r?.agentId, r?.detail, r?.actor, r?.changes], ['old', 'mode: 0666 -> 0644', null, null]);
    assert.deepEqual(await store.tuning.listProposals({}), []);
  });

  it('migrates a schema 6 database: tuning document versions leave with their table, proposals and settings stay', async () => {
    await store.close();
    const file = path.join(dir, 'controller-v6.db');
    const db = openDatabase(file);
    for (let v = 1; v <= 6; v++) db.exec(MIGRATIONS[v - 1] ?? '');
    db.exec(`INSERT INTO tuning_documents (name, version, yaml, sha256, created_at, created_by) VALUES ('homeostat-tuning', 1, 'x', 'y', 1, 'carol');
      INSERT INTO proposals (key, kind, state, created_at, updated_at, body) VALUES ('k', 'auto-repair', 'accepted', 1, 1, '{}');
      INSERT INTO settings (name, value, updated_at, updated_by) VALUES ('tuning', '{"mode":"bounded"}', 1, 'erin');
      PRAGMA user_version = 6;`);
    db.close();
    store = new SqliteControllerStore(file);
    await store.close();
    const after = openDatabase(file);
    const tables = (after.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('tuning_documents', 'proposals', 'settings') ORDER BY name").all() as { name: string }[]).map((r) => r.name);
    const schema = after.pragma('user_version', { simple: true });
    const kept = after.prepare('SELECT (SELECT COUNT(*) FROM proposals) AS proposals, (SELECT COUNT(*) FROM settings) AS settings').get();
    after.close();
    assert.deepEqual(tables, ['proposals', 'settings']);
    assert.equal(schema, 8);
    assert.deepEqual(kept, { proposals: 1, settings: 1 });
    store = new SqliteControllerStore(file);
  });
});
