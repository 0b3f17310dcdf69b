// The engine contains what a resource kind, a listener or the store does wrong: each fault is that resource's failure
// (recorded, retried with backoff, escalated after five in a row), and a real file next to it keeps being repaired.
// A deliberately faulty kind stands in for a kind with a bug, which cannot be had for real; the rest is real.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Engine } from '../../agent/engine/engine.js';
import { registry } from '../../agent/resources/registry.js';
import type { Change, HostContext, Resource, ResourceKind } from '../../agent/resources/resource.js';
import { AgentStore } from '../../agent/store/store.js';
import type { AuditEntry } from '../../agent/store/types.js';
import type { ResourceDecl } from '../../lib/baseline/types.js';
import { ManualClock } from '../../lib/clock.js';
import { silentLogger } from '../../lib/log.js';
import { tempDir, waitFor } from '../helpers/agent.js';
import { testDecl, testHost } from '../helpers/resource-runner.js';

type Fault = 'observe-throws' | 'observe-hangs' | 'diff-throws' | 'summarize-throws' | 'desired-throws' | 'apply-throws' | 'commit-throws' | 'watch-throws' | 'close-throws';

/** A kind that is always drifted and does what its `fault` field says at the step named. */
class FaultyResource implements Resource<{ n: number }> {
  readonly id: string;
  readonly fault: Fault;
  constructor(readonly decl: ResourceDecl) {
    this.id = decl.id;
    this.fault = decl.fields.fault as Fault;
  }
  async observe(): Promise<{ n: number }> {
    if (this.fault === 'observe-throws') throw new TypeError('observe blew up');
    if (this.fault === 'observe-hangs') return new Promise(() => undefined);
    return { n: 1 };
  }
  diff(): Change[] {
    if (this.fault === 'diff-throws') throw new RangeError('diff blew up');
    if (this.fault === 'commit-throws' || this.fault === 'watch-throws' || this.fault === 'close-throws') return [];
    return [{ field: 'value', observed: 1, desired: 2 }];
  }
  async apply(): Promise<void> {
    if (this.fault === 'apply-throws') throw new Error('apply blew up');
  }
  commit(): void {
    if (this.fault === 'commit-throws') throw new Error('commit blew up');
  }
  summarize(): Record<string, unknown> {
    if (this.fault === 'summarize-throws') throw new Error('summarize blew up');
    return { n: 1 };
  }
  desired(): Record<string, unknown> {
    if (this.fault === 'desired-throws') throw new Error('desired blew up');
    return { n: 2 };
  }
  async watch(): Promise<() => void> {
    if (this.fault === 'watch-throws') throw new Error('watch blew up');
    return () => undefined;
  }
  async close(): Promise<void> {
    if (this.fault === 'close-throws') throw new Error('close blew up');
  }
}

const faultyKind: ResourceKind = { type: 'faulty', create: (decl) => new FaultyResource(decl) };

describe('the engine contains faults', function () {
  this.timeout(30_000);
  let t: { dir: string; cleanup: () => void };
  let engine: Engine | undefined;
  let store: AgentStore | undefined;
  let host: HostContext;
  let records: AuditEntry[];
  const file = (): string => path.join(t.dir, 'motd');
  const fileId = (): string => `file:${file()}`;

  before(() => (registry as Map<string, ResourceKind>).set('faulty', faultyKind));
  after(() => (registry as Map<string, ResourceKind>).delete('faulty'));

  beforeEach(() => {
    t = tempDir('hs-contain-');
    host = testHost({ stateDir: path.join(t.dir, 'state') });
    records = [];
  });

  afterEach(async () => {
    await engine?.stop();
    engine = undefined;
    store?.close();
    store = undefined;
    t.cleanup();
  });

  async function start(faults: Fault[], opts: { clock?: ManualClock; reconcileTimeoutMs?: number; withStore?: boolean } = {}): Promise<Engine> {
    if (opts.withStore) store = AgentStore.open(path.join(t.dir, 'state'));
    const e = new Engine({ host, clock: opts.clock ?? new ManualClock(Date.now()), log: silentLogger, ...(store ? { store } : {}), ...(opts.reconcileTimeoutMs ? { reconcileTimeoutMs: opts.reconcileTimeoutMs } : {}) });
    engine = e;
    e.onAudit((r) => records.push(r));
    await e.setResources([
      { decl: testDecl('file', file(), { content: 'kept\n', mode: '0644' }), baseline: { name: 'b', version: 1 } },
      ...faults.map((f) => ({ decl: testDecl('faulty', f, { fault: f }), baseline: { name: 'b', version: 1 } })),
    ]);
    await e.start(3_600_000);
    return e;
  }

  /** Tampers with the real file and waits for its repair: the engine goes on enforcing. */
  async function stillRepairs(e: Engine): Promise<void> {
    const before = records.filter((r) => r.resource === fileId() && r.event === 'repaired').length;
    writeFileSync(file(), 'tampered\n');
    e.enqueueAll('resync');
    await waitFor(() => records.filter((r) => r.resource === fileId() && r.event === 'repaired').length > before, 10_000, 'the file repaired');
    assert.equal(readFileSync(file(), 'utf8'), 'kept\n');
  }

  const failuresOf = (id: string): string[] => records.filter((r) => r.resource === `faulty:${id}` && r.event === 'repair_failed').map((r) => r.detail ?? '');

  it('a kind that throws in observe, diff, summarize, desired or apply fails that resource only, with the cause recorded', async () => {
    const faults: Fault[] = ['observe-throws', 'diff-throws', 'summarize-throws', 'desired-throws', 'apply-throws'];
    const e = await start(faults);
    for (const f of faults) assert.equal(failuresOf(f).length, 1, `${f}: ${JSON.stringify(records.filter((r) => r.resource === `faulty:${f}`))}`);
    assert.match(failuresOf('observe-throws')[0] ?? '', /HS_HOST_IO: observe blew up/);
    assert.match(failuresOf('summarize-throws')[0] ?? '', /HS_HOST_IO: summarize blew up/);
    assert.match(failuresOf('desired-throws')[0] ?? '', /HS_HOST_IO: desired blew up/);
    assert.match(failuresOf('apply-throws')[0] ?? '', /HS_HOST_IO: apply blew up/);
    assert.deepEqual(
      e.results().filter((r) => r.id.startsWith('faulty:')).map((r) => r.outcome),
      faults.map(() => 'failed'),
    );
    await stillRepairs(e);
  });

  it('a kind that throws in commit, watch or close costs nothing but a log line', async () => {
    const e = await start(['commit-throws', 'watch-throws', 'close-throws']);
    assert.deepEqual(records.filter((r) => r.resource?.startsWith('faulty:')), []);
    await stillRepairs(e);
    await e.setResources([]);
    assert.deepEqual(e.resourceIds(), []);
  });

  it('an observation that never returns is recorded as timed out at the deadline, and the resource is not piled up on', async () => {
    const e = await start(['observe-hangs'], { reconcileTimeoutMs: 300 });
    await waitFor(() => failuresOf('observe-hangs').length === 1, 10_000, 'the timeout recorded');
    assert.match(failuresOf('observe-hangs')[0] ?? '', /HS_HOST_TIMEOUT: the reconcile of faulty:observe-hangs did not finish within 0.3 s/);
    await stillRepairs(e);
    await stillRepairs(e);
    assert.equal(failuresOf('observe-hangs').length, 1, 'still hung: no second reconcile started beside the first');
    assert.ok(e.stats.timeouts >= 1);
  });

  it('a listener that throws is skipped; the records and the repairs go on', async () => {
    const e = await start([]);
    e.onAudit(() => {
      throw new Error('listener blew up');
    });
    await stillRepairs(e);
    await stillRepairs(e);
    assert.ok(e.stats.listenerErrors >= 4, String(e.stats.listenerErrors));
  });

  it('a store that cannot take records any more: counted, and the host stays enforced', async () => {
    const e = await start([], { withStore: true });
    store?.close();
    await stillRepairs(e);
    assert.ok(e.stats.recordErrors >= 2, String(e.stats.recordErrors));
  });

  it('retries a failing repair after its backoff, on the engine clock, and escalates at the fifth failure in a row', async () => {
    const clock = new ManualClock(Date.now());
    const e = await start(['apply-throws'], { clock });
    const escalations = (): number => records.filter((r) => r.resource === 'faulty:apply-throws' && r.event === 'escalated').length;
    assert.equal(failuresOf('apply-throws').length, 1);
    // Retry n waits 2^(n-1) s ± 20 %: not a moment before 80 % of it, always by 120 %.
    for (let n = 1; n <= 6; n++) {
      const step = 1000 * 2 ** (n - 1);
      clock.advance(0.8 * step - 1);
      await e.idle();
      assert.equal(failuresOf('apply-throws').length, n, `retry ${n} waited for its backoff`);
      clock.advance(0.4 * step + 1);
      await e.idle();
      assert.equal(failuresOf('apply-throws').length, n + 1, `retry ${n} came by 120 % of its step`);
      assert.equal(escalations(), n + 1 >= 5 ? 1 : 0, `after ${n + 1} failures`);
    }
    const escalated = records.find((r) => r.resource === 'faulty:apply-throws' && r.event === 'escalated');
    assert.match(escalated?.detail ?? '', /repair failed 5 time\(s\): HS_HOST_IO: apply blew up/);
  });
});
