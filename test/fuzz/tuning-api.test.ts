// Fuzz: the tuning API (outcomes, proposals, backtests, settings) with hostile parameters and bodies over a controller
// holding a small history: every answer is below 500 with the error document, and the controller keeps serving.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { ManualClock } from '../../lib/clock.js';
import { createControllerCore, type ControllerCore } from '../../controller/core.js';
import { FleetHistory } from '../helpers/fleet-history.js';
import { fuzzParams, fuzzTimeoutMs } from '../helpers/fuzz.js';

const ADMIN = 'fuzz-admin';
const ROUTES: [string, string][] = [
  ['GET', '/api/v1/outcomes'],
  ['GET', '/api/v1/proposals'],
  ['GET', '/api/v1/proposals/:p'],
  ['POST', '/api/v1/proposals/refresh'],
  ['POST', '/api/v1/proposals/:p/accept'],
  ['POST', '/api/v1/proposals/:p/reject'],
  ['POST', '/api/v1/proposals/:p/revert'],
  ['POST', '/api/v1/backtest'],
  ['GET', '/api/v1/settings/autotune'],
  ['PUT', '/api/v1/settings/autotune'],
];
const hostile = fc.oneof(
  fc.constantFrom('1', '2', '0', '-1', '99999999999999999999', '1e400', 'NaN', '__proto__', 'constructor', '%E0%A4%A', '30d', '1h', '0s', 'resource', 'rule', 'actor', 'open', ''),
  fc.string({ maxLength: 16 }),
);
const query = fc
  .array(fc.tuple(fc.constantFrom('groupBy', 'since', 'until', 'window', 'limit', 'state', '__proto__'), hostile), { maxLength: 4 })
  .map((kv) => (kv.length === 0 ? '' : `?${kv.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&')}`));
const policy = fc.constantFrom(
  'apiVersion: homeostat/v1\nkind: Policy\nmetadata:\n  name: all\nspec:\n  rules:\n    - action: repair\n',
  'apiVersion: homeostat/v1\nkind: Policy\nmetadata:\n  name: homeostat-tuning\nspec:\n  rules: []\n',
  'kind: Policy\n',
  '{{{',
  'x'.repeat(2000),
);
const value = fc.oneof(hostile, fc.jsonValue(), fc.integer(), fc.double(), fc.constant(null), fc.boolean());
const body = fc.oneof(
  fc.record(
    { policy: fc.oneof(policy, value), proposal: value, since: value, until: value, maxEvents: value },
    { requiredKeys: [] },
  ).map((o) => JSON.stringify(o)),
  fc.record(
    { mode: fc.oneof(fc.constantFrom('off', 'bounded'), value), minConfidence: value, webhook: fc.oneof(fc.constantFrom('http://127.0.0.1:9/x', 'file:///etc/passwd'), value), refreshInterval: value, lookback: value, recurrenceWindow: value, by: value },
    { requiredKeys: [] },
  ).map((o) => JSON.stringify(o)),
  fc.record({ reason: value, by: value }, { requiredKeys: [] }).map((o) => JSON.stringify(o)),
  fc.constantFrom('{"__proto__": {"x": 1}}', '{"constructor": {"prototype": {}}}', '[]', 'null', '{', '"x"', ''),
  fc.jsonValue().map((v) => JSON.stringify(v)),
);

describe('fuzz: tuning API', function () {
  let dir: string;
  let core: ControllerCore;
  const statuses = new Map<number, number>();

  before(async function () {
    this.timeout(60_000);
    dir = mkdtempSync(path.join(tmpdir(), 'hs-fuzz-tuning-'));
    const clock = new ManualClock(Date.UTC(2026, 3, 1));
    core = await createControllerCore({ dataDir: dir, adminToken: ADMIN, fingerprint: 'FP', clock });
    const { record } = await core.baselines.push({
      yaml: 'apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: web\nspec:\n  resources:\n    - file: /srv/a\n      content: "a"\n      risk: high\n    - file: /srv/b\n      content: "b"\n      risk: high\n',
      file: 'web.yaml',
      sources: {},
    });
    const fleet = new FleetHistory(core, clock, { name: record.name, version: record.version });
    const h = await fleet.host('h1');
    for (let i = 0; i < 4; i++) {
      await fleet.decided(h, 'file:/srv/a', 'approve', 60_000);
      await fleet.decided(h, 'file:/srv/b', 'reject', 60_000);
      clock.advance(3_600_000);
    }
    await core.tuning.refresh();
  });
  after(async () => {
    await core.close();
    rmSync(dir, { recursive: true, force: true });
    process.stderr.write(`      statuses seen: ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}\n`);
  });

  it('answers every request below 500 with the error document', async function () {
    this.timeout(fuzzTimeoutMs());
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ROUTES), hostile, query, body, async ([method, route], p, q, b) => {
        const url = `${route.replace(':p', encodeURIComponent(p))}${q}`;
        const res = await core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, ...(method === 'GET' ? {} : { body: b }) });
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        assert.ok(res.status < 500, `${method} ${url} ${b} -> ${res.status} ${res.text()}`);
        if (res.status >= 400) assert.match(res.json<{ error: { code: string } }>().error.code, /^HS_[A-Z_]+$/);
      }),
      fuzzParams(),
    );
    // Still serving, and the settings are a valid document whatever was sent.
    const s = await core.app.inject({ method: 'GET', url: '/api/v1/settings/autotune', headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(s.status, 200);
    assert.ok(['off', 'bounded'].includes(s.json<{ mode: string }>().mode));
  });
});
