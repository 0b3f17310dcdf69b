// Policies deciding real drift on real files, through the agent's engine and store (in-process, real SQLite, real inotify,
// the real audit subsystem for actors): rule order and every action, grace periods ended by time or by an operator, the
// hourly repair cap, a maintenance window, a policy change re-deciding standing drifts (an escalated one keeps waiting),
// actors in the records and in rules, a fight with a looping script named in the flap escalation, a predicted drift,
// and `explain`. The daemon's part (policy files, SIGHUP, audit rules on exit) is in the last block.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { composeAgent } from '../../agent/compose.js';
import type { Agent } from '../../agent/agent.js';
import { Actors } from '../../agent/actor/actors.js';
import { DEFAULT_SETTINGS } from '../../agent/settings.js';
import { AgentStore } from '../../agent/store/store.js';
import type { AuditEntry } from '../../agent/store/types.js';
import { parseBaseline } from '../../lib/baseline/index.js';
import { silentLogger } from '../../lib/log.js';
import { parsePolicy } from '../../lib/policy/index.js';
import { runAgent, startAgentDaemon, tempDir, waitFor } from '../helpers/agent.js';

const KEY = `hs-pe${process.pid}`;

interface Host {
  dir: string;
  state: string;
  agent: Agent;
  store: AgentStore;
  actors: Actors;
  file: (name: string) => string;
  id: (name: string) => string;
  records: (name: string, event?: string) => AuditEntry[];
  stop: () => Promise<void>;
}

const FILES = ['rep', 'esc-first', 'mon', 'ign', 'def', 'def-ok', 'def-no', 'cap', 'who', 'fight', 'win', 'habit'];

function baselineYaml(m: string): string {
  return `apiVersion: homeostat/v1
kind: Baseline
metadata: { name: gov-test }
spec:
  resources:
${FILES.map((f) => `    - file: ${m}/${f}\n      content: "${f}\\n"${f === 'fight' ? '\n      flap: { maxRepairs: 3, window: 10m }' : ''}`).join('\n')}
`;
}

function policyYaml(m: string, extra = ''): string {
  return `apiVersion: homeostat/v1
kind: Policy
metadata: { name: gov }
spec:
  rules:
    - match: { resource: "file:${m}/esc*" }
      action: escalate
    - description: never reached for esc-first, the rule above decides it
      match: { resource: "file:${m}/esc-first" }
      action: repair
    - match: { resource: "file:${m}/mon" }
      action: monitor
    - match: { resource: "file:${m}/ign" }
      action: ignore
    - description: a hotfix stands a moment
      match: { resource: "file:${m}/def" }
      action: { defer: 2s }
    - match: { resource: ["file:${m}/def-ok", "file:${m}/def-no"] }
      action: { defer: 3s }
    - match: { resource: "file:${m}/cap" }
      action: repair
      limits: { maxRepairsPerHour: 2 }
    - match: { kind: file, actor: { exe: "/usr/bin/cp" } }
      action: monitor
${extra}`;
}

async function startHost(opts: { policy?: (m: string) => string; seed?: (h: Omit<Host, 'agent' | 'stop'>) => void } = {}): Promise<Host> {
  const t = tempDir('hs-pe-');
  const m = path.join(t.dir, 'm');
  const state = path.join(t.dir, 'state');
  mkdirSync(m);
  mkdirSync(state);
  for (const f of FILES) writeFileSync(path.join(m, f), `${f}\n`);
  const store = AgentStore.open(state);
  const id = (name: string): string => `file:${m}/${name}`;
  const base = {
    dir: t.dir,
    state,
    store,
    file: (name: string) => path.join(m, name),
    id,
    records: (name: string, event?: string) => store.queryAudit({ resource: id(name), ...(event ? { event } : {}) }),
  };
  opts.seed?.({ ...base, actors: undefined as unknown as Actors });
  const agent = composeAgent({ settings: { ...DEFAULT_SETTINGS, stateDir: state, systemdScope: 'user' }, log: silentLogger, store });
  const actors = new Actors({ log: silentLogger, key: KEY, scope: 'user', selfPid: process.pid });
  await actors.start();
  agent.engine.setActors(actors);
  await agent.setLocalPolicies([parsePolicy((opts.policy ?? policyYaml)(m), { file: path.join(t.dir, 'gov.yaml') })], 'startup');
  await agent.activate([parseBaseline(baselineYaml(m), { file: path.join(t.dir, 'base.yaml') })], { origin: 'local' }, 'startup');
  await actors.watch(agent.engine.resourceIds().map((r) => ({ kind: 'file', name: r.slice('file:'.length) })));
  await agent.start();
  return {
    ...base,
    agent,
    actors,
    stop: async () => {
      await agent.stop();
      await actors.stop();
      store.close();
      t.cleanup();
    },
  };
}

const content = (h: Host, name: string): string => readFileSync(h.file(name), 'utf8');
/** As editors and deploy tools do: the new text lands at once (a truncating write would show an empty file first). */
const write = (h: Host, name: string, text: string): void => {
  writeFileSync(`${h.file(name)}.new`, text);
  renameSync(`${h.file(name)}.new`, h.file(name));
};
const outcome = (h: Host, name: string): string | undefined => h.agent.engine.results().find((r) => r.id === h.id(name))?.outcome;

describe('policies deciding real drift', function () {
  this.timeout(120_000);
  let h: Host;
  before(async () => {
    h = await startHost();
  });
  after(async () => {
    await h?.stop();
  });

  it('the first matching rule decides, each action acts, and every record of a decision names its rule, changes and risk', async () => {
    write(h, 'ign', 'ignored\n');
    write(h, 'esc-first', 'hand edit\n');
    write(h, 'mon', 'watched\n');
    write(h, 'rep', 'drift\n');
    await waitFor(() => h.records('rep', 'repaired').length === 1, 10_000, 'rep repaired');
    await waitFor(() => h.records('esc-first', 'escalated').length === 1 && h.records('mon', 'drift_detected').length === 1 && outcome(h, 'ign') === 'excepted', 10_000, 'the others decided');

    // No rule matches rep: the baseline's own policy repairs it.
    const rep = h.records('rep', 'drift_detected')[0];
    assert.deepEqual(rep?.decision?.rule, { baseline: 'gov-test' });
    assert.equal(rep?.decision?.cause, 'enforce');
    assert.deepEqual(rep?.changes, ['content']);
    assert.equal(rep?.risk, 'low');
    assert.deepEqual(h.records('rep', 'repaired')[0]?.decision?.rule, { baseline: 'gov-test' });
    assert.equal(content(h, 'rep'), 'rep\n');

    // Rule 0 comes before rule 1, which would repair it.
    const esc = h.records('esc-first', 'escalated')[0];
    assert.deepEqual(esc?.decision, { action: 'escalate', cause: 'rule', rule: { document: 'gov', version: 1, index: 0 }, reason: esc?.decision?.reason });
    assert.match(esc?.detail ?? '', /gov v1 spec\.rules\[0\] matched .*: escalate/);
    assert.equal(content(h, 'esc-first'), 'hand edit\n');

    assert.deepEqual(h.records('mon', 'drift_detected')[0]?.decision?.rule, { document: 'gov', version: 1, index: 2 });
    assert.equal(h.records('mon', 'drift_detected')[0]?.decision?.action, 'monitor');
    assert.equal(content(h, 'mon'), 'watched\n');

    assert.deepEqual(h.records('ign'), [], 'ignored: not even recorded');
    assert.equal(content(h, 'ign'), 'ignored\n');
  });

  it('defer: the change stands, visible as pending, then is repaired when the grace period is over', async () => {
    write(h, 'def', 'hotfix\n');
    await waitFor(() => h.records('def', 'deferred').length === 1, 10_000, 'deferred');
    const deferred = h.records('def', 'deferred')[0];
    assert.equal(deferred?.decision?.action, 'defer');
    assert.deepEqual(deferred?.decision?.rule, { document: 'gov', version: 1, index: 4 });
    assert.match(deferred?.detail ?? '', /\(a hotfix stands a moment\).*the change stands for 2s, until/);
    assert.equal(content(h, 'def'), 'hotfix\n');
    assert.equal(outcome(h, 'def'), 'drifted');
    await waitFor(() => h.records('def', 'repaired').length === 1, 10_000, 'repaired after the grace period');
    const repaired = h.records('def', 'repaired')[0];
    assert.equal(repaired?.decision?.cause, 'grace-over');
    assert.ok((repaired?.time ?? 0) >= (deferred?.decision?.until ?? Infinity), 'not before the grace period ended');
    assert.equal(content(h, 'def'), 'def\n');
  });

  it('defer: an approval repairs at once, a rejection keeps the change past the grace period', async () => {
    write(h, 'def-ok', 'hotfix\n');
    write(h, 'def-no', 'hotfix\n');
    await waitFor(() => h.records('def-ok', 'deferred').length === 1 && h.records('def-no', 'deferred').length === 1, 10_000, 'both deferred');
    const until = h.records('def-no', 'deferred')[0]?.decision?.until ?? 0;
    await h.agent.approve(h.id('def-ok'));
    await h.agent.reject(h.id('def-no'), 'the hotfix is right', Date.now() + 3_600_000);
    await waitFor(() => h.records('def-ok', 'repaired').length === 1, 10_000, 'approved: repaired');
    assert.ok((h.records('def-ok', 'repaired')[0]?.time ?? Infinity) < until, 'repaired before the grace period ended');
    assert.equal(h.records('def-ok', 'repaired')[0]?.decision?.cause, 'approved');
    // Past the grace period, the engine looks again (its own timer, then a pass asked for here): the rejection holds.
    await waitFor(() => Date.now() > until + 200, 10_000, 'the grace period over');
    h.agent.engine.enqueueAll('resync');
    await h.agent.engine.idle();
    assert.equal(content(h, 'def-no'), 'hotfix\n');
    assert.deepEqual(h.records('def-no', 'repaired'), []);
    assert.equal(outcome(h, 'def-no'), 'excepted');
  });

  it('maxRepairsPerHour: repairs up to the cap, then escalates with cause limit', async () => {
    for (let i = 1; i <= 2; i++) {
      write(h, 'cap', `drift ${i}\n`);
      await waitFor(() => h.records('cap', 'repaired').length === i, 10_000, `repair ${i}`);
    }
    write(h, 'cap', 'drift 3\n');
    await waitFor(() => h.records('cap', 'escalated').length === 1, 10_000, 'escalated past the cap');
    const e = h.records('cap', 'escalated')[0];
    assert.equal(e?.decision?.cause, 'limit');
    assert.match(e?.detail ?? '', /allows 2 repairs per hour on this host and 2 were made in the last hour/);
    assert.equal(content(h, 'cap'), 'drift 3\n');
  });

  it('actors: the drift record names the program, and a rule on the actor decides', async () => {
    const src = path.join(h.dir, 'src');
    writeFileSync(src, 'copied\n');
    execFileSync('/usr/bin/cp', [src, h.file('who')]);
    // cp truncates first: the empty file may be a drift of its own; the last one is the copy
    await waitFor(() => h.records('who', 'drift_detected').some((r) => r.observed?.size === 7), 10_000, 'who drifted');
    const d = h.records('who', 'drift_detected').at(-1);
    assert.equal(d?.actor?.source, 'audit', JSON.stringify(d?.actor));
    assert.equal(d?.actor?.exe, '/usr/bin/cp');
    assert.equal(d?.actor?.user, 'root');
    assert.equal(typeof d?.actor?.pid, 'number');
    assert.deepEqual(d?.decision?.rule, { document: 'gov', version: 1, index: 7 }, 'the actor rule decided: monitor');
    assert.equal(content(h, 'who'), 'copied\n');
  });

  it('a policy change re-decides standing drifts: a monitored one is repaired, an escalated one keeps waiting for a human', async () => {
    assert.equal(content(h, 'mon'), 'watched\n');
    const m = path.dirname(h.file('mon'));
    const v2 = `apiVersion: homeostat/v1
kind: Policy
metadata: { name: gov }
spec:
  rules:
    - match: { resource: "file:${m}/ign" }
      action: ignore
    - match: { resource: ["file:${m}/def-no", "file:${m}/who"] }
      action: monitor
    - match: {}
      action: repair
`;
    await h.agent.setLocalPolicies([parsePolicy(v2, { file: path.join(h.dir, 'gov.yaml') })], 'manual');
    await waitFor(() => h.records('mon', 'repaired').length === 1, 10_000, 'the monitored drift repaired');
    assert.deepEqual(h.records('mon', 'repaired')[0]?.decision?.rule, { document: 'gov', version: 2, index: 2 });
    await h.agent.engine.idle();
    assert.equal(content(h, 'esc-first'), 'hand edit\n', 'escalated: still waiting');
    assert.equal(content(h, 'cap'), 'drift 3\n', 'escalated past the cap: still waiting');
    assert.equal(outcome(h, 'esc-first'), 'escalated');
    assert.equal(content(h, 'def-no'), 'hotfix\n', 'rejected: still accepted');
    const activated = h.store.queryAudit({ event: 'policy_activated' }).map((e) => `${e.baseline}@${e.version}`);
    assert.deepEqual(activated, ['gov@1', 'gov@2']);
    // The human answer still works: approved, repaired once.
    await h.agent.approve(h.id('esc-first'));
    await waitFor(() => content(h, 'esc-first') === 'esc-first\n', 10_000, 'repaired once approved');
  });

  it('explain: the state, the last drift with its actor, and the rule with its place in the file (text and --json)', async () => {
    const text = await runAgent(['explain', h.id('who'), '--state-dir', h.state]);
    assert.equal(text.code, 0, text.stderr);
    const lines = text.stdout.split('\n');
    assert.match(lines[0] ?? '', /^file:.*\/who: drifted, recorded only/);
    assert.match(lines[1] ?? '', /^last drift: .*, content, by \/usr\/bin\/cp, pid \d+, user root \[audit\]$/);
    assert.match(lines[2] ?? '', /^decided: monitor \(rule\) by gov v1 spec\.rules\[7\]$/);
    assert.match(lines[3] ?? '', /rule at .*gov\.yaml:\d+: match \{ kind: file, actor: \{ exe: \/usr\/bin\/cp \} \}, action monitor/);
    const json = await runAgent(['explain', h.id('def'), '--json', '--state-dir', h.state]);
    assert.equal(json.code, 0, json.stderr);
    const e = JSON.parse(json.stdout) as { state: string; lastDrift: { changes: string[] }; decision: { cause: string; rule: unknown }; rule: { label: string; line: number; action: string; description: string } };
    assert.match(e.state, /^compliant/);
    assert.deepEqual(e.lastDrift.changes, ['content']);
    assert.equal(e.decision.cause, 'grace-over');
    assert.deepEqual(e.rule, { ...e.rule, label: 'gov v1 spec.rules[4]', action: 'defer 2s', description: 'a hotfix stands a moment' });
    assert.ok(e.rule.line > 0);
    const unknown = await runAgent(['explain', 'file:/nowhere', '--state-dir', h.state]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no record of file:\/nowhere/);
  });

  it('a fight: a looping script keeps re-creating the drift, and the flap escalation names it', async () => {
    const script = path.join(h.dir, 'loop.sh');
    writeFileSync(script, `while :; do echo theirs > '${h.file('fight')}'; sleep 0.3; done\n`);
    const loop = spawn('/bin/sh', [script], { stdio: 'ignore' });
    try {
      await waitFor(() => h.records('fight', 'suppressed_flapping').length === 1, 30_000, 'suppressed for flapping');
    } finally {
      loop.kill('SIGKILL');
    }
    const s = h.records('fight', 'suppressed_flapping')[0];
    assert.match(s?.detail ?? '', new RegExp(`^fighting /usr/bin/dash ${script.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\([^)]+\\): [34] changes in \\d+ s; `));
    assert.equal(s?.decision?.cause, 'flapping');
    assert.match(h.records('fight', 'escalated')[0]?.detail ?? '', /^flapping: fighting \/usr\/bin\/dash /);
  });
});

describe('a maintenance window', function () {
  this.timeout(120_000);
  let h: Host | undefined;
  after(async () => {
    await h?.stop();
  });

  it('drift inside the window is deferred to its end, then decided again and repaired', async () => {
    // A window of the current minute (UTC), so the test waits at most a minute; too close to its end, the next minute's.
    if (new Date().getUTCSeconds() > 45) await waitFor(() => new Date().getUTCSeconds() < 5, 20_000, 'the next minute');
    const now = new Date();
    const cron = `${now.getUTCMinutes()} ${now.getUTCHours()} * * *`;
    h = await startHost({
      policy: (m) => `apiVersion: homeostat/v1
kind: Policy
metadata: { name: win }
spec:
  maintenanceWindows:
    - name: this-minute
      cron: "${cron}"
      duration: 1m
  rules:
    - match: { window: this-minute, resource: "file:${m}/win" }
      action: { defer: end-of-window }
`,
    });
    const host = h;
    write(host, 'win', 'during maintenance\n');
    await waitFor(() => host.records('win', 'deferred').length === 1, 10_000, 'deferred');
    const d = host.records('win', 'deferred')[0];
    const end = Math.floor(now.getTime() / 60_000) * 60_000 + 60_000;
    assert.equal(d?.decision?.until, end, 'until the end of the window');
    assert.deepEqual(d?.decision?.rule, { document: 'win', version: 1, index: 0 });
    assert.equal(content(host, 'win'), 'during maintenance\n');
    await waitFor(() => host.records('win', 'repaired').length === 1, 75_000, 'repaired after the window');
    const r = host.records('win', 'repaired')[0];
    assert.ok((r?.time ?? 0) >= end, 'not before the window ended');
    assert.deepEqual(r?.decision?.rule, { baseline: 'gov-test' }, 'decided again by what matches after the window');
    assert.equal(content(host, 'win'), 'win\n');
  });
});

describe('predicted drift', function () {
  this.timeout(60_000);
  let h: Host | undefined;
  after(async () => {
    await h?.stop();
  });

  it('a drift that came at the same minute in the hours before is recorded as predicted, with the next expected time', async () => {
    const now = Date.now();
    h = await startHost({
      seed: (s) => {
        for (let k = 4; k >= 1; k--) {
          s.store.appendAudit({ time: now - k * 3_600_000, resource: s.id('habit'), event: 'drift_detected', trigger: 'watch', baseline: 'gov-test', version: 1, observed: null, desired: null, diff: null, detail: 'content', changes: ['content'] });
        }
      },
    });
    const host = h;
    write(host, 'habit', 'hourly job\n');
    await waitFor(() => host.records('habit', 'drift_predicted').length === 1, 10_000, 'predicted');
    const p = host.records('habit', 'drift_predicted')[0];
    assert.match(p?.detail ?? '', /^content changes every hour at about :\d\d \(seen in 5 hours\); next expected (\S+)$/);
    const next = Date.parse(/next expected (\S+)$/.exec(p?.detail ?? '')?.[1] ?? '');
    assert.ok(Math.abs(next - (now + 3_600_000)) < 120_000, `next ${new Date(next).toISOString()}`);
  });
});

describe('the daemon with policy files', function () {
  this.timeout(60_000);
  const t = tempDir('hs-pe-d-');
  const key = `hs-pd${process.pid}`;
  const env = { HOMEOSTAT_AUDIT_KEY: key };
  const m = path.join(t.dir, 'm');
  const state = path.join(t.dir, 'state');
  const pol = path.join(t.dir, 'gov.yaml');
  const base = path.join(t.dir, 'base.yaml');
  const rules = (): string[] => execFileSync('auditctl', ['-l', '-k', key], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(key));
  const events = async (event: string): Promise<AuditEntry[]> => {
    const r = await runAgent(['audit', '--json', '--event', event, '--state-dir', state]);
    return (JSON.parse(r.stdout) as { entries: AuditEntry[] }).entries;
  };
  after(() => t.cleanup());

  it('validate accepts the worked example of docs/policy.md', async () => {
    const r = await runAgent(['validate', 'baselines/examples/policies/fleet-governance.yaml']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /valid policy \(fleet-governance, 5 rules, 1 windows\)/);
  });

  it('a bad policy file on SIGHUP is refused with located errors and the last good policy keeps deciding; audit rules go with the agent, and a killed run\'s are replaced', async () => {
    mkdirSync(m);
    mkdirSync(state);
    writeFileSync(path.join(m, 'a'), 'a\n');
    writeFileSync(base, `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: d }\nspec:\n  resources:\n    - file: ${m}/a\n      content: "a\\n"\n`);
    writeFileSync(pol, `apiVersion: homeostat/v1\nkind: Policy\nmetadata: { name: dp }\nspec:\n  rules:\n    - match: { kind: file }\n      action: monitor\n`);
    const v = await runAgent(['validate', pol]);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /gov\.yaml: valid policy \(dp, 1 rules, 0 windows\)/);
    let d = startAgentDaemon(['--state-dir', state, '--baseline', base, '--policy', pol], { env });
    await d.ready();
    assert.equal(rules().length, 1, 'one watch rule for the managed file');
    writeFileSync(pol, `apiVersion: homeostat/v1\nkind: Policy\nmetadata: { name: dp }\nspec:\n  rules:\n    - match: { kind: file }\n      action: { defer: never }\n`);
    const bad = await runAgent(['validate', pol]);
    assert.equal(bad.code, 1);
    d.child.kill('SIGHUP');
    await waitFor(async () => (await events('policy_rejected')).length === 1, 10_000, 'policy_rejected');
    assert.match((await events('policy_rejected'))[0]?.detail ?? '', new RegExp(`${pol}:7:\\d+: .*spec\\.rules\\[0\\]\\.action`));
    writeFileSync(path.join(m, 'a.new'), 'edited\n');
    renameSync(path.join(m, 'a.new'), path.join(m, 'a'));
    await waitFor(async () => (await events('drift_detected')).length === 1, 10_000, 'drift recorded');
    assert.ok((await events('drift_detected')).every((e) => e.decision?.action === 'monitor'), 'the last good policy decided');
    assert.equal(readFileSync(path.join(m, 'a'), 'utf8'), 'edited\n');
    assert.equal(await d.kill9(), -1);
    assert.equal(rules().length, 1, 'a killed run leaves its rule');
    // Started again with the bad file: the cached last good version decides, the killed run's rule is replaced.
    d = startAgentDaemon(['--state-dir', state, '--baseline', base, '--policy', pol], { env });
    await d.ready();
    assert.equal(rules().length, 1);
    assert.equal((await events('policy_rejected')).length, 2);
    assert.match(d.stderr, /enforcing cached policies/);
    assert.equal(readFileSync(path.join(m, 'a'), 'utf8'), 'edited\n', 'still monitored');
    assert.equal(await d.stop(), 0);
    assert.deepEqual(rules(), [], 'no rule left after a clean stop');
  });
});
