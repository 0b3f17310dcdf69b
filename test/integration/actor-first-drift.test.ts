// The actor of a file drift through the real daemon, with no policy rule on actors: a named script changes a managed file
// (in a folder the agent's own start-up pass creates, and in one that exists), the agent repairs it, and the
// `drift_detected` record names the script's interpreter and pid from the real audit log — for the first drift after the
// start and for later ones. The rules carry a key of this test process, so parallel runs never remove each other's.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { auditdState } from '../../agent/host/auditd.js';
import type { Actor } from '../../lib/policy/actor.js';
import { runAgent, startAgentDaemon, tempDir, waitFor, writeBaseline, type DaemonProcess } from '../helpers/agent.js';
import { run } from '../helpers/netns.js';

const KEY = `hs-f${process.pid}`;

interface Entry {
  seq: number;
  resource: string | null;
  event: string;
  trigger: string | null;
  actor?: Actor | null;
}

async function entries(stateDir: string, resource: string): Promise<Entry[]> {
  const r = await runAgent(['audit', '--json', '--state-dir', stateDir]);
  if (r.code !== 0) throw new Error(`audit exited ${r.code}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { entries: Entry[] }).entries.filter((e) => e.resource === resource);
}

/** Runs `/usr/bin/bash SCRIPT FILE` to its end; its pid. */
function runScript(script: string, file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/bash', [script, file], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(child.pid ?? -1) : reject(new Error(`${script} exited ${code}`))));
  });
}

describe('the actor of a file drift, first and later, with no rule on actors', function () {
  this.timeout(60_000);
  const tmp = tempDir('hs-actor-first-');
  const created = path.join(tmp.dir, 'made-by-agent', 'app.conf'); // its folder does not exist until the agent's first pass
  const existing = path.join(tmp.dir, 'there', 'motd');
  const stateDir = path.join(tmp.dir, 'state');
  const script = path.join(tmp.dir, 'x.sh');
  let agent: DaemonProcess | undefined;

  before(async () => {
    const s = await auditdState();
    if (!s.running && existsSync('/usr/sbin/auditd')) await run('/usr/sbin/auditd', [], { allowFail: true });
    await waitFor(async () => (await auditdState()).running, 5000, 'auditd running (apt-get install -y auditd)');
    mkdirSync(path.dirname(existing));
    writeFileSync(existing, 'motd\n');
    // The script writes once, then lives on a moment as real ones do.
    writeFileSync(script, 'echo "changed by x.sh" > "$1"\nsleep 0.3\n', { mode: 0o755 });
    const baseline = writeBaseline(
      tmp.dir,
      'first',
      `apiVersion: homeostat/v1
kind: Baseline
metadata: { name: first }
spec:
  resources:
    - file: ${created}
      content: "app\\n"
    - file: ${existing}
      content: "motd\\n"
`,
    );
    agent = startAgentDaemon(['--baseline', baseline, '--state-dir', stateDir], { env: { HOMEOSTAT_AUDIT_KEY: KEY } });
    await agent.ready();
  });

  after(async () => {
    await agent?.stop();
    await run('auditctl', ['-D', '-k', KEY], { allowFail: true });
    tmp.cleanup();
  });

  /** Changes `file` with the script and returns the actor of the drift it caused, once the drift is repaired. */
  async function driftBy(file: string): Promise<{ pid: number; actor: Actor | null | undefined }> {
    const id = `file:${file}`;
    const before = (await entries(stateDir, id)).filter((e) => e.event === 'repaired').length;
    const pid = await runScript(script, file);
    await waitFor(async () => (await entries(stateDir, id)).filter((e) => e.event === 'repaired').length > before, 15_000, `${id} repaired`);
    const all = await entries(stateDir, id);
    const drift = all.filter((e) => e.event === 'drift_detected' && e.trigger === 'watch').at(-1);
    const repaired = all.filter((e) => e.event === 'repaired').at(-1);
    assert.ok(drift && repaired && drift.seq < repaired.seq, `drift_detected before repaired: ${JSON.stringify(all)}`);
    return { pid, actor: drift.actor };
  }

  for (const [what, file] of [
    ['in a folder the agent created at start', created],
    ['in a folder that was there', existing],
  ] as const) {
    it(`${what}: the first drift after the start and a later one name the script's interpreter and pid`, async () => {
      for (const n of ['first', 'later']) {
        const { pid, actor } = await driftBy(file);
        assert.deepEqual([actor?.source, actor?.exe, actor?.pid], ['audit', '/usr/bin/bash', pid], `${n} drift: ${JSON.stringify(actor)}`);
        assert.match(actor?.cmdline ?? '', /x\.sh/);
      }
    });
  }
});
