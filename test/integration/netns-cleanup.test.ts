// Cleanup of test namespaces left by crashed runs, with other test processes on the same machine: a namespace whose
// creator still runs is kept by the helpers' cleanup and by CI's sweep (.ci/sweep-netns); once that process is killed
// without cleaning up, both remove it; a record whose pid now belongs to another process does not protect it.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cleanupLeftoverNetns, listNetns, run } from '../helpers/netns.js';

const HELPER = new URL('../helpers/netns.js', import.meta.url).href;
const SWEEP = fileURLToPath(new URL('../../../.ci/sweep-netns', import.meta.url));

/** Another test run: creates a namespace through the helper, says so, and stays until killed. */
async function otherRun(name: string): Promise<{ child: ChildProcess; exited: Promise<void> }> {
  const script = `const { Netns } = await import(${JSON.stringify(HELPER)}); await Netns.create('x', { name: ${JSON.stringify(name)} }); process.stdout.write('ready\\n'); setInterval(() => undefined, 1 << 30);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`the other run exited ${code}`)));
  });
  return { child, exited };
}

describe('cleanup of namespaces left by crashed test runs', function () {
  this.timeout(30_000);
  // Names of this run only, so the sweep below touches nothing else on the machine.
  const prefix = `hs-k${randomBytes(2).toString('hex')}-`;
  const others: { child: ChildProcess; exited: Promise<void> }[] = [];
  const present = async (name: string): Promise<boolean> => (await listNetns()).includes(name);
  const sweep = async (): Promise<void> => {
    await run('bash', [SWEEP, prefix]);
  };

  after(async () => {
    for (const o of others) {
      o.child.kill('SIGKILL');
      await o.exited;
    }
    for (const name of await listNetns()) if (name.startsWith(prefix)) await run('ip', ['netns', 'del', name], { allowFail: true });
    await run('bash', [SWEEP, prefix]);
  });

  it('keeps the namespaces of a live run, and removes them once it died without cleaning up', async () => {
    const [a, b] = [`${prefix}a`, `${prefix}b`];
    const first = await otherRun(a);
    const second = await otherRun(b);
    others.push(first, second);
    await cleanupLeftoverNetns();
    await sweep();
    assert.ok(await present(a) && await present(b), 'both kept while their runs are alive');

    first.child.kill('SIGKILL');
    await first.exited;
    await cleanupLeftoverNetns();
    assert.equal(await present(a), false, 'removed by the helpers');
    assert.ok(await present(b), 'the live one kept');

    second.child.kill('SIGKILL');
    await second.exited;
    await sweep();
    assert.equal(await present(b), false, 'removed by the sweep');
  });

  it('does not take a reused pid for the creator', async () => {
    // This process is alive, but the record names another start time: the pid was reused.
    const record = async (name: string): Promise<void> => {
      mkdirSync('/run/hs-test/netns', { recursive: true });
      writeFileSync(`/run/hs-test/netns/${name}`, `${process.pid} 1\n`);
      await run('ip', ['netns', 'add', name]);
    };
    const [c, d] = [`${prefix}c`, `${prefix}d`];
    await record(c);
    await cleanupLeftoverNetns();
    assert.equal(await present(c), false, 'removed by the helpers');
    await record(d);
    await sweep();
    assert.equal(await present(d), false, 'removed by the sweep');
  });
});
