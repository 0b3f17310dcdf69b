// homeostatctl against a real controller process over TLS, with a real agent enrolled: token create, baseline push and
// list, rollout start, agents, escalations, approve and reject, events; and the controller's operator token given as a
// file (or, warned, on the command line without staying visible in ps).
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { startAgentDaemon, tempDir, waitFor, type DaemonProcess } from '../helpers/agent.js';
import { cleanEnv, runCtl, startControllerProcess, type ControllerProcess } from '../helpers/ctl.js';
import { WireAgent, wireEvent } from '../helpers/wire-agent.js';

const content = (file: string): string | undefined => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
};

describe('homeostatctl against a real controller', function () {
  this.timeout(90_000);
  const tmp = tempDir('hs-ctl-');
  const dataDir = path.join(tmp.dir, 'controller');
  const tokenFile = path.join(tmp.dir, 'operator.token');
  const managed = path.join(tmp.dir, 'managed');
  let ctl: ControllerProcess;
  let agent: DaemonProcess | undefined;

  const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => cleanEnv({ HOMEOSTAT_CTL_CONFIG: path.join(tmp.dir, 'ctl.yaml'), ...extra });
  const run = (args: string[], extra: NodeJS.ProcessEnv = {}) => runCtl(['--server', ctl.url, '--token-file', tokenFile, '--ca', path.join(dataDir, 'tls.crt'), ...args], env(extra));
  const ok = async <T = unknown>(args: string[]): Promise<T> => {
    const r = await run([...args, '--json']);
    assert.equal(r.code, 0, `homeostatctl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };

  before(async () => {
    mkdirSync(managed, { recursive: true });
    writeFileSync(tokenFile, 'ctl-test-operator-token\n', { mode: 0o600 });
    ctl = await startControllerProcess(['--data-dir', dataDir, '--admin-token-file', tokenFile]);
  });
  after(async () => {
    await agent?.stop();
    await ctl?.stop();
    tmp.cleanup();
  });

  it('refuses a wrong token and names the error', async () => {
    const r = await run(['agents'], {});
    assert.equal(r.code, 0, r.stderr);
    const bad = await runCtl(['--server', ctl.url, '--token', 'wrong', '--ca', path.join(dataDir, 'tls.crt'), 'agents'], env());
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /401 HS_AUTH/);
    assert.match(bad.stderr, /the operator token was refused: pass the one in the controller's DATA_DIR\/admin\.token with --token-file/);
  });

  it('creates a join token, pushes and rolls out a baseline, and lists the enrolled agent enforcing it', async () => {
    const { token, allowLabels } = await ok<{ token: string; allowLabels: string[] }>(['token', 'create', '--ttl', '1h', '--labels', 'role=web', '--allow-labels', 'zone=eu-*']);
    assert.match(token, /^hsj2\./);
    assert.deepEqual(allowLabels, ['zone=eu-*']);
    const file = path.join(tmp.dir, 'web.yaml');
    writeFileSync(
      file,
      `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: { role: web }\n  resources:\n    - file: ${managed}/motd\n      content: "hello\\n"\n    - file: ${managed}/sshd_config\n      source: files/sshd_config\n      risk: high\n    - file: ${managed}/limits.conf\n      content: "nofile 1024\\n"\n      risk: high\n`,
    );
    mkdirSync(path.join(tmp.dir, 'files'), { recursive: true });
    writeFileSync(path.join(tmp.dir, 'files', 'sshd_config'), 'PermitRootLogin no\n');
    const pushed = await ok<{ name: string; version: number; created: boolean }>(['baseline', 'push', file]);
    assert.deepEqual({ ...pushed, sha256: undefined }, { name: 'web', version: 1, created: true, sha256: undefined });
    const list = await ok<{ name: string; latest: number }[]>(['baseline', 'list']);
    assert.deepEqual(list.map((b) => [b.name, b.latest]), [['web', 1]]);
    const rollout = await ok<{ id: number; state: string }>(['rollout', 'start', 'web', '1', '--all-at-once']);
    assert.equal(rollout.state, 'completed');

    agent = startAgentDaemon(['--state-dir', path.join(tmp.dir, 'agent'), '--controller', ctl.url.replace('https:', 'wss:'), '--token', token, '--labels', 'zone=eu-west']);
    await waitFor(() => content(path.join(managed, 'motd')) === 'hello\n', 30_000, 'the agent enforcing the rolled-out version').catch(async (err: unknown) => {
      throw new Error(`${String(err)}\n${agent?.stderr ?? ''}`);
    });
    const agents = await ok<{ id: string; connected: boolean; labels: Record<string, string>; baselines: { name: string; version: number }[] }[]>(['agents']);
    assert.equal(agents.length, 1);
    assert.equal(agents[0]?.connected, true);
    assert.deepEqual(agents[0]?.labels, { role: 'web', zone: 'eu-west' }, 'the token\'s label and the one it allowed the agent to ask for');
    const human = await run(['agents']);
    assert.match(human.stdout, /^ID\s+HOST\s+STATE/m);
    assert.match(human.stdout, /connected/);
    const id = agents[0]?.id ?? '';
    const shown = await run(['agents', 'show', id]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^agent \\S+ \\(${id}\\): connected since \\S+ from `, 'm'));
    assert.match(shown.stdout, /^labels +(role=web, zone=eu-west|zone=eu-west, role=web) \(token: role=web; requested: zone=eu-west\)$/m);
    assert.match(shown.stdout, /^baselines +web v1/m);
    assert.match(shown.stdout, /^open escalations(: none| \(\d+\):)$/m);
    assert.match(shown.stdout, /^recent events \(the latest \d+, newest first\):$/m);
    assert.doesNotMatch(shown.stdout, /[ \t]$/m, 'no trailing blanks');
    const unknown = await run(['agents', 'show', 'no-such-host']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, new RegExp(`no agent "no-such-host" by id or hostname; agents: ${id}`));
  });

  it('lists escalations from the agent, and approves one (repaired) and rejects another (left as an exception)', async () => {
    writeFileSync(path.join(managed, 'sshd_config'), 'PermitRootLogin yes\n');
    writeFileSync(path.join(managed, 'limits.conf'), 'nofile 65536\n');
    type Esc = { id: number; resource: string; status: string; outcome: string | null };
    let open: Esc[] = [];
    await waitFor(async () => (open = await ok<Esc[]>(['escalations'])).length === 2, 30_000, 'two escalations');
    const ssh = open.find((e) => e.resource.endsWith('sshd_config'));
    const limits = open.find((e) => e.resource.endsWith('limits.conf'));
    assert.ok(ssh && limits);
    const human = await run(['escalations']);
    assert.match(human.stdout, /^ID\s+AGENT\s+RESOURCE\s+KIND\s+VERSION\s+OPENED\s+LAST SEEN\s+REPEATS\s+STATUS\s+ACTOR$/m);
    assert.match(human.stdout, new RegExp(`^${ssh.id}\\s+\\S+\\s+file:${managed}/sshd_config\\s+escalated\\s+web v1\\s`, 'm'));
    assert.doesNotMatch(human.stdout, /[ \t]$/m, 'no trailing blanks');

    // What an approval would repair: the observed state and the diff, shown once, and how to decide.
    const shown = await run(['escalations', 'show', String(ssh.id)]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^escalation ${ssh.id}: file:${managed}/sshd_config on \\S+ \\(ag-[0-9a-f]+\\), open$`, 'm'));
    assert.match(shown.stdout, /^baseline +web v1$/m);
    assert.match(shown.stdout, /^observed +.*exists=true/m);
    assert.equal(shown.stdout.split('-PermitRootLogin yes').length - 1, 1, `the diff once:\n${shown.stdout}`);
    assert.match(shown.stdout, new RegExp(`^decide: homeostatctl approve ${ssh.id} `, 'm'));
    assert.doesNotMatch(shown.stdout, /[ \t]$/m, 'no trailing blanks');

    // The drift changes while the escalation waits: the record follows it.
    writeFileSync(path.join(managed, 'sshd_config'), 'PermitRootLogin prohibit-password\n');
    await waitFor(async () => (await ok<Esc & { repeats: number }>(['escalations', 'show', String(ssh.id)])).repeats >= 1, 30_000, 'the repeat counted');
    const again1 = await run(['escalations', 'show', String(ssh.id)]);
    assert.match(again1.stdout, /^ {2}-PermitRootLogin prohibit-password$/m, 'the latest diff');
    assert.doesNotMatch(again1.stdout, /^\s*-PermitRootLogin yes$/m, 'not the first one');
    assert.match(again1.stdout, /^last seen +\S+, \d+ repeats? since it opened$/m);
    assert.match(again1.stdout, /^sightings \(\d+\):$/m);

    assert.equal((await ok<Esc>(['approve', String(ssh.id)])).status, 'approved');
    assert.equal((await ok<Esc>(['reject', String(limits.id), '--reason', 'load test this week', '--expires', '2d'])).status, 'rejected');
    await waitFor(() => content(path.join(managed, 'sshd_config')) === 'PermitRootLogin no\n', 30_000, 'the approved drift repaired');
    await waitFor(async () => (await ok<Esc[]>(['escalations', '--status', 'all'])).every((e) => e.outcome === 'done'), 30_000, 'both decisions carried out');
    assert.equal(readFileSync(path.join(managed, 'limits.conf'), 'utf8'), 'nofile 65536\n', 'the rejected drift stays');
    const reject = await run(['reject', String(limits.id)]);
    assert.notEqual(reject.code, 0, 'a rejection needs a reason');
    const again = await run(['approve', String(limits.id), '--json']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /409 HS_CONFLICT/);
    assert.equal((JSON.parse(again.stdout) as { error: { code: string } }).error.code, 'HS_CONFLICT', 'the API\'s own code');
    const done = await run(['escalations', 'show', String(ssh.id)]);
    assert.match(done.stdout, /^decision +approved by .*; carried out by the agent$/m);
  });

  it('refuses the ambiguous wave 1h, rolls out in 1host waves, and says until when a wave soaks', async () => {
    // The exception for limits.conf ends with its version: put it back so v2 converges without a new escalation.
    writeFileSync(path.join(managed, 'limits.conf'), 'nofile 1024\n');
    const file = path.join(tmp.dir, 'web.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace('hello\\n', 'hello again\\n'));
    assert.equal((await ok<{ version: number }>(['baseline', 'push', file])).version, 2);
    const before = await ok<unknown[]>(['rollout', 'list']);
    const ambiguous = await run(['rollout', 'start', 'web', '2', '--waves', '1h,100']);
    assert.equal(ambiguous.code, 1);
    assert.match(ambiguous.stderr, /"1h" is ambiguous \(1 host, or 1 hour\?\); write 1host \(or hosts:1\) for a number of hosts, 1% for a share of them/);
    assert.equal((await ok<unknown[]>(['rollout', 'list'])).length, before.length, 'nothing started');

    const started = await ok<{ id: number; waveCount: number }>(['rollout', 'start', 'web', '2', '--waves', '1host,100', '--soak', '1h']);
    assert.equal(started.waveCount, 1, 'one host: the second wave adds nobody');
    let status = '';
    await waitFor(async () => /soaking until/.test((status = (await run(['rollout', 'status', String(started.id)])).stdout)), 30_000, 'the wave soaking').catch((err: unknown) => {
      throw new Error(`${String(err)}\n${status}`);
    });
    assert.match(status, new RegExp(`^rollout ${started.id}: web v2 running, wave 1/1, soaking until \\d\\d:\\d\\d:\\d\\d \\(\\d+m more\\) — 1/1 converged`, 'm'));
    const listed = await run(['rollout', 'list']);
    assert.match(listed.stdout, /^ID\s+DOCUMENT\s+VERSION\s+FROM\s+STATE\s+WAVE\s+STARTED\s+FINISHED\s+REASON$/m);
    assert.match(listed.stdout, new RegExp(`^${started.id}\\s+web\\s+2\\s+1\\s+running\\s+1\\s`, 'm'));
    const json = await ok<{ currentWave: number; soakingUntil: number; hosts: { wave: number }[] }>(['rollout', 'status', String(started.id)]);
    assert.equal(json.currentWave, 1, 'waves count from 1');
    assert.deepEqual(json.hosts.map((h) => h.wave), [1]);
    assert.ok(json.soakingUntil > Date.now() + 50 * 60_000);
    assert.match((await run(['rollout', 'abort', String(started.id)])).stdout, /aborted/);
  });

  it('lists events, including one whose time no date can hold', async () => {
    const events = await ok<{ event: string; resource: string | null }[]>(['events', '--kind', 'escalated']);
    assert.ok(events.some((e) => e.resource?.endsWith('sshd_config')));
    // Newest first, with what each event says.
    const all = await ok<{ id: number }[]>(['events']);
    assert.deepEqual(all.map((e) => e.id), [...all.map((e) => e.id)].sort((a, b) => b - a));
    const repairs = await run(['events', '--event', 'repaired', '--resource', `${managed}/sshd_config`]);
    assert.equal(repairs.code, 0, `${repairs.stderr}${(await run(['events', '--limit', '40'])).stdout}`);
    assert.match(repairs.stdout, new RegExp(`file:${managed}/sshd_config\\s+controller\\s+web v1\\s+verified in [\\d.]+ ms$`, 'm'));
    // --tail: the latest, oldest first; --since: the latest in the window, not the oldest.
    const tail = await ok<{ id: number }[]>(['events', '--tail', '--limit', '3']);
    assert.deepEqual(tail.map((e) => e.id), all.slice(0, 3).map((e) => e.id).reverse());
    const latest = await ok<{ id: number }[]>(['events', '--since', '1h', '--limit', '1']);
    assert.deepEqual(latest.map((e) => e.id), [all[0]?.id], 'the newest event of the last hour');
    // Filters that could match nothing normalise or fail with a hint.
    const byPath = await ok<{ resource: string }[]>(['events', '--resource', `${managed}/sshd_config`]);
    assert.ok(byPath.length > 0 && byPath.every((e) => e.resource === `file:${managed}/sshd_config`), 'a bare path names the file');
    const bareNumber = await run(['events', '--since', '10']);
    assert.equal(bareNumber.code, 1);
    assert.match(bareNumber.stderr, /--since 10: a number without a unit; write a duration back \(10s, 10m, 10h, 10d\)/);
    const misnamed = await run(['events', '--event', 'repair']);
    assert.equal(misnamed.code, 1);
    assert.match(misnamed.stderr, /--event "repair": agents record no such event \(did you mean "repaired"\?\)/);
    const noType = await run(['events', '--resource', 'motd']);
    assert.equal(noType.code, 1);
    assert.match(noType.stderr, /write a resource id as TYPE:NAME, e\.g\. file:\/etc\/motd/);
    const none = await run(['events', '--resource', 'service:web']);
    assert.equal(none.code, 0, none.stderr);
    assert.equal(none.stdout, 'no events match resource service:web.service\n', 'the unit name normalised, and an empty answer said');
    const { token } = await ok<{ token: string }>(['token', 'create']);
    const odd = await WireAgent.enroll(ctl.url.replace('https:', 'wss:'), token);
    await odd.deliver([wireEvent(1, { time: 9e15, event: 'repaired' })]);
    odd.close();
    const human = await run(['events', '--agent', odd.id]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^TIME\s+AGENT\s+SEQ\s+EVENT\s+RESOURCE\s+TRIGGER\s+VERSION\s+DETAIL$/m);
    assert.match(human.stdout, /^9000000000000000\s/m);
  });

  it('warns about --admin-token on the command line and keeps it out of ps', async () => {
    const secret = 'visible-on-the-command-line-0123456789';
    const other = await startControllerProcess(['--data-dir', path.join(tmp.dir, 'second'), '--insecure-http', '--admin-token', secret]);
    try {
      assert.match(other.stderr(), /--admin-token puts the operator token where every local user can read it/);
      const cmdline = readFileSync(`/proc/${other.child.pid ?? 0}/cmdline`, 'utf8');
      assert.ok(!cmdline.includes(secret), `ps shows: ${cmdline.replace(/\0/g, ' ')}`);
      const r = await fetch(`${other.url}/api/v1/agents`, { headers: { authorization: `Bearer ${secret}` } });
      assert.equal(r.status, 200, 'the token still works');
    } finally {
      await other.stop();
    }
  });
});
