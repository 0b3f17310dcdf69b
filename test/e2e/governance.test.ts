// Governance end to end: a real controller, a real agent daemon (real files, the real audit subsystem, a real systemd
// user manager). A policy pushed and rolled out through the controller decides on the host with the controller stopped;
// a file changed by a named script run as a unit has its actor (executable, pid, user, unit) in the agent's record and,
// once the controller is back, in GET /api/v1/events; a looping script fighting the agent is named as the opponent in
// the flap escalation, at the agent and in the controller's escalation.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startController, type RunningController } from '../../controller/server.js';
import type { AuditEntry } from '../../agent/store/types.js';
import { runAgent, startAgentDaemon, tempDir, waitFor, type DaemonProcess } from '../helpers/agent.js';

const ADMIN = 'e2e-governance';
const UNIT = `hs-gov-${process.pid}`;

describe('e2e: governance with a controller', function () {
  this.timeout(180_000);
  const tmp = tempDir('hs-e2e-gov-');
  const m = path.join(tmp.dir, 'm');
  const state = path.join(tmp.dir, 'state');
  const env = { HOMEOSTAT_AUDIT_KEY: `hs-ge${process.pid}`, XDG_RUNTIME_DIR: '/run/user/0' };
  let ctl: RunningController | undefined;
  let port = 0;
  let agent: DaemonProcess | undefined;
  let loop: ChildProcess | undefined;
  const id = (f: string): string => `file:${m}/${f}`;

  const api = async <T>(method: string, url: string, body?: unknown): Promise<T> => {
    if (!ctl) throw new Error('controller stopped');
    const r = await ctl.core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}` }, ...(body === undefined ? {} : { body: body as object }) });
    if (r.status >= 400) throw new Error(`${method} ${url}: ${r.status} ${r.text()}`);
    return r.json<T>();
  };
  const startCtl = async (): Promise<void> => {
    ctl = await startController({ dataDir: path.join(tmp.dir, 'controller'), listen: `127.0.0.1:${port}`, adminToken: ADMIN, gateway: { heartbeatIntervalMs: 1000, pingIntervalMs: 1000 } });
    port = ctl.port;
  };
  const connected = async (): Promise<boolean> => (await api<{ connected: boolean }[]>('GET', '/api/v1/agents')).some((a) => a.connected);
  const records = async (resource: string, event: string): Promise<AuditEntry[]> => {
    const r = await runAgent(['audit', '--json', '--resource', resource, '--event', event, '--state-dir', state]);
    if (r.code !== 0) throw new Error(r.stderr);
    return (JSON.parse(r.stdout) as { entries: AuditEntry[] }).entries;
  };
  const rollOut = async (kind: 'baseline' | 'policy', name: string, version: number): Promise<void> => {
    const r = await api<{ id: number }>('POST', '/api/v1/rollouts', { [kind]: name, version, strategy: { waves: [100], gate: { soakSeconds: 0, ackTimeoutSeconds: 60 } } });
    await waitFor(async () => (await api<{ state: string }>('GET', `/api/v1/rollouts/${r.id}`)).state === 'completed', 60_000, `${kind} ${name} rolled out`);
  };

  before(async () => {
    mkdirSync(m);
    for (const f of ['guarded', 'motd', 'fight']) writeFileSync(path.join(m, f), `${f}\n`);
    await startCtl();
    const { token } = await api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h', allowLabels: ['role=gov'] });
    agent = startAgentDaemon(['--state-dir', state, '--controller', `wss://127.0.0.1:${port}`, '--token', token, '--labels', 'role=gov'], { env });
    await agent.ready(30_000);
    await waitFor(connected, 30_000, 'agent connected');
    const b = await api<{ version: number }>('POST', '/api/v1/baselines', {
      file: 'gov.yaml',
      yaml: `apiVersion: homeostat/v1
kind: Baseline
metadata: { name: gov-files }
spec:
  selector: { matchLabels: { role: gov } }
  resources:
    - file: ${m}/guarded
      content: "guarded\\n"
    - file: ${m}/motd
      content: "motd\\n"
    - file: ${m}/fight
      content: "fight\\n"
      flap: { maxRepairs: 3, window: 10m }
`,
    });
    const p = await api<{ version: number }>('POST', '/api/v1/policies', {
      file: 'gov-policy.yaml',
      yaml: `apiVersion: homeostat/v1
kind: Policy
metadata: { name: gov-policy }
spec:
  selector: { matchLabels: { role: gov } }
  rules:
    - description: a human looks at this one
      match: { resource: "file:${m}/guarded" }
      action: escalate
    - match: { kind: file }
      action: repair
`,
    });
    await rollOut('policy', 'gov-policy', p.version);
    await rollOut('baseline', 'gov-files', b.version);
  });

  after(async () => {
    loop?.kill('SIGKILL');
    await agent?.stop();
    await ctl?.stop().catch(() => undefined);
    try {
      execFileSync('systemctl', ['--user', 'reset-failed', `${UNIT}.service`], { env: { ...process.env, ...env }, stdio: 'ignore' });
    } catch {
      // the unit ended cleanly and is gone
    }
    tmp.cleanup();
  });

  it('the pushed policy decides with the controller stopped, and a named script run as a unit is the actor, in the agent and at the controller', async () => {
    await ctl?.stop();
    ctl = undefined;
    const moved = path.join(m, 'guarded.new');
    writeFileSync(moved, 'hand edit\n');
    renameSync(moved, path.join(m, 'guarded'));
    await waitFor(async () => (await records(id('guarded'), 'escalated')).length === 1, 15_000, 'escalated offline');
    const esc = (await records(id('guarded'), 'escalated'))[0];
    assert.deepEqual(esc?.decision?.rule, { document: 'gov-policy', version: 1, index: 0 });
    assert.equal(readFileSync(path.join(m, 'guarded'), 'utf8'), 'hand edit\n', 'left for a human');

    const script = path.join(tmp.dir, 'fix-motd.sh');
    // The script writes itself (a shell builtin) and lives on a moment: its unit and command line are read from /proc.
    writeFileSync(script, `echo 'fixed by hand' > '${m}/motd'; sleep 1\n`);
    execFileSync('systemd-run', ['--user', '--wait', '--quiet', '--unit', UNIT, '/bin/sh', script], { env: { ...process.env, ...env } });
    await waitFor(async () => (await records(id('motd'), 'repaired')).length >= 1, 15_000, 'motd repaired');
    const drift = (await records(id('motd'), 'drift_detected'))[0];
    assert.equal(drift?.actor?.source, 'audit', JSON.stringify(drift?.actor));
    assert.equal(drift?.actor?.exe, '/usr/bin/dash');
    assert.equal(drift?.actor?.cmdline, `/bin/sh ${script}`);
    assert.equal(drift?.actor?.user, 'root');
    assert.equal(typeof drift?.actor?.pid, 'number');
    assert.equal(drift?.actor?.unit, `${UNIT}.service`);
    assert.deepEqual(drift?.decision?.rule, { document: 'gov-policy', version: 1, index: 1 });

    await startCtl();
    let events: { event: string; actor: { exe?: string; pid?: number; unit?: string } | null; decision: { rule: unknown } | null; changes: string[]; risk: string | null }[] = [];
    await waitFor(async () => {
      events = await api('GET', `/api/v1/events?resource=${encodeURIComponent(id('motd'))}`);
      return events.some((e) => e.event === 'drift_detected' && e.actor !== null);
    }, 60_000, 'the drift at the controller');
    const at = events.find((e) => e.event === 'drift_detected');
    assert.equal(at?.actor?.exe, '/usr/bin/dash');
    assert.equal(at?.actor?.pid, drift?.actor?.pid);
    assert.equal(at?.actor?.unit, `${UNIT}.service`);
    assert.deepEqual(at?.decision?.rule, { document: 'gov-policy', version: 1, index: 1 });
    assert.deepEqual(at?.changes, ['content']);
    assert.equal(at?.risk, 'low');
  });

  it('a looping script fighting the agent is named as the opponent, at the agent and in the controller\'s escalation', async () => {
    const script = path.join(tmp.dir, 'loop.sh');
    writeFileSync(script, `while :; do echo theirs > '${m}/fight'; sleep 0.3; done\n`);
    loop = spawn('/bin/sh', [script], { stdio: 'ignore' });
    await waitFor(async () => (await records(id('fight'), 'suppressed_flapping')).length === 1, 30_000, 'suppressed for flapping');
    loop.kill('SIGKILL');
    const s = (await records(id('fight'), 'suppressed_flapping'))[0];
    assert.match(s?.detail ?? '', new RegExp(`^fighting /usr/bin/dash ${script.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}( \\([^)]+\\))?: \\d+ changes in \\d+ s`));
    let esc: { resource: string; opponent: string | null }[] = [];
    await waitFor(async () => {
      esc = await api('GET', '/api/v1/escalations?status=open');
      return esc.some((e) => e.resource === id('fight') && e.opponent !== null);
    }, 30_000, 'the escalation names the opponent');
    assert.match(esc.find((e) => e.resource === id('fight'))?.opponent ?? '', new RegExp(`^/usr/bin/dash ${script.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  });
});
