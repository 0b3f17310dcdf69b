// homeostatctl's policy commands against a real controller over TLS: a policy validated locally with located errors before
// anything is sent, pushed, listed, diffed and rolled out with `rollout start --policy`; a rollout's escalations to decide
// and the `--on-escalation` choice; and escalations listed with the actor or the opponent the agent named.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startController, type RunningController } from '../../controller/server.js';
import { tempDir } from '../helpers/agent.js';

const CTL_MAIN = fileURLToPath(new URL('../../controller/ctl/main.js', import.meta.url));
const ADMIN = 'ctl-policy-admin';

const POLICY = (rule: string): string => `apiVersion: homeostat/v1
kind: Policy
metadata:
  name: governance
spec:
  rules:
    - match: { resource: "${rule}" }
      action: escalate
`;

describe('homeostatctl policy commands', function () {
  this.timeout(60_000);
  const tmp = tempDir('hs-ctl-policy-');
  let ctl: RunningController;

  const run = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve, reject) => {
      const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'HOMEOSTAT_ADMIN_TOKEN'));
      const child = spawn(process.execPath, [CTL_MAIN, '--server', ctl.url, '--token', ADMIN, '--ca', path.join(tmp.dir, 'controller', 'tls.crt'), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
  const file = (name: string, text: string): string => {
    const f = path.join(tmp.dir, name);
    writeFileSync(f, text);
    return f;
  };

  before(async () => {
    ctl = await startController({ dataDir: path.join(tmp.dir, 'controller'), listen: '127.0.0.1:0', adminToken: ADMIN });
  });
  after(async () => {
    await ctl?.stop();
    tmp.cleanup();
  });

  it('refuses an invalid policy locally, located, sending nothing', async () => {
    const r = await run(['policy', 'push', file('bad.yaml', POLICY('file:/etc/ssh/*').replace('escalate', 'escalte'))]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad\.yaml:8:15: .*escalte.*\(spec\.rules\[0\]\.action\) \[HS_POLICY_INVALID\]/);
    assert.deepEqual(await ctl.core.store.listPolicyVersions(), []);
  });

  it('pushes, lists, diffs and rolls out policies', async () => {
    const one = JSON.parse((await run(['policy', 'push', file('governance.yaml', POLICY('file:/etc/ssh/*')), '--json'])).stdout) as { name: string; version: number; created: boolean };
    assert.deepEqual([one.name, one.version, one.created], ['governance', 1, true]);
    const two = await run(['policy', 'push', file('governance.yaml', POLICY('file:/etc/*')), '--rollout']);
    assert.equal(two.code, 0, two.stderr);
    assert.match(two.stdout, /^policy governance version 2, rollout \d+ started$/m);
    const list = await run(['policy', 'list']);
    assert.match(list.stdout, /^NAME\s+LATEST\s+ROLLED OUT\s+RULES$/m);
    assert.match(list.stdout, /^governance\s+2\s+2\s+1$/m);
    const diff = await run(['policy', 'diff', 'governance', '1', '2']);
    assert.match(diff.stdout, /^-    - match: \{ resource: "file:\/etc\/ssh\/\*" \}$/m);
    const back = await run(['rollout', 'start', '--policy', 'governance', '1', '--on-escalation', 'ignore']);
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stdout, /^rollout \d+: policy governance v1 \(rollback\) completed/m);
    assert.equal(ctl.core.policies.target('governance')?.version, 1);
    const notBaseline = await run(['rollout', 'start', 'governance', '1']);
    assert.equal(notBaseline.code, 1);
    assert.match(notBaseline.stderr, /no baseline governance version 1 \(404 HS_NOT_FOUND from POST \/api\/v1\/rollouts\)/);
    const wrong = await run(['rollout', 'start', '--policy', 'governance', '1', '--on-escalation', 'wait']);
    assert.match(wrong.stderr, /strategy\.onEscalation: "wait"; expected "pause"/);
  });

  it('lists escalations with the opponent of a fight, or else the actor', async () => {
    const yaml = 'apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: web\nspec:\n  resources:\n    - file: /srv/app/a\n      content: "x"\n    - file: /srv/app/b\n      content: "y"\n';
    await ctl.core.baselines.push({ yaml, sources: {}, file: 'web.yaml' });
    const t = await ctl.core.enrollment.createToken();
    const { agent } = await ctl.core.enrollment.enroll(t.token, { labels: {}, protocolVersion: 4, agentVersion: 't' });
    const ev = (seq: number, resource: string, event: string, actor: object, reason: string) => ({
      seq, time: seq, resource, event, trigger: 'watch', baseline: 'web', version: 1, observed: null, desired: null, diff: null, detail: null, prevHash: '', hash: `h${seq}`,
      actor: JSON.stringify(actor), decision: JSON.stringify({ action: 'escalate', cause: 'risk', rule: { baseline: 'web' }, reason }),
    });
    await ctl.core.events.submit(agent.id, [
      ev(1, 'file:/srv/app/a', 'escalated', { source: 'audit', exe: '/usr/bin/bash', cmdline: '/bin/bash /opt/fix.sh', unit: 'session-4.scope' }, 'risk high'),
      ev(2, 'file:/srv/app/b', 'suppressed_flapping', { source: 'audit', exe: '/usr/bin/puppet', unit: 'puppet.service' }, 'fighting /usr/bin/puppet (puppet.service): 6 changes in 10 min'),
    ]);
    const r = await run(['escalations']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ACTOR$/m);
    assert.match(r.stdout, /file:\/srv\/app\/a\s+escalated\s+web v1\s+\S+\s+\S+\s+0\s+open\s+\/usr\/bin\/bash \/opt\/fix\.sh \(session-4\.scope\)$/m);
    assert.match(r.stdout, /file:\/srv\/app\/b\s+suppressed_flapping\s+web v1\s+\S+\s+\S+\s+0\s+open\s+fighting \/usr\/bin\/puppet \(puppet\.service\)$/m);
  });
});
