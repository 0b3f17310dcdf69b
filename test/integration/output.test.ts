// Complete output: homeostat-agent, homeostat-controller and homeostatctl write all of their output and keep their exit code through a pipe, a slow reader and a reader that closes early.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AGENT_MAIN, runAgent, tempDir, waitFor, writeBaseline } from '../helpers/agent.js';
import { throughPipe, toFile } from '../helpers/pipe.js';

const CONTROLLER_MAIN = fileURLToPath(new URL('../../controller/main.js', import.meta.url));
const CTL_MAIN = fileURLToPath(new URL('../../controller/ctl/main.js', import.meta.url));

/** Every reader gets everything a file gets and the command keeps its code; `head -1` gets the first line and no stack trace. */
async function assertCompleteEverywhere(cmd: string[], dir: string, expectCode: number): Promise<string> {
  const full = await toFile(cmd, dir);
  assert.equal(full.code, expectCode, full.stderr);
  assert.ok(full.out.length > 0, 'the command printed something');
  for (const reader of ['pipe', 'slow'] as const) {
    const r = await throughPipe(reader, cmd, dir);
    assert.equal(r.code, expectCode, `${reader}: ${r.stderr}`);
    assert.equal(r.out.length, full.out.length, `${reader}: ${r.out.length} of ${full.out.length} bytes`);
    assert.equal(r.out, full.out);
  }
  const head = await throughPipe('head', cmd, dir);
  assert.equal(head.code, expectCode, head.stderr);
  assert.equal(head.out, `${full.out.split('\n')[0] ?? ''}\n`);
  assert.doesNotMatch(head.stderr, /EPIPE|Error|at /, 'a reader that closes early is not an error');
  return full.out;
}

describe('complete output through pipes', function () {
  this.timeout(120_000);
  let t: { dir: string; cleanup: () => void };
  before(() => {
    t = tempDir('hs-test-output-');
  });
  after(() => t.cleanup());

  describe('homeostat-agent', () => {
    let baseline: string;
    let stateDir: string;
    const agent = (args: string[]): string[] => [process.execPath, AGENT_MAIN, ...args];

    before(async () => {
      // 300 files of 150 lines, each drifted: the audit carries a unified diff per file, about 2.4 MB in all.
      const root = path.join(t.dir, 'root');
      mkdirSync(root);
      const desired = Array.from({ length: 150 }, (_, j) => `desired line ${j}\n`).join('');
      writeFileSync(path.join(t.dir, 'content.txt'), desired);
      const resources: string[] = [];
      for (let i = 0; i < 300; i++) {
        const f = path.join(root, `f${i}.conf`);
        writeFileSync(f, Array.from({ length: 150 }, (_, j) => `drifted line ${j} of file ${i}\n`).join(''));
        resources.push(`    - file: ${f}\n      source: content.txt\n`);
      }
      baseline = writeBaseline(t.dir, 'big', `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: big\nspec:\n  resources:\n${resources.join('')}`);
      stateDir = path.join(t.dir, 'state');
      const apply = await runAgent(['apply', '--baseline', baseline, '--state-dir', stateDir]);
      assert.equal(apply.code, 0, apply.stderr);
    });

    it('audit --json: a multi-megabyte document arrives whole through a pipe and a slow reader, and parses', async () => {
      const out = await assertCompleteEverywhere(agent(['audit', '--json', '--state-dir', stateDir]), t.dir, 0);
      assert.ok(out.length > 2_000_000, `${out.length} bytes`);
      const doc = JSON.parse(out) as { entries: { event: string }[] };
      assert.equal(doc.entries.filter((e) => e.event === 'repaired').length, 300);
    });

    it('audit as text, the same', async () => {
      const out = await assertCompleteEverywhere(agent(['audit', '--state-dir', stateDir]), t.dir, 0);
      assert.ok(out.length > 1_000_000, `${out.length} bytes`);
    });

    it('check --json keeps exit code 2 (drift) through every reader', async () => {
      for (let i = 0; i < 300; i += 3) writeFileSync(path.join(t.dir, 'root', `f${i}.conf`), 'drifted again\n'.repeat(2000));
      const out = await assertCompleteEverywhere(agent(['check', '--json', '--baseline', baseline]), t.dir, 2);
      assert.equal((JSON.parse(out) as { compliant: boolean }).compliant, false);
    });

    it('output that cannot be written (a full disk behind a redirect) is an error: exit 1 and a line on stderr', () => {
      const r = spawnSync('bash', ['-c', '"$@" >/dev/full', 'hs-full', ...agent(['audit', '--json', '--state-dir', stateDir])], { encoding: 'utf8' });
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, /^output failed: ENOSPC/m);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    });

    it('--help and an unknown command keep their codes', async () => {
      await assertCompleteEverywhere(agent(['--help']), t.dir, 0);
      const bad = await throughPipe('slow', agent(['no-such-command']), t.dir);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /unknown command/);
    });
  });

  describe('homeostat-controller and homeostatctl', () => {
    const ADMIN = 'output-test-admin-token';
    let controller: ChildProcess | undefined;
    let stderr = '';
    let server = '';
    const ctl = (args: string[]): string[] => [process.execPath, CTL_MAIN, '--server', server, '--token', ADMIN, ...args];

    before(async () => {
      controller = spawn(process.execPath, [CONTROLLER_MAIN, 'run', '--insecure-http', '--listen', '127.0.0.1:0', '--data-dir', path.join(t.dir, 'controller'), '--admin-token', ADMIN], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      controller.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      await waitFor(() => /"controller listening"/.test(stderr) || controller?.exitCode !== null, 20_000, 'controller listening');
      server = /"url":"(http:\/\/[^"]+)"/.exec(stderr)?.[1] ?? '';
      assert.ok(server, stderr);
    });

    after(async () => {
      if (controller && controller.exitCode === null) {
        const exited = new Promise((r) => controller?.once('exit', r));
        controller.kill('SIGTERM');
        await exited;
      }
    });

    it('homeostat-controller --help and a bad flag keep their codes', async () => {
      const help = await assertCompleteEverywhere([process.execPath, CONTROLLER_MAIN, '--help'], t.dir, 0);
      assert.match(help, /Usage: homeostat-controller/);
      const bad = await throughPipe('head', [process.execPath, CONTROLLER_MAIN, 'run', '--no-such-flag'], t.dir);
      assert.equal(bad.code, 1);
    });

    it('homeostatctl: a diff of half a megabyte arrives whole through every reader; a failed call keeps exit code 1', async () => {
      const dir = path.join(t.dir, 'ctl');
      mkdirSync(dir);
      const file = writeBaseline(dir, 'out', `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: out\nspec:\n  resources:\n    - file: /srv/out.txt\n      source: out.txt\n`);
      writeFileSync(path.join(dir, 'out.txt'), '');
      const push = async (): Promise<void> => {
        const r = await toFile(ctl(['baseline', 'push', file]), t.dir);
        assert.equal(r.code, 0, r.stderr);
      };
      await push();
      // Long lines, so that half a megabyte stays within the diff's bound on changed lines (lib/textdiff.ts MAX_DIFF_EDITS).
      writeFileSync(path.join(dir, 'out.txt'), Array.from({ length: 400 }, (_, i) => `line ${i} ${'x'.repeat(1300)}\n`).join(''));
      await push();
      const diff = await assertCompleteEverywhere(ctl(['baseline', 'diff', 'out', '1', '2']), t.dir, 0);
      assert.ok(diff.length > 500_000, `${diff.length} bytes`);
      assert.match(diff, /^\+line 399 x+$/m);

      const denied = await throughPipe('slow', [process.execPath, CTL_MAIN, '--server', server, '--token', 'wrong', 'agents'], t.dir);
      assert.equal(denied.code, 1);
      assert.match(denied.stderr, /401/);
    });
  });
});
