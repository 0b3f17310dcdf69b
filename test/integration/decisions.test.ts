// Operator decisions on the agent itself: an approval repairs the drift it answers, once; a rejection accepts exactly
// that drift until it expires. Real files, a real engine and store, in process.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Agent } from '../../agent/agent.js';
import { composeAgent } from '../../agent/compose.js';
import { DEFAULT_SETTINGS } from '../../agent/settings.js';
import { AgentStore } from '../../agent/store/store.js';
import { parseBaseline } from '../../lib/baseline/index.js';
import { silentLogger } from '../../lib/log.js';
import { tempDir, waitFor } from '../helpers/agent.js';

describe('operator decisions on the agent', function () {
  this.timeout(30_000);
  let t: { dir: string; cleanup: () => void };
  let store: AgentStore;
  let agent: Agent;
  let file: string;
  const id = (): string => `file:${file}`;
  const events = (): string[] => store.queryAudit({ resource: id() }).map((e) => e.event);

  beforeEach(async () => {
    t = tempDir();
    file = path.join(t.dir, 'sshd_config');
    writeFileSync(file, 'PermitRootLogin no\n');
    store = AgentStore.open(path.join(t.dir, 'state'));
    agent = composeAgent({ settings: { ...DEFAULT_SETTINGS, stateDir: path.join(t.dir, 'state') }, log: silentLogger, store });
    const b = parseBaseline(
      `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: d }\nspec:\n  resources:\n    - file: ${file}\n      content: "PermitRootLogin no\\n"\n      risk: high\n`,
      { file: 'd.yaml' },
    );
    await agent.activate([b], { origin: 'local' });
    await agent.start();
  });

  afterEach(async () => {
    await agent.stop();
    store.close();
    t.cleanup();
  });

  it('an approval repairs the escalated drift once; the next drift is escalated again', async () => {
    writeFileSync(file, 'PermitRootLogin yes\n');
    await waitFor(() => events().includes('escalated'), 10_000, 'escalated');
    assert.equal(readFileSync(file, 'utf8'), 'PermitRootLogin yes\n');
    await agent.approve(id());
    await waitFor(() => readFileSync(file, 'utf8') === 'PermitRootLogin no\n', 10_000, 'approved repair');
    writeFileSync(file, 'PermitRootLogin prohibit-password\n');
    await waitFor(() => events().filter((e) => e === 'escalated').length === 2, 10_000, 'second escalation');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(readFileSync(file, 'utf8'), 'PermitRootLogin prohibit-password\n', 'the approval does not carry over');
    assert.deepEqual(events().filter((e) => e !== 'drift_detected'), ['escalated', 'approved', 'repaired', 'escalated']);
  });

  it('an approval that arrives after the drift was undone by hand does not cover a later drift', async () => {
    writeFileSync(file, 'PermitRootLogin yes\n');
    await waitFor(() => events().includes('escalated'), 10_000, 'escalated');
    writeFileSync(file, 'PermitRootLogin no\n');
    await agent.approve(id());
    await agent.engine.idle();
    writeFileSync(file, 'PermitRootLogin yes\n');
    await waitFor(() => events().filter((e) => e === 'escalated').length === 2, 10_000, 'later drift escalated');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(readFileSync(file, 'utf8'), 'PermitRootLogin yes\n');
    assert.ok(!events().includes('repaired'));
  });

  it('a rejection accepts exactly that drift until it expires, then it is enforced again', async () => {
    writeFileSync(file, 'PermitRootLogin yes\n');
    await waitFor(() => events().includes('escalated'), 10_000, 'escalated');
    await agent.reject(id(), 'vendor hotfix', Date.now() + 60_000);
    agent.engine.enqueueAll('resync');
    await agent.engine.idle();
    assert.equal(readFileSync(file, 'utf8'), 'PermitRootLogin yes\n');
    assert.ok(events().includes('rejected'));
    // A different drift is not covered by the exception: it is escalated (high risk) like any other.
    writeFileSync(file, 'PermitRootLogin without-password\n');
    await waitFor(() => events().filter((e) => e === 'escalated').length === 2, 10_000, 'new drift escalated');
    // An exception that has expired is recorded as such and the drift is judged again.
    writeFileSync(file, 'PermitRootLogin yes\n');
    await agent.reject(id(), 'short', Date.now() + 50);
    await new Promise((r) => setTimeout(r, 100));
    agent.engine.enqueueAll('resync');
    await waitFor(() => events().includes('exception_expired'), 10_000, 'exception expired');
  });
});
