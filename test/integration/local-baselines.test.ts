// Local baselines are the files configured now: a restart without a baseline file stops enforcing what that file said
// (a cached copy is only the fallback for a configured file that cannot be loaded), and the audit says why.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { runAgent, startAgentDaemon, tempDir, writeBaseline } from '../helpers/agent.js';

interface Status {
  baselines: { name: string; version: number; origin: string }[];
}

describe('daemon: local baselines follow the configuration', function () {
  this.timeout(60_000);
  let t: { dir: string; cleanup: () => void };
  let stateDir: string;
  beforeEach(() => {
    t = tempDir('hs-local-');
    stateDir = path.join(t.dir, 'state');
  });
  afterEach(() => t.cleanup());

  const baseline = (name: string): string =>
    writeBaseline(t.dir, name, `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: ${name}\nspec:\n  resources:\n    - file: ${t.dir}/${name}.txt\n      content: "${name}\\n"\n`);

  /** Runs the daemon until ready and stops it; returns what it logged as ready. */
  async function runOnce(args: string[]): Promise<{ resources: number; baselines: string[] }> {
    const d = startAgentDaemon(['--state-dir', stateDir, '--config', '/dev/null', ...args]);
    try {
      await d.ready();
    } finally {
      assert.equal(await d.stop(), 0);
    }
    const line = d.stderr.split('\n').find((l) => l.includes('"agent ready"')) ?? '{}';
    return JSON.parse(line) as { resources: number; baselines: string[] };
  }

  const status = async (): Promise<Status> => JSON.parse((await runAgent(['status', '--json', '--state-dir', stateDir, '--config', '/dev/null'])).stdout) as Status;

  it('started without baseline files, enforces none of the local ones cached before, and records their removal', async () => {
    const first = await runOnce(['--baseline', baseline('alpha')]);
    assert.deepEqual(first, { ...first, resources: 1, baselines: ['alpha@1'] });

    const second = await runOnce([]);
    assert.deepEqual([second.resources, second.baselines], [0, []]);
    assert.deepEqual((await status()).baselines, []);
    const audit = JSON.parse((await runAgent(['audit', '--json', '--state-dir', stateDir, '--event', 'baseline_removed'])).stdout) as { entries: { detail: string; trigger: string }[] };
    assert.equal(audit.entries.length, 1);
    assert.match(audit.entries[0]?.detail ?? '', /^alpha v1: its file is no longer configured/);
    assert.equal(audit.entries[0]?.trigger, 'startup');
  });

  it('with another file configured, enforces that one only', async () => {
    await runOnce(['--baseline', baseline('alpha')]);
    const next = await runOnce(['--baseline', baseline('beta')]);
    assert.deepEqual(next.baselines, ['beta@1']);
    assert.deepEqual((await status()).baselines.map((b) => b.name), ['beta']);
  });

  it('keeps the last good local baselines when the configured file cannot be loaded', async () => {
    const file = baseline('alpha');
    await runOnce(['--baseline', file]);
    writeFileSync(file, 'apiVersion: homeostat/v1\nkind: Baseline\nmetadata: [broken\n');
    const again = await runOnce(['--baseline', file]);
    assert.deepEqual([again.resources, again.baselines], [1, ['alpha@1']]);
  });
});
