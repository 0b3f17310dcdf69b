// An escalation as the operator decides it: the record follows its drift as it repeats (latest observed state, diff,
// version, actor, a bounded history of sightings), and closes with the reason once the agent says the drift is gone,
// whatever caused the repair, so that an approval never promises a repair of nothing.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createControllerCore, type ControllerCore } from '../../controller/core.js';
import type { EventInput } from '../../controller/store/types.js';

const ADMIN = 'test-admin-token';
/** Sightings an escalation keeps (docs/controller.md, Escalations). */
const MAX_HISTORY = 20;
const RESOURCE = 'file:/etc/ssh/sshd_config';
const baseline = (risk: string): string =>
  `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: web\nspec:\n  resources:\n    - file: /etc/ssh/sshd_config\n      content: "PermitRootLogin no\\n"\n      risk: ${risk}\n`;

interface Escalation {
  id: number;
  status: string;
  version: number;
  openedAt: number;
  lastSeenAt: number;
  repeats: number;
  observed: unknown;
  diff: string | null;
  detail: string | null;
  actorLabel: string | null;
  reason: string | null;
  decidedBy: string | null;
  history: { time: number; event: string; trigger: string | null; version: number | null; actor: string | null }[];
}

describe('escalation records', () => {
  let dir: string;
  let core: ControllerCore;
  let agentId: string;
  let seq = 0;
  const call = (method: string, url: string, body?: unknown) =>
    core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}` }, ...(body === undefined ? {} : { body: body as object }) });
  const send = (over: Partial<EventInput>[]): Promise<number> =>
    core.events.submit(
      agentId,
      over.map((o) => {
        seq++;
        return { seq, time: 1_000_000 + seq * 1000, resource: RESOURCE, event: 'escalated', trigger: 'watch', baseline: 'web', version: 2, observed: null, desired: null, diff: null, detail: null, prevHash: '', hash: `h${seq}`, ...o };
      }),
    );
  const open = async (): Promise<Escalation[]> => (await call('GET', '/api/v1/escalations?status=open')).json<Escalation[]>();
  const get = async (id: number): Promise<Escalation> => (await call('GET', `/api/v1/escalations/${id}`)).json<Escalation>();

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-esc-record-'));
    core = await createControllerCore({ dataDir: dir, adminToken: ADMIN, fingerprint: 'FP' });
    assert.equal((await call('POST', '/api/v1/baselines', { yaml: baseline('medium') })).status, 201);
    assert.equal((await call('POST', '/api/v1/baselines', { yaml: baseline('high') })).status, 201);
    const t = await core.enrollment.createToken();
    agentId = (await core.enrollment.enroll(t.token, { labels: {}, protocolVersion: 4, agentVersion: 't' })).agent.id;
    seq = 0;
  });
  afterEach(async () => {
    await core.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('shows the latest observed state, diff, version and actor of a drift that repeats, with a bounded history', async () => {
    await send([{ observed: JSON.stringify({ exists: false }), desired: JSON.stringify({ exists: true }), detail: 'risk high is at or above escalateAt high: left for a human' }]);
    const [first] = await open();
    assert.ok(first);
    const actor = JSON.stringify({ source: 'audit', exe: '/usr/bin/vim.basic', uid: 1000, user: 'alice', unit: 'session-4.scope' });
    // Ten more sightings: the file now exists with other content, the fleet went back to v1, a person at work.
    for (let i = 0; i < 10; i++) {
      await send([{ version: 1, observed: JSON.stringify({ exists: true, sha256: `s${i}` }), desired: JSON.stringify({ exists: true, sha256: 'want' }), diff: `-PermitRootLogin no\n+PermitRootLogin yes${i}\n`, actor, detail: `changed ${i}` }]);
    }
    const e = await get(first.id);
    assert.equal(e.status, 'open');
    assert.equal(e.repeats, 10);
    assert.equal(e.openedAt, first.openedAt, 'opened when the first drift came');
    assert.deepEqual(e.observed, { exists: true, sha256: 's9' }, 'the observed state is the latest, not the first one (exists: false)');
    assert.equal(e.diff, '-PermitRootLogin no\n+PermitRootLogin yes9\n');
    assert.equal(e.version, 1, 'the version of the latest sighting');
    assert.equal(e.detail, 'changed 9');
    assert.equal(e.lastSeenAt, 1_000_000 + 11 * 1000, 'last seen at the latest repeat');
    assert.equal(e.actorLabel, '/usr/bin/vim.basic (session-4.scope)');
    assert.equal(e.history.length, 11);
    assert.deepEqual(e.history.slice(0, 2).map((h) => [h.event, h.version, h.actor]), [['escalated', 2, null], ['escalated', 1, '/usr/bin/vim.basic (session-4.scope)']]);

    // A repeat without the observed state (a failed repair escalated) keeps the last known state and its diff.
    await send([{ event: 'repair_failed', version: 1, detail: 'HS_HOST_PERMISSION: EACCES' }]);
    const kept = await get(first.id);
    assert.deepEqual(kept.observed, { exists: true, sha256: 's9' });
    assert.equal(kept.diff, '-PermitRootLogin no\n+PermitRootLogin yes9\n');
    assert.equal(kept.detail, 'HS_HOST_PERMISSION: EACCES');

    // Past the bound the first sighting stays and the oldest repeats leave.
    for (let i = 0; i < MAX_HISTORY + 5; i++) await send([{ version: 1, detail: `again ${i}` }]);
    const bounded = await get(first.id);
    assert.equal(bounded.repeats, 11 + MAX_HISTORY + 5);
    assert.equal(bounded.history.length, MAX_HISTORY);
    assert.equal(bounded.history[0]?.time, first.openedAt, 'the sighting that opened it is kept');
    assert.equal(bounded.history[MAX_HISTORY - 1]?.time, bounded.lastSeenAt, 'the latest is last');
  });

  it('closes an open escalation when the agent repairs the drift with trigger controller, and refuses to approve a repair of nothing', async () => {
    await send([{ observed: JSON.stringify({ exists: true, sha256: 'x' }) }]);
    const [esc] = await open();
    assert.ok(esc);
    // The fleet rolled back to v1 (risk medium) and the agent repaired the drift on that assignment.
    await send([{ event: 'drift_detected', trigger: 'controller', version: 1 }, { event: 'repaired', trigger: 'controller', version: 1, detail: 'verified in 16 ms' }]);
    const closed = await get(esc.id);
    assert.equal(closed.status, 'resolved');
    assert.equal(closed.decidedBy, 'agent');
    assert.match(closed.reason ?? '', /^the resource is compliant again: the agent repaired it \(trigger controller, web v1, at /);
    assert.equal(closed.history[closed.history.length - 1]?.event, 'repaired');
    assert.deepEqual(await open(), []);
    const approve = await call('POST', `/api/v1/escalations/${esc.id}/approve`, {});
    assert.equal(approve.status, 409);
    assert.match(approve.json<{ error: { message: string } }>().error.message, /already resolved, there is nothing to repair: the resource is compliant again/);

    // The next drift of the same resource opens a new escalation.
    await send([{ observed: JSON.stringify({ exists: true, sha256: 'y' }) }]);
    const [next] = await open();
    assert.ok(next && next.id !== esc.id);
  });

  it('closes an open escalation when the agent finds the drift gone without repairing it (put back by hand)', async () => {
    await send([{}]);
    const [esc] = await open();
    assert.ok(esc);
    await send([{ event: 'escalation_resolved', trigger: 'watch', detail: 'the drift escalated under web v2 is gone: compliant under web v2; nothing left to decide' }]);
    const closed = await get(esc.id);
    assert.equal(closed.status, 'resolved');
    assert.match(closed.reason ?? '', /^the drift escalated under web v2 is gone: compliant under web v2; nothing left to decide \(trigger watch, web v2, at /);
    assert.deepEqual(await open(), []);
  });

  it('says when the drift was repaired after an approval made on the host, and closes one the host rejected', async () => {
    await send([{}]);
    const [esc] = await open();
    assert.ok(esc);
    await send([{ event: 'approved', trigger: 'manual', detail: 'approved by root' }, { event: 'repaired', trigger: 'manual' }]);
    const closed = await get(esc.id);
    assert.equal(closed.status, 'resolved');
    assert.match(closed.reason ?? '', /^the drift was repaired after an approval on the host \(trigger manual, web v2/);

    await send([{}]);
    const [again] = await open();
    assert.ok(again);
    await send([{ event: 'rejected', trigger: 'manual', detail: 'drift accepted until 2030-01-01T00:00:00.000Z: load test' }]);
    const rejected = await get(again.id);
    assert.equal(rejected.status, 'rejected');
    assert.equal(rejected.decidedBy, `${agentId} (on the host)`);
    assert.match(rejected.reason ?? '', /load test/);
    assert.equal((await call('POST', `/api/v1/escalations/${again.id}/approve`, {})).status, 409);
  });
});
