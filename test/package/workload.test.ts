// The agent executable under the work it will do, on 10,000 files: apply 20 times on fresh state, check, and the daemon under continuous drift and reloads — no abort, every drift repaired, the audit chain intact.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { throughPipe } from '../helpers/pipe.js';
import { AGENT_BIN, cleanEnv, sh } from './artifacts.js';
import { Daemon, TAMPERS, aborted, compliant, driftContinuously, memoryOf, tamper, writeFileSet, type FileSet } from './workload.js';

const FILES = Number(process.env.HOMEOSTAT_WORKLOAD_FILES ?? 10_000);
const DAEMON_SECONDS = Number(process.env.HOMEOSTAT_WORKLOAD_SECONDS ?? 60);

describe('package: the agent executable under real work (10,000 files)', function () {
  this.timeout(15 * 60_000);
  let dir: string;
  let set: FileSet;
  let env: NodeJS.ProcessEnv;
  const agent = (args: string[]): ReturnType<typeof sh> => sh(AGENT_BIN, args, { env, timeoutMs: 5 * 60_000 });

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-pkg-work-'));
    set = writeFileSet(dir, FILES, { create: true });
    env = cleanEnv({ HOMEOSTAT_CACHE_DIR: path.join(dir, 'cache') });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('apply, 20 times in a row on a fresh state dir, repairs what drifted and never aborts', async () => {
    const stateDir = path.join(dir, 'state-apply');
    const times: number[] = [];
    for (let run = 0; run < 20; run++) {
      // 60 drifted files per run, of every kind, so each apply writes as well as reads.
      const drifted = Array.from({ length: 60 }, (_, i) => set.paths[(run * 997 + i * 163) % set.paths.length] ?? '');
      drifted.forEach((p, i) => tamper(p, TAMPERS[i % TAMPERS.length] ?? 'content'));
      rmSync(stateDir, { recursive: true, force: true });
      const started = Date.now();
      const r = await agent(['apply', '--baseline', set.baseline, '--state-dir', stateDir]);
      times.push(Date.now() - started);
      assert.equal(r.code, 0, `run ${run + 1}: exit ${r.code}\n${r.stderr.slice(-3000)}`);
      assert.match(r.stdout, new RegExp(`^${FILES} resources: .*60 repaired`, 'm'), `run ${run + 1}: ${r.stdout.slice(-500)}`);
      assert.deepEqual(drifted.filter((p) => !compliant(p)), [], `run ${run + 1}: every drifted file repaired`);
    }
    times.sort((a, b) => a - b);
    process.stderr.write(`      apply of ${FILES} files on fresh state: median ${times[10]} ms, max ${times[19]} ms\n`);
  });

  it('check of the converged files: compliant, exit 0; with drift, exit 2 and the drift named', async () => {
    const ok = await agent(['check', '--baseline', set.baseline]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`^${FILES} resources: ${FILES} compliant, 0 drifted, 0 failed$`, 'm'));
    const victim = set.paths[4242 % set.paths.length] ?? '';
    tamper(victim, 'chmod');
    const drift = await agent(['check', '--baseline', set.baseline, '--json']);
    assert.equal(drift.code, 2, drift.stderr);
    const doc = JSON.parse(drift.stdout) as { resources: { id: string; outcome: string }[] };
    assert.deepEqual(doc.resources.filter((r) => r.outcome === 'drifted').map((r) => r.id), [`file:${victim}`]);
  });

  it(`the daemon, ${DAEMON_SECONDS} s of continuous drift (changed, deleted, chmodded) with a SIGHUP reload every 5 s: every drift repaired, no abort, the audit chain intact`, async function () {
    this.timeout((DAEMON_SECONDS + 300) * 1000);
    const stateDir = path.join(dir, 'state-daemon');
    const daemon = new Daemon(AGENT_BIN, ['--baseline', set.baseline, '--state-dir', stateDir, '--log-level', 'info'], path.join(dir, 'daemon.log'), env);
    try {
      const startMs = await daemon.ready(120_000);
      const until = Date.now() + DAEMON_SECONDS * 1000;
      const report = await driftContinuously(daemon, set, { ratePerSecond: 40, reloadEveryMs: 5_000, repairDeadlineMs: 10_000, until: () => Date.now() < until });
      const mem = memoryOf(daemon.pid);
      const ended = await daemon.stop();
      assert.ok(!aborted(ended), `the daemon died by ${ended.signal}:\n${daemon.log().slice(-3000)}`);
      assert.equal(ended.code, 0, daemon.log().slice(-3000));
      report.latenciesMs.sort((a, b) => a - b);
      const p = (q: number): number => report.latenciesMs[Math.floor(q * (report.latenciesMs.length - 1))] ?? NaN;
      process.stderr.write(
        `      start-up ${startMs} ms; ${report.tampers} tampers (${JSON.stringify(report.byKind)}), ${report.reloads} reloads; ` +
          `repaired p50 ${p(0.5)} ms, p99 ${p(0.99)} ms (seen from outside); RSS ${(mem.rssKb / 1024).toFixed(1)} MB, anon ${(mem.anonKb / 1024).toFixed(1)} MB\n`,
      );
      // That the drift was continuous, with room for a loaded machine (40/s asked; 35/s seen at load average 14).
      assert.ok(report.tampers >= DAEMON_SECONDS * 5, `${report.tampers} tampers`);
      assert.ok(report.reloads >= Math.floor(DAEMON_SECONDS / 10), `${report.reloads} reloads`);
      assert.deepEqual(report.unrepaired, [], 'every drift repaired');
      assert.deepEqual(set.paths.filter((f) => !compliant(f)), [], 'the whole set compliant at the end');

      const verify = await agent(['audit', '--verify', '--state-dir', stateDir]);
      assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      assert.match(verify.stdout, /audit chain intact/);
      const audit = await agent(['audit', '--json', '--state-dir', stateDir]);
      assert.equal(audit.code, 0, audit.stderr);
      const entries = (JSON.parse(audit.stdout) as { entries: { event: string; trigger: string | null }[] }).entries;
      const count = (event: string, trigger?: string): number => entries.filter((e) => e.event === event && (!trigger || e.trigger === trigger)).length;
      assert.ok(count('repaired') >= report.tampers, `${count('repaired')} repairs recorded for ${report.tampers} tampers`);
      assert.ok(count('baseline_activated', 'reload') >= report.reloads, `${count('baseline_activated', 'reload')} reloads recorded of ${report.reloads}`);
      assert.equal(count('repair_failed'), 0);
      assert.equal(count('suppressed_flapping'), 0);

      // The same multi-megabyte document through a reader that starts 2 s late, and through one that stops after a line.
      assert.ok(audit.stdout.length > 2_000_000, `${audit.stdout.length} bytes`);
      const slow = await throughPipe('slow', [AGENT_BIN, 'audit', '--json', '--state-dir', stateDir], dir, env);
      assert.equal(slow.code, 0, slow.stderr);
      assert.equal(slow.out.length, audit.stdout.length);
      assert.equal((JSON.parse(slow.out) as { entries: unknown[] }).entries.length, entries.length);
      const head = await throughPipe('head', [AGENT_BIN, 'audit', '--json', '--state-dir', stateDir], dir, env);
      assert.equal(head.code, 0, head.stderr);
      assert.equal(head.out, '{\n');
      assert.equal(head.stderr, '', 'a reader that closes early is no error');
    } finally {
      await daemon.stop();
    }
  });
});
