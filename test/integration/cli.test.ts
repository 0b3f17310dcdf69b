// The one-shot commands (validate, check, apply, audit, status) with their exit codes and JSON, crash safety and failures.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { runAgent, startAgentDaemon, tempDir, waitFor, writeBaseline } from '../helpers/agent.js';

const HEADER = `apiVersion: homeostat/v1
kind: Baseline
`;

describe('agent one-shot commands', function () {
  this.timeout(60_000);
  let t: { dir: string; cleanup: () => void };
  let stateDir: string;
  beforeEach(() => {
    t = tempDir();
    stateDir = path.join(t.dir, 'state');
  });
  afterEach(() => t.cleanup());

  it('validate: 0 for a valid file, 1 with file:line:column for an invalid one', async () => {
    const good = writeBaseline(t.dir, 'good', `${HEADER}metadata: { name: good }\nspec:\n  resources:\n    - file: /tmp/x\n      content: "x"\n`);
    const bad = writeBaseline(t.dir, 'bad', `${HEADER}metadata: { name: bad }\nspec:\n  resources:\n    - file: /tmp/x\n      mode: "0999"\n      colour: blue\n`);
    assert.equal((await runAgent(['validate', good])).code, 0);
    const res = await runAgent(['validate', bad]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /bad\.yaml:7:\d+: mode .*spec\.resources\[0\]\.mode/);
    assert.match(res.stderr, /bad\.yaml:8:\d+: .*colour/);
    assert.match(res.stderr, /colour/);
    const json = await runAgent(['validate', '--json', bad]);
    const doc = JSON.parse(json.stdout) as { valid: boolean; files: { errors: { location: { line: number; field: string } }[] }[] };
    assert.equal(doc.valid, false);
    assert.ok((doc.files[0]?.errors.length ?? 0) >= 2, 'every error is reported, not only the first');
  });

  it('validate: a YAML syntax error, then the schema errors of the resources that parsed, and 1', async () => {
    const lines = [`metadata: { name: torn }`, 'spec:', '  resources:', '    - file: /tmp/x', '      \tcontent: "x"', '    - directory: /tmp/d', '      modee: "0755"', HEADER];
    const torn = writeBaseline(t.dir, 'torn', lines.join('\n'));
    const res = await runAgent(['validate', torn]);
    assert.equal(res.code, 1);
    const printed = res.stderr.split('\n').filter((l) => l.startsWith(torn));
    assert.equal(printed.length, 2, res.stderr);
    assert.match(printed[0] ?? '', /torn\.yaml:5:7: YAML syntax: line 5 is indented with a tab.*\[HS_BASELINE_PARSE\]$/);
    assert.match(printed[1] ?? '', /torn\.yaml:7:7: unknown key "modee" in a directory resource \(did you mean "mode"\?\).*spec\.resources\[1\]\.modee\) \[HS_BASELINE_UNKNOWN_KEY\]$/);
  });

  it('check: 2 with the deviations and nothing changed; apply converges; check then 0', async () => {
    const root = path.join(t.dir, 'root');
    mkdirSync(root);
    const f = path.join(root, 'motd');
    writeFileSync(f, 'old\n');
    const b = writeBaseline(t.dir, 'b', `${HEADER}metadata: { name: b }\nspec:\n  resources:\n    - file: ${f}\n      content: "new\\n"\n      mode: "0640"\n`);
    const check = await runAgent(['check', '--baseline', b, '--json']);
    assert.equal(check.code, 2, check.stderr);
    const doc = JSON.parse(check.stdout) as { compliant: boolean; resources: { id: string; outcome: string; changes: { field: string; diff?: string }[] }[] };
    assert.equal(doc.compliant, false);
    assert.deepEqual(doc.resources[0]?.changes.map((c) => c.field).sort(), ['content', 'mode']);
    assert.match(doc.resources[0]?.changes.find((c) => c.field === 'content')?.diff ?? '', /^-old$/m);
    assert.equal(readFileSync(f, 'utf8'), 'old\n', 'check changes nothing');

    const apply = await runAgent(['apply', '--baseline', b, '--state-dir', stateDir, '--json']);
    assert.equal(apply.code, 0, apply.stderr);
    assert.equal(readFileSync(f, 'utf8'), 'new\n');
    assert.equal(statSync(f).mode & 0o777, 0o640);
    assert.equal((await runAgent(['check', '--baseline', b])).code, 0);

    const audit = await runAgent(['audit', '--state-dir', stateDir, '--json']);
    const entries = (JSON.parse(audit.stdout) as { entries: { event: string; resource: string | null; trigger: string | null }[] }).entries;
    const forFile = entries.filter((e) => e.resource === `file:${f}`).map((e) => `${e.event}/${e.trigger}`);
    assert.deepEqual(forFile, ['drift_detected/manual', 'repaired/manual']);
    // What the repair overwrote is kept on the host, tied to its record.
    const repaired = (JSON.parse(audit.stdout) as { entries: { seq: number; event: string; resource: string | null }[] }).entries.find((e) => e.event === 'repaired');
    const replaced = await runAgent(['audit', '--replaced', String(repaired?.seq), '--state-dir', stateDir]);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.equal(replaced.stdout, 'old\n');
    const none = await runAgent(['audit', '--replaced', '1', '--state-dir', stateDir]);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no replaced content is kept for record 1/);
    const status = await runAgent(['status', '--state-dir', stateDir, '--json']);
    const st = JSON.parse(status.stdout) as { baselines: { name: string; version: number }[] };
    assert.deepEqual(st.baselines.map((x) => `${x.name}@${x.version}`), ['b@1']);
  });

  it('apply exits 2 when drift is escalated rather than repaired', async () => {
    const f = path.join(t.dir, 'risky');
    writeFileSync(f, 'old\n');
    const b = writeBaseline(t.dir, 'r', `${HEADER}metadata: { name: r }\nspec:\n  policy: { risk: critical }\n  resources:\n    - file: ${f}\n      content: "new\\n"\n`);
    const res = await runAgent(['apply', '--baseline', b, '--state-dir', stateDir]);
    assert.equal(res.code, 2);
    assert.equal(readFileSync(f, 'utf8'), 'old\n');
  });

  it('audit --verify detects an edited record', async () => {
    const f = path.join(t.dir, 'motd');
    const b = writeBaseline(t.dir, 'a', `${HEADER}metadata: { name: a }\nspec:\n  resources:\n    - file: ${f}\n      content: "x\\n"\n`);
    assert.equal((await runAgent(['apply', '--baseline', b, '--state-dir', stateDir])).code, 0);
    assert.equal((await runAgent(['audit', '--verify', '--state-dir', stateDir])).code, 0);
    const db = new Database(path.join(stateDir, 'agent.db'));
    for (const row of db.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'").all() as { name: string }[]) db.exec(`DROP TRIGGER "${row.name}"`);
    const cols = (db.prepare("PRAGMA table_info('audit')").all() as { name: string }[]).map((c) => c.name);
    assert.ok(cols.includes('detail'));
    db.prepare("UPDATE audit SET detail = 'nothing happened here' WHERE event_id = (SELECT id FROM strings WHERE text = 'repaired')").run();
    db.close();
    const res = await runAgent(['audit', '--verify', '--state-dir', stateDir, '--json']);
    assert.equal(res.code, 1);
    assert.equal((JSON.parse(res.stdout) as { ok: boolean }).ok, false);
  });

  it('kill -9 in the middle of repairs leaves every file old or new, never partial; the next start converges', async () => {
    const root = path.join(t.dir, 'many');
    mkdirSync(root);
    const n = 200;
    const held = 10;
    const oldContent = 'o'.repeat(256 * 1024);
    const newContent = 'n'.repeat(256 * 1024);
    const pids = path.join(t.dir, 'validators');
    writeFileSync(pids, '');
    const lines = (blocking: boolean): string =>
      Array.from({ length: n }, (_, i) => {
        const hold = blocking && i >= n - held ? `      validate: "/bin/sh -c 'echo $$ >> ${pids}; exec sleep 600' sh %s"\n` : '';
        return `    - file: ${path.join(root, `f${i}`)}\n      content: "${newContent}"\n${hold}`;
      }).join('');
    for (let i = 0; i < n; i++) writeFileSync(path.join(root, `f${i}`), oldContent);
    // The last ten files wait in their validator: their new content is written, not yet renamed into place, at the kill.
    const b = writeBaseline(t.dir, 'big', `${HEADER}metadata: { name: big }\nspec:\n  resources:\n${lines(true)}`);
    const d = startAgentDaemon(['--baseline', b, '--state-dir', stateDir]);
    const running = (): string[] => readFileSync(pids, 'utf8').split('\n').filter(Boolean);
    await waitFor(() => running().length === held, 30_000, 'every held repair in its validator');
    await d.kill9();
    for (const pid of running()) process.kill(Number(pid), 'SIGKILL');
    const temps = readdirSync(root).filter((f) => f.startsWith('.'));
    for (let i = n - held; i < n; i++) {
      assert.equal(readFileSync(path.join(root, `f${i}`), 'utf8'), oldContent, `f${i} is held: still old`);
      const mine = temps.filter((f) => f.startsWith(`.f${i}.homeostat-`));
      assert.equal(mine.length, 1, `f${i} was mid-write at the kill: its new content in a temporary file (${temps.join(', ')})`);
      assert.equal(readFileSync(path.join(root, mine[0] as string), 'utf8'), newContent);
    }
    let olds = 0;
    for (let i = 0; i < n; i++) {
      const c = readFileSync(path.join(root, `f${i}`), 'utf8');
      assert.ok(c === oldContent || c === newContent, `f${i} is partial (${c.length} bytes)`);
      if (c === oldContent) olds++;
    }
    assert.ok(olds >= held);
    const b2 = writeBaseline(t.dir, 'big', `${HEADER}metadata: { name: big }\nspec:\n  resources:\n${lines(false)}`);
    const d2 = startAgentDaemon(['--baseline', b2, '--state-dir', stateDir]);
    try {
      await d2.ready(30_000);
      await waitFor(() => Array.from({ length: n }, (_, i) => readFileSync(path.join(root, `f${i}`), 'utf8') === newContent).every(Boolean), 30_000, 'converged after restart');
      await waitFor(() => readdirSync(root).every((f) => !f.startsWith('.')), 10_000, 'the temporary files of the killed run removed');
    } finally {
      await d2.stop();
    }
  });

  it('a disk-full repair is a repair_failed naming the cause; the old content is kept', async function () {
    const mnt = path.join(t.dir, 'small');
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
    } catch {
      this.skip();
    }
    try {
      const f = path.join(mnt, 'conf');
      writeFileSync(f, 'old\n');
      writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(40 * 1024));
      const b = writeBaseline(t.dir, 'full', `${HEADER}metadata: { name: full }\nspec:\n  resources:\n    - file: ${f}\n      content: "${'x'.repeat(48 * 1024)}"\n`);
      const res = await runAgent(['apply', '--baseline', b, '--state-dir', stateDir, '--json']);
      assert.equal(res.code, 2, res.stderr);
      const doc = JSON.parse(res.stdout) as { resources: { error?: { code: string; message: string } }[] };
      assert.equal(doc.resources[0]?.error?.code, 'HS_HOST_DISK_FULL');
      assert.match(doc.resources[0]?.error?.message ?? '', new RegExp(f.replaceAll('/', '\\/')));
      assert.equal(readFileSync(f, 'utf8'), 'old\n');
      assert.deepEqual(readdirSync(mnt).sort(), ['conf', 'filler'], 'no temporary file left behind');
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  it('audit filters read like the baseline, or are refused with a hint: never an empty answer for an input that cannot match', async () => {
    const f = path.join(t.dir, 'motd');
    const b = writeBaseline(t.dir, 'm', `${HEADER}metadata: { name: m }\nspec:\n  resources:\n    - file: ${f}\n      content: "x\\n"\n`);
    assert.equal((await runAgent(['apply', '--baseline', b, '--state-dir', stateDir])).code, 0);
    const entries = async (...args: string[]): Promise<{ event: string; resource: string | null }[]> => {
      const r = await runAgent(['audit', '--json', '--state-dir', stateDir, ...args]);
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { entries: { event: string; resource: string | null }[] }).entries;
    };
    assert.deepEqual((await entries('--resource', f)).map((e) => e.event), ['drift_detected', 'repaired'], 'a bare path names its file');
    assert.deepEqual((await entries('--resource', `file:${f}`, '--event', 'repaired')).length, 1);
    const refused = async (args: string[], message: RegExp): Promise<void> => {
      const r = await runAgent(['audit', '--state-dir', stateDir, ...args]);
      assert.equal(r.code, 1, `${args.join(' ')} is refused`);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, message);
    };
    await refused(['--event', 'repair'], /--event 'repair' is not an event the agent records; did you mean 'repaired'\?/);
    await refused(['--since', '10'], /--since '10' has no unit: write 10m, 10h or 10d/);
    await refused(['--resource', 'motd'], /names no resource type: write TYPE:NAME/);
    await refused(['--resource', 'fiel:/etc/motd'], /unknown resource type 'fiel'; did you mean 'file'\?/);
    // service:web is recorded as service:web.service: the filter asks for that.
    const store = (await import('../../agent/store/store.js')).AgentStore.open(stateDir);
    store.appendAudit({ time: Date.now(), resource: 'service:web.service', event: 'repaired', trigger: 'watch', baseline: 'm', version: 1, observed: null, desired: null, diff: null, detail: null });
    store.close();
    assert.deepEqual((await entries('--resource', 'service:web')).map((e) => e.resource), ['service:web.service']);
  });

  it('status says where pending records go; check --all lists compliant resources; run with nothing to enforce warns', async () => {
    const f = path.join(t.dir, 'motd');
    const b = writeBaseline(t.dir, 's', `${HEADER}metadata: { name: s }\nspec:\n  resources:\n    - file: ${f}\n      content: "x\\n"\n`);
    assert.equal((await runAgent(['apply', '--baseline', b, '--state-dir', stateDir])).code, 0);
    const status = await runAgent(['status', '--state-dir', stateDir, '--config', '/dev/null']);
    assert.match(status.stdout, /^outbox +none: standalone, records stay in the local audit log$/m);
    assert.equal((JSON.parse((await runAgent(['status', '--json', '--state-dir', stateDir])).stdout) as { outbox: { to: string | null } }).outbox.to, null);
    const all = await runAgent(['check', '--all', '--baseline', b]);
    assert.equal(all.code, 0);
    assert.match(all.stdout, new RegExp(`^file:${f}  compliant$`, 'm'));
    assert.doesNotMatch((await runAgent(['check', '--baseline', b])).stdout, /compliant$/m, 'without --all only deviations are listed');
    const d = startAgentDaemon(['--state-dir', stateDir, '--config', '/dev/null']);
    try {
      await d.ready();
    } finally {
      await d.stop();
    }
    assert.match(d.stderr, /"level":40[^\n]*no baseline files and no controller: this agent enforces nothing/);
  });

  it('--help shows defaults and required options', async () => {
    const reject = await runAgent(['reject', '--help']);
    assert.equal(reject.code, 0);
    assert.match(reject.stdout, /--reason <text> +required:/);
    assert.match(reject.stdout, /--for <duration> .*\(default: "7d"\)/);
    assert.match(reject.stdout, /--state-dir <dir> .*default: env\s+HOMEOSTAT_STATE_DIR, else \/var\/lib\/homeostat/);
    assert.match((await runAgent(['run', '--help'])).stdout, /--config <file> .*\(default:\s+\/etc\/homeostat\/agent\.yaml\)/);
  });
});
