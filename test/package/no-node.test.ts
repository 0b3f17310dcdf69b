// The agent executable on a host without Node.js: one-shot commands with their SQLite cache, the daemon repairing drift, upgrades and a newer database.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { AGENT_BIN, REPO, cleanEnv, copyOut, runWithoutNode, spawnWithoutNode } from './artifacts.js';

async function waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('package: the agent executable without Node.js', function () {
  this.timeout(60_000);
  let dir: string;
  let bin: string;
  let baseline: string;
  let motd: string;
  let stateDir: string;
  let cacheDir: string;
  let env: NodeJS.ProcessEnv;
  const daemons: ChildProcess[] = [];

  before(() => {
    // Outside the repository: the namespace hides it.
    dir = mkdtempSync(path.join(tmpdir(), 'hs-pkg-nonode-'));
    bin = copyOut(AGENT_BIN, path.join(dir, 'bin'));
    motd = path.join(dir, 'etc/motd');
    stateDir = path.join(dir, 'state');
    cacheDir = path.join(dir, 'cache');
    baseline = path.join(dir, 'baseline.yaml');
    writeFileSync(
      baseline,
      [
        'apiVersion: homeostat/v1',
        'kind: Baseline',
        'metadata:',
        '  name: pkg-nonode',
        'spec:',
        '  resources:',
        `    - file: ${motd}`,
        '      content: "Authorized use only\\n"',
        '      mode: "0644"',
        '',
      ].join('\n'),
    );
    mkdirSync(path.dirname(motd));
    env = cleanEnv({ HOME: dir, HOMEOSTAT_CACHE_DIR: cacheDir });
  });

  after(async () => {
    for (const d of daemons) if (d.exitCode === null) d.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('cannot reach node or node_modules inside the namespace', async () => {
    const r = await runWithoutNode(['sh', '-c', `node -e 0; echo "node=$?"; ls ${REPO}node_modules | wc -l`], env);
    assert.match(r.stdout, /node=12[67]/, 'node is not runnable');
    assert.match(r.stdout, /^0$/m, 'the repository is empty');
  });

  it('--version and validate', async () => {
    const v = await runWithoutNode([bin, '--version'], env);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^\d+\.\d+\.\d+/);
    const ok = await runWithoutNode([bin, 'validate', baseline], env);
    assert.equal(ok.code, 0, ok.stderr);
    const badFile = path.join(dir, 'bad.yaml');
    writeFileSync(badFile, readFileSync(baseline, 'utf8').replace('mode: "0644"', 'mode: "9999"'));
    const bad = await runWithoutNode([bin, 'validate', badFile], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout + bad.stderr, /bad\.yaml:\d+:\d+/);
  });

  it('check finds drift, apply converges, check is then compliant; the SQLite cache and the extracted addon are on disk', async () => {
    const drift = await runWithoutNode([bin, 'check', '--baseline', baseline, '--state-dir', stateDir, '--json'], env);
    assert.equal(drift.code, 2, drift.stderr);
    assert.equal((JSON.parse(drift.stdout) as { compliant: boolean }).compliant, false);
    assert.equal(existsSync(motd), false, 'check changes nothing');

    const apply = await runWithoutNode([bin, 'apply', '--baseline', baseline, '--state-dir', stateDir], env);
    assert.equal(apply.code, 0, apply.stderr);
    assert.equal(readFileSync(motd, 'utf8'), 'Authorized use only\n');
    assert.equal(statSync(motd).mode & 0o7777, 0o644);

    const ok = await runWithoutNode([bin, 'check', '--baseline', baseline, '--state-dir', stateDir, '--json'], env);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { compliant: boolean }).compliant, true);

    assert.ok(existsSync(path.join(stateDir, 'agent.db')));
    const [digestDir] = readdirSync(path.join(cacheDir, 'native'));
    assert.ok(digestDir, 'the addon was extracted under HOMEOSTAT_CACHE_DIR/native/DIGEST');
    const addonDir = path.join(cacheDir, 'native', digestDir);
    assert.equal(statSync(addonDir).mode & 0o777, 0o700);
    assert.equal(statSync(path.join(addonDir, 'better_sqlite3.node')).mode & 0o222, 0, 'the extracted addon is read-only');
  });

  it('falls back to another cache dir when HOMEOSTAT_CACHE_DIR is mounted noexec', async () => {
    const noexec = path.join(dir, 'noexec');
    const home = path.join(dir, 'home');
    const script = `mkdir -p "$1" && mount -t tmpfs -o noexec,size=8m tmpfs "$1" && shift && exec "$@"`;
    // apply opens the SQLite cache (a check of a converged host may not need it).
    const r = await runWithoutNode(['sh', '-c', script, '_', noexec, bin, 'apply', '--baseline', baseline, '--state-dir', stateDir], {
      ...env,
      HOMEOSTAT_CACHE_DIR: noexec,
      HOME: home,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(path.join(home, '.cache/homeostat/native')), 'extracted under ~/.cache/homeostat instead');
  });

  it('the daemon repairs a tampered file and records it; SIGTERM stops it with 0', async () => {
    const daemon = spawnWithoutNode([bin, 'run', '--baseline', baseline, '--state-dir', stateDir], env);
    daemons.push(daemon);
    let stderr = '';
    daemon.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor(() => stderr.includes('"agent ready"') || daemon.exitCode !== null, 20_000, 'agent ready');
    assert.equal(daemon.exitCode, null, stderr);

    writeFileSync(motd, 'tampered\n');
    await waitFor(() => readFileSync(motd, 'utf8') === 'Authorized use only\n', 5_000, 'the file repaired').catch((err: Error) => {
      throw new Error(`${err.message}\n${stderr}`);
    });
    rmSync(motd);
    await waitFor(() => existsSync(motd) && readFileSync(motd, 'utf8') === 'Authorized use only\n', 5_000, 'the deleted file restored');

    const exited = new Promise<number | null>((resolve) => daemon.on('exit', (code) => resolve(code)));
    daemon.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);

    const audit = await runWithoutNode([bin, 'audit', '--state-dir', stateDir, '--resource', `file:${motd}`, '--json'], env);
    assert.equal(audit.code, 0, audit.stderr);
    const events = JSON.stringify(JSON.parse(audit.stdout));
    assert.match(events, /drift_detected/);
    assert.match(events, /repaired/);
  });

  it('an upgrade (the executable replaced in place) keeps the state, and a newer database is refused clearly', async () => {
    const before = await runWithoutNode([bin, 'audit', '--state-dir', stateDir, '--json'], env);
    assert.equal(before.code, 0, before.stderr);
    // What dpkg and install.sh do: a new file renamed over the old one.
    copyFileSync(AGENT_BIN, `${bin}.new`);
    renameSync(`${bin}.new`, bin);
    const after = await runWithoutNode([bin, 'audit', '--state-dir', stateDir, '--json'], env);
    assert.equal(after.code, 0, after.stderr);
    assert.deepEqual(JSON.parse(after.stdout), JSON.parse(before.stdout), 'the audit log survives the upgrade');
    const check = await runWithoutNode([bin, 'check', '--baseline', baseline, '--state-dir', stateDir], env);
    assert.equal(check.code, 0, check.stderr);

    const db = new Database(path.join(stateDir, 'agent.db'));
    const current = Number(db.pragma('user_version', { simple: true }));
    db.pragma(`user_version = ${current + 100}`);
    db.close();
    for (const cmd of [['apply', '--baseline', baseline], ['status']]) {
      const refused = await runWithoutNode([bin, ...cmd, '--state-dir', stateDir], env);
      assert.equal(refused.code, 1, `${cmd[0]}: ${refused.stdout}`);
      assert.match(refused.stderr, /newer agent/);
      assert.match(refused.stderr, /HS_STORE_MIGRATION/);
    }
  });
});
