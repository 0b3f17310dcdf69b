// Content of secret files never leaves the host: no diff, no text and no plain hash in check output, plans or the audit
// log (which the controller receives); a keyed hash says "changed" and the replaced content stays in the local backup.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { planResources } from '../../agent/engine/plan.js';
import { AgentStore } from '../../agent/store/store.js';
import { runAgent, startAgentDaemon, tempDir, waitFor, writeBaseline, type DaemonProcess } from '../helpers/agent.js';
import { testDecl, testHost } from '../helpers/resource-runner.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const OLD = 'db_password = hunter2-old\n';
const NEW = 'db_password = correct-horse-new\n';

/** Fails when any form of the contents appears in `text`: their words or their plain sha256. */
function assertNoContent(text: string, what: string, contents = [OLD, NEW]): void {
  for (const c of contents) {
    for (const leak of [c.split(' = ')[1]?.trim() ?? c, sha(c)]) assert.ok(!text.includes(leak), `${what} leaks ${leak}:\n${text.slice(0, 2000)}`);
  }
}

interface CheckDoc {
  resources: { id: string; outcome: string; changes: { field: string; observed: unknown; desired: unknown; diff?: string }[]; observed?: Record<string, unknown>; desired?: Record<string, unknown> }[];
}

describe('secret file content stays on the host', function () {
  this.timeout(60_000);
  let t: { dir: string; cleanup: () => void };
  let stateDir: string;
  let daemon: DaemonProcess | undefined;
  beforeEach(() => {
    t = tempDir('hs-secret-');
    stateDir = path.join(t.dir, 'state');
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    t.cleanup();
  });

  const baseline = (file: string, extra: string): string =>
    writeBaseline(t.dir, 'secret', `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: secret }\nspec:\n  resources:\n    - file: ${file}\n      content: ${JSON.stringify(NEW)}\n${extra}`);

  it('check --json of a file with mode 0600 (secret by default) shows keyed hashes only', async () => {
    const f = path.join(t.dir, 'db.conf');
    writeFileSync(f, OLD, { mode: 0o600 });
    const res = await runAgent(['check', '--baseline', baseline(f, '      mode: "0600"\n'), '--json']);
    assert.equal(res.code, 2, res.stderr);
    assertNoContent(res.stdout, 'check --json');
    const r = (JSON.parse(res.stdout) as CheckDoc).resources[0];
    const content = r?.changes.find((c) => c.field === 'content');
    assert.match(String(content?.observed), /^hmac-sha256:[0-9a-f]{64}$/);
    assert.match(String(content?.desired), /^hmac-sha256:[0-9a-f]{64}$/);
    assert.equal(content?.diff, undefined);
    assert.equal(r?.observed?.secret, true);
    assert.equal(r?.observed?.sha256, undefined);
  });

  it('a file others cannot read is not shown either, even when the baseline does not call it secret', async () => {
    // The plan case: a baseline names a root-only file (say /etc/shadow) just to read it through the diff.
    const f = path.join(t.dir, 'shadow');
    writeFileSync(f, OLD, { mode: 0o640 });
    chmodSync(f, 0o640);
    const res = await runAgent(['check', '--baseline', baseline(f, ''), '--json']);
    assert.equal(res.code, 2, res.stderr);
    // What the baseline declares is the baseline author's to see; what the file holds is not.
    assertNoContent(res.stdout, 'check --json', [OLD]);
    const plan = await planResources([testDecl('file', f, { ensure: 'present', content: NEW })], testHost({ stateDir }), []);
    assert.deepEqual(plan.changes.map((c) => [c.resource, c.fields.join(',')]), [[`file:${f}`, 'content']]);
    assertNoContent(JSON.stringify(plan), 'a plan', [OLD]);
  });

  it('secret: false on a readable file keeps the diff; secret: true hides it whatever the mode', async () => {
    const f = path.join(t.dir, 'motd');
    writeFileSync(f, OLD, { mode: 0o644 });
    chmodSync(f, 0o644);
    const shown = await runAgent(['check', '--baseline', baseline(f, '      mode: "0600"\n      secret: false\n'), '--json']);
    assert.match((JSON.parse(shown.stdout) as CheckDoc).resources[0]?.changes.find((c) => c.field === 'content')?.diff ?? '', /^-db_password = hunter2-old$/m);
    const hidden = await runAgent(['check', '--baseline', baseline(f, '      mode: "0644"\n      secret: true\n'), '--json']);
    assert.equal(hidden.code, 2, hidden.stderr);
    assertNoContent(hidden.stdout, 'check --json of secret: true');
  });

  it('the daemon records drift of a secret file with a keyed hash from a key kept in the state dir, and keeps the old content in its local backup', async () => {
    const f = path.join(t.dir, 'db.conf');
    writeFileSync(f, NEW, { mode: 0o600 });
    const b = baseline(f, '      mode: "0600"\n');
    daemon = startAgentDaemon(['--baseline', b, '--state-dir', stateDir]);
    await daemon.ready();
    // Replaced in one step (a sibling renamed over it): an in-place rewrite can be seen empty, and that is what gets kept.
    writeFileSync(`${f}.edit`, OLD, { mode: 0o600 });
    renameSync(`${f}.edit`, f);
    await waitFor(() => readFileSync(f, 'utf8') === NEW, 10_000, 'repaired');
    await daemon.stop();
    daemon = undefined;
    const store = AgentStore.open(stateDir, { readonly: true });
    let recorded: unknown;
    try {
      const entries = store.queryAudit({}).filter((e) => e.resource === `file:${f}`);
      assert.ok(entries.some((e) => e.event === 'drift_detected') && entries.some((e) => e.event === 'repaired'), entries.map((e) => e.event).join());
      assertNoContent(JSON.stringify(entries), 'the audit log');
      const drift = entries.find((e) => e.event === 'drift_detected');
      assert.equal(drift?.diff, null);
      assert.match(String(drift?.observed?.hmac), /^hmac-sha256:/);
      recorded = drift?.desired?.hmac;
      const backups = store.listBackups(`file:${f}`);
      assert.equal(backups.length, 1);
      assert.equal(store.getBackup(backups[0]?.id ?? -1)?.content?.toString(), OLD, 'the replaced content is kept, on this host only');
    } finally {
      store.close();
    }
    const key = path.join(stateDir, 'content-hash.key');
    assert.ok(existsSync(key));
    assert.equal(statSync(key).mode & 0o777, 0o600);
    assert.equal(statSync(key).size, 32);
    // Another process with the same state dir hashes with the same key: an accepted drift is recognised after a restart.
    const check = await runAgent(['check', '--baseline', b, '--state-dir', stateDir, '--json']);
    assert.equal(check.code, 0, check.stderr);
    assert.match(String(recorded), /^hmac-sha256:/);
    assert.equal((JSON.parse(check.stdout) as CheckDoc).resources[0]?.desired?.hmac, recorded);
  });
});
