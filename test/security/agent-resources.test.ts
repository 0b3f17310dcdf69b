// What one enrolled agent can make the controller hold, over the real agent endpoint: its events wait for its rate (the
// acknowledgement covers only what was taken, nothing is lost), its stored events are held to a quota and an age, its
// fields to their limits, and its escalations to resources of versions assigned to it, under a cap.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ManualClock } from '../../lib/clock.js';
import { createControllerCore, type ControllerCore } from '../../controller/core.js';
import { startController, type ControllerOptions, type RunningController } from '../../controller/server.js';
import type { WireEvent } from '../../proto/codec.js';
import { WireAgent, wireEvent } from '../helpers/wire-agent.js';

const ADMIN = 'resources-admin';

const event = wireEvent;

describe('what one agent can make the controller hold', function () {
  this.timeout(60_000);
  let dir: string;
  let ctl: RunningController | undefined;
  const agents: WireAgent[] = [];

  const start = async (o: Partial<ControllerOptions> = {}): Promise<RunningController> => {
    ctl = await startController({ dataDir: dir, listen: '127.0.0.1:0', insecureHttp: true, adminToken: ADMIN, ...o });
    return ctl;
  };
  const api = async <T>(method: string, url: string, body?: unknown): Promise<{ status: number; json: T }> => {
    const r = await (ctl as RunningController).core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}` }, ...(body === undefined ? {} : { body: body as object }) });
    return { status: r.status, json: r.json<T>() };
  };
  const enroll = async (labels: Record<string, string> = {}): Promise<WireAgent> => {
    // The token allows the labels asked for: they select which baselines (and so which escalations) reach the agent.
    const { token } = (await api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { allowLabels: Object.keys(labels) })).json;
    const a = await WireAgent.enroll((ctl as RunningController).agentUrl, token, labels);
    agents.push(a);
    return a;
  };
  const storedOf = async (agentId: string): Promise<{ seq: number; detail: string | null }[]> =>
    (await api<{ seq: number; detail: string | null }[]>('GET', `/api/v1/events?agent=${agentId}&limit=10000`)).json;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-sec-res-'));
  });
  afterEach(async () => {
    for (const a of agents.splice(0)) a.close();
    await ctl?.stop();
    ctl = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('acknowledges only what the agent’s rate takes; the agent sends the rest again and nothing is lost or doubled', async () => {
    const c = await start({ events: { ratePerAgent: 2000, burstPerAgent: 300 } });
    const a = await enroll();
    const all = Array.from({ length: 3000 }, (_, i) => event(i + 1));
    const first = await a.send(all.slice(0, 1000));
    assert.ok(first >= 1 && first < 1000, `the first batch is taken only in part (acknowledged up to ${first})`);
    const rest = await a.deliver(all.slice(first));
    assert.ok(rest.partial > 0, 'later batches wait for the rate too');
    const stored = await storedOf(a.id);
    assert.deepEqual(stored.map((e) => e.seq), all.map((e) => e.seq), 'every event once, in order');
    assert.equal(c.core.events.stats.duplicates, 0);
    assert.match((await c.core.app.inject({ method: 'GET', url: '/metrics' })).text(), /homeostat_events_deferred_total [1-9]/);
  });

  it('holds an agent’s stored events to its quota, oldest first, leaving other agents alone', async () => {
    const c = await start({ retention: { eventBytesPerAgent: 256 * 1024, intervalMs: 3_600_000 } });
    const noisy = await enroll();
    const quiet = await enroll();
    await quiet.deliver([event(1), event(2)]);
    // The finding: thousands of 2 KiB events from one agent.
    await noisy.deliver(Array.from({ length: 2000 }, (_, i) => event(i + 1, { detail: 'x'.repeat(2000) })));
    const before = (await storedOf(noisy.id)).length;
    assert.equal(before, 2000);
    const r = await c.core.retention.pass();
    assert.ok(r.eventsOverQuota > 0);
    const kept = await storedOf(noisy.id);
    const bytes = kept.reduce((n, e) => n + 2100, 0);
    assert.ok(bytes <= 256 * 1024 + 2100, `at most the quota is kept (${kept.length} events)`);
    assert.equal(kept[kept.length - 1]?.seq, 2000, 'the newest stays');
    assert.ok((kept[0]?.seq ?? 0) > 1, 'the oldest went');
    assert.deepEqual((await storedOf(quiet.id)).map((e) => e.seq), [1, 2]);
    assert.match((await c.core.app.inject({ method: 'GET', url: '/metrics' })).text(), /homeostat_events_deleted_total\{reason="quota"\} [1-9]/);
  });

  it('cuts fields to their limits and keeps JSON fields JSON, so the API can always list them', async () => {
    await start();
    const a = await enroll();
    await a.deliver([
      event(1, { detail: 'd'.repeat(1024 * 1024), resource: `file:/${'r'.repeat(10_000)}` }),
      event(2, { observedJson: 'not json at all', desiredJson: `"${'y'.repeat(100_000)}"` }),
    ]);
    const res = await api<{ seq: number; detail: string; resource: string; observed: unknown; desired: unknown }[]>('GET', `/api/v1/events?agent=${a.id}`);
    assert.equal(res.status, 200);
    const [one, two] = res.json;
    assert.ok(one && one.detail.length < 5000 && one.detail.includes('[cut at 4096 of 1048576 characters]'));
    assert.ok(one.resource.length < 4400);
    assert.deepEqual(two?.observed, { unparsed: 'not json at all' });
    assert.deepEqual(two?.desired, { truncated: true, characters: 100_002 });
  });

  it('opens escalations only for resources of a version assigned to the agent, and no more than its cap', async () => {
    const c = await start({ escalations: { maxOpenPerAgent: 3 } });
    const files = [1, 2, 3, 4, 5].map((i) => `/srv/app/f${i}`);
    const yaml = `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: { role: web }\n  resources:\n${files.map((f) => `    - file: ${f}\n      content: "x"\n`).join('')}`;
    assert.equal((await api('POST', '/api/v1/baselines', { yaml })).status, 201);
    assert.equal((await api('POST', '/api/v1/rollouts', { baseline: 'web', version: 1, strategy: 'all-at-once' })).status, 201);
    const web = await enroll({ role: 'web' });
    const db = await enroll({ role: 'db' });
    const escalated = (seq: number, resource: string, baseline = 'web'): WireEvent => event(seq, { event: 'escalated', resource, baseline, version: 1 });
    // The finding: one batch naming 2,000 made-up resources.
    await web.deliver(Array.from({ length: 2000 }, (_, i) => escalated(i + 1, `file:/made/up/${i}`)), 2000);
    await web.deliver([escalated(2001, 'file:/srv/app/f1', 'other')]);
    await db.deliver(files.map((f, i) => escalated(i + 1, `file:${f}`)));
    await c.core.events.flush();
    assert.equal((await api<unknown[]>('GET', '/api/v1/escalations')).json.length, 0, 'nothing opened for resources not assigned');
    await web.deliver(files.map((f, i) => escalated(3000 + i, `file:${f}`)));
    await web.deliver([escalated(3100, 'file:/srv/app/f1')]);
    await c.core.events.flush();
    const open = (await api<{ resource: string; repeats: number }[]>('GET', '/api/v1/escalations?status=open')).json;
    assert.deepEqual(open.map((e) => e.resource), ['file:/srv/app/f1', 'file:/srv/app/f2', 'file:/srv/app/f3'], 'up to the cap');
    assert.equal(open[0]?.repeats, 1, 'a repeat of an open one still counts');
    const metrics = (await c.core.app.inject({ method: 'GET', url: '/metrics' })).text();
    assert.match(metrics, /homeostat_escalations_refused_total\{reason="not_assigned"\} 2006/);
    assert.match(metrics, /homeostat_escalations_refused_total\{reason="cap"\} 2/);
  });
});

describe('retention by the controller’s clock', () => {
  let dir: string;
  let core: ControllerCore;
  const clock = new ManualClock(1_800_000_000_000);
  const day = 86_400_000;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-sec-ret-'));
    core = await createControllerCore({ dataDir: dir, adminToken: ADMIN, fingerprint: null, clock, retention: { eventMaxAgeMs: 30 * day, escalationMaxAgeMs: 30 * day, intervalMs: 3_600_000 } });
  });
  afterEach(async () => {
    await core.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('deletes events received past the age whatever time their agent wrote in them, and keeps younger ones', async () => {
    const t = await core.enrollment.createToken();
    const { agent } = await core.enrollment.enroll(t.token, { labels: {}, protocolVersion: 2, agentVersion: 't' });
    const ev = (seq: number, time: number) => ({ seq, time, resource: 'file:/a', event: 'repaired', trigger: 'watch', baseline: null, version: null, observed: null, desired: null, diff: null, detail: null, prevHash: '', hash: `h${seq}` });
    await core.events.submit(agent.id, [ev(1, 9e15), ev(2, -1)]);
    clock.advance(31 * day);
    await core.events.submit(agent.id, [ev(3, 9e15)]);
    const listed = await core.app.inject({ method: 'GET', url: '/api/v1/events', headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(listed.status, 200, 'a time no Date can hold is still listed');
    const r = await core.retention.pass();
    assert.equal(r.eventsAged, 2);
    assert.deepEqual((await core.store.listEvents({})).map((e) => e.seq), [3]);
  });

  it('deletes escalations decided past the age once acknowledged, and keeps open and pending ones', async () => {
    const base = { agentId: 'a', baseline: null, version: null, kind: 'escalated', detail: null, observed: null, desired: null, diff: null, openedAt: 0, repeats: 0, reason: null, expiresAt: null, outcomeError: null, decisionPayload: null, decisionSignature: null };
    const old = clock.now() - 31 * day;
    await core.store.addEscalation({ ...base, resource: 'file:/open', status: 'open', decidedAt: null, decidedBy: null, outcome: null });
    await core.store.addEscalation({ ...base, resource: 'file:/done', status: 'approved', decidedAt: old, decidedBy: 'op', outcome: 'done' });
    await core.store.addEscalation({ ...base, resource: 'file:/pending', status: 'approved', decidedAt: old, decidedBy: 'op', outcome: 'pending' });
    await core.store.addEscalation({ ...base, resource: 'file:/recent', status: 'resolved', decidedAt: clock.now() - day, decidedBy: 'agent', outcome: null });
    assert.equal((await core.retention.pass()).escalations, 1);
    assert.deepEqual((await core.store.listEscalations({})).map((e) => e.resource), ['file:/open', 'file:/pending', 'file:/recent']);
  });
});
