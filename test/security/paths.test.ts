// A local, unprivileged user against the agent that writes as root: a symlinked parent, a parent they own swapped for a
// symlink while repairs run, hard links and setuid modes planted where they can write. The victim is never touched.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AgentStore } from '../../agent/store/store.js';
import type { AuditEntry } from '../../agent/store/types.js';
import { HsError } from '../../lib/errors.js';
import { runAgent, startAgentDaemon, tempDir, waitFor, writeBaseline, type DaemonProcess } from '../helpers/agent.js';
import { createResource, testDecl, testHost } from '../helpers/resource-runner.js';

const NOBODY = 65534;

/** Runs a Node script as nobody (setpriv), the way a local user would run anything. */
function asNobody(script: string, args: string[] = []): ReturnType<typeof spawn> {
  return spawn('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, '-e', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

function asNobodySync(script: string, args: string[] = []): void {
  const r = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, '-e', script, ...args]);
  assert.equal(r.status, 0, `as nobody: ${r.stderr.toString()}`);
}

/** Everything about a tree that a write, chmod, chown, create or delete would change. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string): void => {
    const st = lstatSync(p, { bigint: true });
    const content = st.isFile() ? createHash('sha256').update(readFileSync(p)).digest('hex') : '';
    out[path.relative(root, p) || '.'] = `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeNs} ${st.ctimeNs} ${st.nlink} ${content}`;
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(path.join(p, e));
  };
  walk(root);
  return out;
}

function audit(stateDir: string): AuditEntry[] {
  const store = AgentStore.open(stateDir, { readonly: true });
  try {
    return store.queryAudit({});
  } finally {
    store.close();
  }
}

interface ApplyDoc {
  resources: { id: string; outcome: string; error?: { code: string; message: string }; changes: { field: string; diff?: string }[] }[];
}

describe('a local unprivileged user cannot redirect the agent', function () {
  this.timeout(90_000);
  let t: { dir: string; cleanup: () => void };
  let victim: string;
  let app: string;
  let conf: string;
  let stateDir: string;
  let daemon: DaemonProcess | undefined;
  let before: Record<string, string>;

  beforeEach(() => {
    t = tempDir('hs-paths-');
    chmodSync(t.dir, 0o755); // nobody must be able to reach their own folder inside
    stateDir = path.join(t.dir, 'state');
    // What root owns and nobody must never get changed: a readable file, a secret one, a folder.
    victim = path.join(t.dir, 'victim');
    mkdirSync(path.join(victim, 'sub'), { recursive: true });
    writeFileSync(path.join(victim, 'motd'), 'victim motd\n', { mode: 0o644 });
    writeFileSync(path.join(victim, 'shadow'), 'root:$6$secret-hash:19000:0:99999:7:::\n', { mode: 0o600 });
    chmodSync(path.join(victim, 'shadow'), 0o600);
    // The application's folder belongs to nobody, as a service account's folder often does.
    app = path.join(t.dir, 'app');
    conf = path.join(app, 'conf');
    mkdirSync(conf, { recursive: true });
    chownSync(app, NOBODY, NOBODY);
    chownSync(conf, NOBODY, NOBODY);
    before = snapshot(victim);
  });

  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    t.cleanup();
  });

  it('refuses a managed path whose parent is a symlink, names the component, and keeps enforcing the rest', async () => {
    // The user swaps the folder they own for a symlink to root's folder.
    asNobodySync(`const fs = require('fs'); fs.renameSync(process.argv[1], process.argv[1] + '.old'); fs.symlinkSync(process.argv[2], process.argv[1]);`, [conf, victim]);
    const other = path.join(t.dir, 'etc/ok.conf');
    const b = writeBaseline(
      t.dir,
      'app',
      `apiVersion: homeostat/v1
kind: Baseline
metadata: { name: app }
spec:
  resources:
    - file: ${conf}/motd
      content: "managed\\n"
      mode: "0666"
    - file: ${conf}/new.conf
      content: "created by root\\n"
    - file: ${conf}/shadow
      mode: "0644"
    - file: ${conf}/gone
      ensure: absent
    - directory: ${conf}/sub
      mode: "0777"
    - file: ${other}
      content: "ok\\n"
`,
    );
    writeFileSync(path.join(victim, 'gone'), 'keep me\n');
    before = snapshot(victim);
    const res = await runAgent(['apply', '--baseline', b, '--state-dir', stateDir, '--json']);
    assert.equal(res.code, 2, res.stderr);
    const doc = JSON.parse(res.stdout) as ApplyDoc;
    for (const r of doc.resources.filter((x) => x.id.includes('/app/conf/'))) {
      assert.equal(r.outcome, 'failed', `${r.id}: ${JSON.stringify(r)}`);
      assert.equal(r.error?.code, 'HS_HOST_UNSAFE_PATH', r.id);
      assert.ok(r.error?.message.includes(`${conf} is a symlink (to ${victim})`), r.error?.message);
    }
    assert.equal(doc.resources.find((x) => x.id === `file:${other}`)?.outcome, 'repaired', 'other resources are still enforced');
    assert.equal(readFileSync(other, 'utf8'), 'ok\n');
    assert.deepEqual(snapshot(victim), before, 'nothing in the victim folder was created, changed, chmodded or removed');

    // The daemon escalates it at once (not retryable: a person has to look), and keeps running.
    daemon = startAgentDaemon(['--baseline', b, '--state-dir', stateDir]);
    await daemon.ready();
    await waitFor(() => audit(stateDir).some((e) => e.resource === `file:${conf}/motd` && e.event === 'escalated' && e.trigger === 'startup'), 10_000, 'escalated');
    const failed = audit(stateDir).find((e) => e.resource === `file:${conf}/motd` && e.event === 'repair_failed' && e.trigger === 'startup');
    assert.match(failed?.detail ?? '', /^HS_HOST_UNSAFE_PATH: .*is a symlink/);
    assert.deepEqual(snapshot(victim), before);
  });

  it('races a parent the user owns against symlink swaps while the agent repairs: every write lands in the real folder or nowhere', async function () {
    const n = 40;
    const files = Array.from({ length: n }, (_, i) => path.join(conf, `f${i}.conf`));
    const b = writeBaseline(
      t.dir,
      'race',
      `apiVersion: homeostat/v1
kind: Baseline
metadata: { name: race }
spec:
  policy:
    flap: { maxRepairs: 100000, window: 1m }
  resources:
${files.map((f) => `    - file: ${f}\n      content: "managed ${path.basename(f)}\\n"\n      mode: "0640"\n`).join('')}    - directory: ${conf}/d
      mode: "0700"
`,
    );
    daemon = startAgentDaemon(['--baseline', b, '--state-dir', stateDir]);
    await daemon.ready();
    await waitFor(() => files.every((f) => existsSync(f)), 10_000, 'initial convergence');
    const startSeq = Math.max(0, ...audit(stateDir).map((e) => e.seq));

    // For a few seconds the user deletes managed files (so the agent repairs them) and keeps swapping the folder for a
    // symlink to root's folder and back, as fast as it can.
    const attacker = asNobody(
      `const fs = require('fs');
       const [conf, victim, ms, ...files] = process.argv.slice(1);
       const spin = (us) => { const t = performance.now() + us / 1000; while (performance.now() < t); };
       const end = Date.now() + Number(ms);
       let swaps = 0, deletes = 0;
       for (let i = 0; Date.now() < end; i++) {
         if (i % 25 === 0) for (const f of files) { try { fs.unlinkSync(f); deletes++; } catch {} }
         spin(Math.random() * 400);
         try { fs.renameSync(conf, conf + '.real'); fs.symlinkSync(victim, conf); swaps++; } catch {}
         spin(Math.random() * 100);
         // Put the real folder back; a folder the agent made meanwhile (mkdir -p of a missing parent) is moved aside.
         try { fs.unlinkSync(conf); } catch { try { fs.renameSync(conf, conf + '.made' + i); } catch {} }
         try { fs.renameSync(conf + '.real', conf); } catch {}
       }
       console.log(JSON.stringify({ swaps, deletes }));`,
      [conf, victim, '4000', ...files],
    );
    let out = '';
    attacker.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((r) => attacker.on('exit', r));
    assert.equal(code, 0, 'the attacker ran');
    const { swaps, deletes } = JSON.parse(out) as { swaps: number; deletes: number };
    // The user leaves the real folder in place; the agent heals everything there again.
    if (lstatSync(conf).isSymbolicLink()) {
      asNobodySync(`require('fs').unlinkSync(process.argv[1]); require('fs').renameSync(process.argv[1] + '.real', process.argv[1]);`, [conf]);
    }
    assert.deepEqual(snapshot(victim), before, `the victim is untouched after ${swaps} swaps`);
    // Refused repairs back off for longer and longer; a restart looks at everything again at once.
    await daemon.stop();
    const during = audit(stateDir).filter((e) => e.seq > startSeq);
    daemon = startAgentDaemon(['--baseline', b, '--state-dir', stateDir]);
    await daemon.ready();
    await waitFor(() => files.every((f) => existsSync(f) && readFileSync(f, 'utf8') === `managed ${path.basename(f)}\n`), 20_000, 'healed after the race');
    const repairs = during.filter((e) => e.event === 'repaired').length;
    const refused = during.filter((e) => e.event === 'repair_failed' && (e.detail ?? '').startsWith('HS_HOST_UNSAFE_PATH')).length;
    assert.deepEqual(snapshot(victim), before, `the victim is untouched after ${swaps} swaps and ${repairs} repairs (${refused} refused as unsafe)`);
    // Refused repairs back off (1 s, 2 s, ...), so attempts stay in the tens; each one raced the swaps.
    const attempts = during.filter((e) => e.event === 'repaired' || e.event === 'repair_failed').length;
    assert.ok(swaps > 100 && attempts > 30, `a real race: ${swaps} swaps, ${deletes} deletions, ${attempts} repair attempts`);
    assert.ok(statSync(conf).isDirectory() && !lstatSync(conf).isSymbolicLink());
    this.test && (this.test.title += ` (${swaps} swaps, ${repairs} repairs, ${refused} refused)`);
  });

  it("refuses to chmod a hard link to root's file planted in a folder others can write, and never shows its content", async () => {
    // With fs.protected_hardlinks=1 a user cannot link a file they do not own; on a system without it (or through any
    // other way to get a link there), this is the link they would plant. Root plants it here for them.
    const planted = path.join(conf, 'app.conf');
    linkSync(path.join(victim, 'shadow'), planted);
    before = snapshot(victim);
    const b = writeBaseline(
      t.dir,
      'hard',
      `apiVersion: homeostat/v1
kind: Baseline
metadata: { name: hard }
spec:
  resources:
    - file: ${planted}
      mode: "0644"
      owner: nobody
`,
    );
    const res = await runAgent(['apply', '--baseline', b, '--state-dir', stateDir, '--json']);
    assert.equal(res.code, 2, res.stderr);
    const r = (JSON.parse(res.stdout) as ApplyDoc).resources[0];
    assert.equal(r?.error?.code, 'HS_HOST_UNSAFE_PATH', JSON.stringify(r));
    assert.match(r?.error?.message ?? '', /has 2 hard links/);
    assert.deepEqual(snapshot(victim), before, 'the linked file keeps its mode and owner');

    // Declared content replaces the link with a new file instead; the check before shows no line of what was there.
    const withContent = writeBaseline(t.dir, 'hard2', `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: hard2 }\nspec:\n  resources:\n    - file: ${planted}\n      content: "app = 1\\n"\n      mode: "0644"\n`);
    const check = await runAgent(['check', '--baseline', withContent, '--json']);
    assert.equal(check.code, 2, check.stderr);
    assert.ok(!check.stdout.includes('secret-hash'), 'no content of the linked file in check output');
    const apply = await runAgent(['apply', '--baseline', withContent, '--state-dir', stateDir, '--json']);
    assert.equal(apply.code, 0, apply.stderr);
    assert.equal(readFileSync(planted, 'utf8'), 'app = 1\n');
    assert.deepEqual(snapshot(victim), { ...before, shadow: snapshot(victim).shadow }, 'only the link count of the victim changed');
    assert.equal(readFileSync(path.join(victim, 'shadow'), 'utf8'), 'root:$6$secret-hash:19000:0:99999:7:::\n');
    assert.equal(statSync(path.join(victim, 'shadow')).mode & 0o7777, 0o600);
  });

  it('never makes a file the user planted setuid root: it installs a fresh copy of declared content, or refuses', async () => {
    const tool = path.join(conf, 'tool');
    asNobodySync(`require('fs').writeFileSync(process.argv[1], '#!/bin/sh\\nid\\n', { mode: 0o755 });`, [tool]);
    const planted = statSync(tool);
    assert.equal(planted.uid, NOBODY);
    const noContent = writeBaseline(t.dir, 'suid', `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: suid }\nspec:\n  resources:\n    - file: ${tool}\n      mode: "4755"\n      owner: root\n`);
    const res = await runAgent(['apply', '--baseline', noContent, '--state-dir', stateDir, '--json']);
    assert.equal(res.code, 2, res.stderr);
    assert.equal((JSON.parse(res.stdout) as ApplyDoc).resources[0]?.error?.code, 'HS_HOST_UNSAFE_PATH');
    assert.equal(statSync(tool).mode & 0o7777, 0o755);
    assert.equal(statSync(tool).uid, NOBODY);

    // The same bytes declared as content: a new root-written inode gets the mode, not the user's.
    const withContent = writeBaseline(t.dir, 'suid2', `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: suid2 }\nspec:\n  resources:\n    - file: ${tool}\n      content: "#!/bin/sh\\nid\\n"\n      mode: "4755"\n      owner: root\n`);
    const ok = await runAgent(['apply', '--baseline', withContent, '--state-dir', stateDir, '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    const now = statSync(tool);
    assert.equal(now.mode & 0o7777, 0o4755);
    assert.notEqual(now.ino, planted.ino, 'a fresh file, not the one the user made (and may hold open)');
  });

  it('never reuses a folder it kept open once the path leads elsewhere: renamed, replaced by a symlink, or mounted over', async () => {
    const target = path.join(conf, 'motd');
    writeFileSync(target, 'first\n');
    const r = createResource(testDecl('file', target, { ensure: 'present', content: 'managed\n' }), testHost({ stateDir }));
    const summary = async (): Promise<Record<string, unknown>> => r.summarize(await r.observe());
    const sha = (text: string): string => createHash('sha256').update(text).digest('hex');
    assert.equal((await summary()).sha256, sha('first\n'));
    // The folder moves away and a symlink takes its place, right after the agent looked (its folder is still open).
    renameSync(conf, `${conf}.moved`);
    symlinkSync(victim, conf);
    writeFileSync(path.join(victim, 'motd'), 'victim motd\n');
    const refused = await r.observe().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(refused instanceof HsError && refused.code === 'HS_HOST_UNSAFE_PATH', `not refused: ${String(refused)}`);
    // A new real folder at the path is looked at, not the old one.
    execFileSync('rm', [conf]);
    mkdirSync(conf);
    writeFileSync(target, 'second\n');
    assert.equal((await summary()).sha256, sha('second\n'));
    // Something mounted over the folder is looked at too.
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', conf]);
    } catch {
      return; // no mounts here: the rest was shown
    }
    try {
      writeFileSync(target, 'mounted\n');
      assert.equal((await summary()).sha256, sha('mounted\n'));
    } finally {
      // The agent keeps a folder it just walked open for about a second: unmounting may say "busy" until then.
      await waitFor(() => spawnSync('umount', [conf]).status === 0, 10_000, 'umount');
    }
  });

  it('reports a symlinked parent in check without reading through it', async () => {
    renameSync(conf, `${conf}.old`);
    symlinkSync(victim, conf);
    const b = writeBaseline(t.dir, 'peek', `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: peek }\nspec:\n  resources:\n    - file: ${conf}/shadow\n      content: "x\\n"\n`);
    const res = await runAgent(['check', '--baseline', b, '--json']);
    assert.equal(res.code, 1, res.stderr);
    assert.ok(!res.stdout.includes('secret-hash'));
    const r = (JSON.parse(res.stdout) as ApplyDoc).resources[0];
    assert.equal(r?.error?.code, 'HS_HOST_UNSAFE_PATH');
  });
});
