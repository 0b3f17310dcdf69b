// homeostatctl's tuning commands against a real controller process started with --autotune, an agent speaking the real
// protocol over a real websocket, and escalations decided with `homeostatctl approve` and `reject`: proposals refreshed,
// shown and backtested, autotuning set and applying what its bounds allow, a revert, an operator's accept.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir, waitFor } from '../helpers/agent.js';
import { WireAgent, wireEvent } from '../helpers/wire-agent.js';

const CONTROLLER_MAIN = fileURLToPath(new URL('../../controller/main.js', import.meta.url));
const CTL_MAIN = fileURLToPath(new URL('../../controller/ctl/main.js', import.meta.url));
const TOKEN = 'tuning-ctl-operator-token';

describe('homeostatctl: outcomes, proposals, backtests and autotune', function () {
  this.timeout(120_000);
  const tmp = tempDir('hs-tuning-ctl-');
  let child: ChildProcess;
  let url = '';
  let stderr = '';
  let agent: WireAgent;
  let seq = 0;

  const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve, reject) => {
      const c = spawn(process.execPath, [CTL_MAIN, '--server', url, '--token', TOKEN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, USER: 'olivia' } });
      let out = '';
      let err = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr.on('data', (d: Buffer) => (err += d.toString()));
      c.on('error', reject);
      c.on('close', (code) => resolve({ code: code ?? -1, stdout: out, stderr: err }));
    });
  const ok = async <T = Record<string, unknown>>(args: string[]): Promise<T> => {
    const r = await run([...args, '--json']);
    assert.equal(r.code, 0, `homeostatctl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  /** What the agent records, sent as its outbox does. */
  const send = async (resource: string, events: [string, string?][]): Promise<void> => {
    await agent.deliver(
      events.map(([event, trigger]) =>
        wireEvent(++seq, {
          resource,
          event,
          trigger: trigger ?? 'watch',
          baseline: 'web',
          version: 1,
          detail: event === 'drift_detected' ? 'content: sha256:aa -> sha256:bb' : '',
        }),
      ),
    );
  };
  const decide = async (resource: string, action: 'approve' | 'reject'): Promise<void> => {
    await send(resource, [['drift_detected'], ['escalated']]);
    type Esc = { id: number; resource: string };
    let open: Esc[] = [];
    await waitFor(async () => (open = await ok<Esc[]>(['escalations'])).some((e) => e.resource === resource), 10_000, `escalation of ${resource}`);
    const id = String(open.find((e) => e.resource === resource)?.id);
    await ok(action === 'approve' ? ['approve', id] : ['reject', id, '--reason', 'kept on purpose']);
    if (action === 'approve') await send(resource, [['approved', 'controller'], ['drift_detected', 'controller'], ['repaired', 'controller']]);
    else await send(resource, [['rejected', 'controller']]);
  };

  before(async () => {
    child = spawn(process.execPath, [CONTROLLER_MAIN, 'run', '--listen', '127.0.0.1:0', '--insecure-http', '--data-dir', path.join(tmp.dir, 'ctl'), '--autotune', 'bounded', '--log-level', 'info'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, HOMEOSTAT_ADMIN_TOKEN: TOKEN },
    });
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor(() => stderr.includes('"controller listening"') || child.exitCode !== null, 20_000, 'controller listening');
    url = (JSON.parse(stderr.split('\n').find((l) => l.includes('"controller listening"')) ?? '{}') as { url: string }).url;
    assert.ok(url, stderr);
  });
  after(async () => {
    agent?.close();
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    tmp.cleanup();
  });

  it('starts with the autotune mode of --autotune, and sets it', async () => {
    const s = await ok(['autotune']);
    assert.deepEqual([s.mode, s.updatedBy], ['bounded', 'command line']);
    const off = await ok(['autotune', 'off']);
    assert.deepEqual([off.mode, off.updatedBy], ['off', 'olivia']);
    const human = await run(['autotune']);
    assert.match(human.stdout, /^autotune off, minimum confidence 0.8, webhook none; proposals every 1h over 30d \(set by olivia /);
    const bad = await run(['autotune', 'sometimes']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /mode: expected one of off, bounded/);
  });

  it('turns escalations decided with approve and reject into outcomes and proposals', async () => {
    const file = path.join(tmp.dir, 'web.yaml');
    writeFileSync(file, 'apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: web\nspec:\n  resources:\n    - file: /srv/motd\n      content: "hi\\n"\n      risk: high\n    - file: /srv/issue\n      content: "issue\\n"\n      risk: high\n');
    await ok(['baseline', 'push', file]);
    const { token } = await ok<{ token: string }>(['token', 'create', '--ttl', '1h']);
    agent = await WireAgent.enroll(url.replace('http:', 'ws:'), token);
    for (let i = 0; i < 5; i++) await decide('file:/srv/motd', 'approve');
    for (let i = 0; i < 2; i++) await decide('file:/srv/issue', 'reject');

    const out = await ok<{ rows: { resource: string; approvals: number; rejections: number }[] }>(['outcomes']);
    assert.deepEqual(out.rows.map((r) => [r.resource, r.approvals, r.rejections]), [['file:/srv/motd', 5, 0], ['file:/srv/issue', 0, 2]]);
    const table = await run(['outcomes']);
    assert.match(table.stdout, /^RESOURCE\s+CHANGE\s+DRIFTS\s+ESCALATED\s+APPROVED\s+REJECTED/);
    assert.match(table.stdout, /file:\/srv\/motd\s+content\s+5\s+5\s+5\s+0/);

    const proposals = await ok<{ id: number; kind: string; target: { resource: string } }[]>(['proposals', '--refresh']);
    assert.deepEqual(proposals.map((p) => [p.kind, p.target.resource]), [['auto-repair', 'file:/srv/motd'], ['exception', 'file:/srv/issue']]);
    const human = await run(['proposals']);
    assert.match(human.stdout, /auto-repair {2}open {2}confidence 0\.86 \[0\.61-0\.99\] n=5 {2}autotune no\n {4}content drift on file:\/srv\/motd approved 5 of 5 times on 1 host/);
  });

  it('backtests a proposal and a policy file', async () => {
    const [motd] = await ok<{ id: number }[]>(['proposals']);
    assert.ok(motd);
    const b = await ok<Record<string, number>>(['backtest', '--proposal', String(motd.id)]);
    assert.deepEqual([b.drifts, b.escalationsBefore, b.escalationsAfter, b.autoRepairsAfter, b.overriddenRejections], [7, 7, 2, 5, 0]);
    const file = path.join(tmp.dir, 'all.yaml');
    writeFileSync(file, 'apiVersion: homeostat/v1\nkind: Policy\nmetadata:\n  name: all\nspec:\n  rules:\n    - action: repair\n');
    const human = await run(['backtest', '--policy', file]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^drifts replayed 7: escalations 7 -> 0, auto-repairs 0 -> 7, deferred 0\noperator rejections overridden 2, critical-risk drifts auto-repaired 0\ndecided differently: escalate -> repair 7\n/);
    assert.match(human.stdout, /file:\/srv\/issue {2}escalate -> repair {2}\(all v1 spec\.rules\[0\]\) {2}OVERRIDES A REJECTION/);
    const bad = await run(['backtest']);
    assert.match(bad.stderr, /give --policy FILE or --proposal ID/);
  });

  it('applies with autotune bounded only what its bounds allow; a revert and an accept are one command each', async () => {
    await ok(['autotune', 'bounded', '--min-confidence', '0.6']);
    const after = await ok<{ id: number; kind: string; state: string; decidedBy: string | null; autotune: { reasons: string[] } }[]>(['proposals', '--refresh', '--state', 'all']);
    const motd = after.find((p) => p.kind === 'auto-repair');
    const issue = after.find((p) => p.kind === 'exception');
    assert.deepEqual([motd?.state, motd?.decidedBy], ['accepted', 'autotune']);
    assert.deepEqual([issue?.state, issue?.autotune.reasons], ['open', ['its confidence interval starts at 0.368, below 0.6']]);
    const reverted = await ok<{ state: string; reverted: { by: string; version: number } }>(['proposal', 'revert', String(motd?.id), '--reason', 'not yet']);
    assert.deepEqual([reverted.state, reverted.reverted.by, reverted.reverted.version], ['reverted', 'olivia', 2]);
    const accepted = await run(['proposal', 'accept', String(issue?.id)]);
    assert.match(accepted.stdout, /^proposal \d+ \(exception, accepted by olivia, in homeostat-tuning v3\): content drift on file:\/srv\/issue rejected 2 of 2 times/);
    const show = await run(['proposal', 'show', String(issue?.id)]);
    assert.match(show.stdout, /change: \{"match":\{"baseline":"web","resource":"file:\/srv\/issue","change":\["content"\]\},"action":"monitor"\}/);
    const again = await run(['proposal', 'accept', String(issue?.id)]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /proposal \d+ is accepted; only an open proposal can be accepted \(409 HS_CONFLICT from POST \/api\/v1\/proposals\/\d+\/accept\)/);
  });
});
