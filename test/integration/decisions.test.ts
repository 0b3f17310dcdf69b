// Operator decisions on the agent itself: an approval repairs the drift it answers, once; a rejection accepts exactly
// that drift until it expires, and then the resource is enforced again. Real files, a real engine and store, in process;
// the engine's clock is the test's, so an expiry is reached without waiting.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Agent } from '../../agent/agent.js';
import { composeAgent } from '../../agent/compose.js';
import { DEFAULT_SETTINGS } from '../../agent/settings.js';
import { AgentStore } from '../../agent/store/store.js';
import { parseBaseline } from '../../lib/baseline/index.js';
import { ManualClock } from '../../lib/clock.js';
import { silentLogger } from '../../lib/log.js';
import { tempDir, waitFor } from '../helpers/agent.js';

describe('operator decisions on the agent', function () {
  this.timeout(30_000);
  let t: { dir: string; cleanup: () => void };
  let store: AgentStore;
  let agent: Agent;
  let clock: ManualClock;
  let file: string;
  let motd: string;
  const id = (): string => `file:${file}`;
  const events = (resource = id()): string[] => store.queryAudit({ resource }).map((e) => e.event);
  /** Every resource looked at once more, and waited for: whatever an earlier event would have done is done. */
  const settle = async (): Promise<void> => {
    agent.engine.enqueueAll('resync');
    await agent.engine.idle();
  };

  beforeEach(async () => {
    t = tempDir();
    file = path.join(t.dir, 'sshd_config');
    motd = path.join(t.dir, 'motd');
    writeFileSync(file, 'PermitRootLogin no\n');
    writeFileSync(motd, 'welcome\n');
    store = AgentStore.open(path.join(t.dir, 'state'));
    clock = new ManualClock(Date.now());
    agent = composeAgent({ settings: { ...DEFAULT_SETTINGS, stateDir: path.join(t.dir, 'state') }, log: silentLogger, store, clock });
    const b = parseBaseline(
      `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: d }\nspec:\n  resources:\n    - file: ${file}\n      content: "PermitRootLogin no\\n"\n      risk: high\n    - file: ${motd}\n      content: "welcome\\n"\n`,
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
    await settle();
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
    await settle();
    assert.equal(readFileSync(file, 'utf8'), 'PermitRootLogin yes\n');
    assert.ok(!events().includes('repaired'));
  });

  it('a rejection accepts exactly that drift until it expires, then the resource is enforced again', async () => {
    writeFileSync(motd, 'pinned by a vendor\n');
    await waitFor(() => events(`file:${motd}`).filter((e) => e === 'repaired').length === 1, 10_000, 'repaired once');
    // An operator accepts this drift for a minute (rejecting its repair): it stands, and is not recorded again.
    writeFileSync(motd, 'pinned by a vendor\n');
    await agent.reject(`file:${motd}`, 'vendor hotfix', clock.now() + 60_000);
    await settle();
    const accepted = events(`file:${motd}`).length;
    writeFileSync(motd, 'pinned by a vendor\n');
    await settle();
    assert.equal(readFileSync(motd, 'utf8'), 'pinned by a vendor\n');
    assert.equal(events(`file:${motd}`).length, accepted, 'the accepted drift is left alone and not recorded again');
    // A different drift is not covered by the exception: it is repaired as any other.
    writeFileSync(motd, 'something else\n');
    await waitFor(() => readFileSync(motd, 'utf8') === 'welcome\n', 10_000, 'another drift repaired');
    // The accepted one again, until the exception expires: then it is recorded as expired and repaired.
    writeFileSync(motd, 'pinned by a vendor\n');
    await settle();
    assert.equal(readFileSync(motd, 'utf8'), 'pinned by a vendor\n');
    clock.advance(60_000);
    await settle();
    assert.equal(readFileSync(motd, 'utf8'), 'welcome\n');
    const tail = events(`file:${motd}`).slice(-3);
    assert.deepEqual(tail, ['exception_expired', 'drift_detected', 'repaired']);
  });
});
