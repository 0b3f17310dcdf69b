// The docs' example commands, read from the docs themselves and run against a real controller and agent daemon: the
// walk of docs/operators.md, README.md's commands and the homeostatctl section of docs/controller.md. Every command of
// those pages and of docs/baseline.md must also name subcommands that exist and flags its --help lists. The conventions
// are written down at the end of docs/operators.md.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AGENT_MAIN, waitFor } from '../helpers/agent.js';
import { CONTROLLER_MAIN, CTL_MAIN } from '../helpers/ctl.js';
import { commandsOf, invocations, readBlocks, shellWords, type DocBlock, type DocCommand } from '../helpers/doc-blocks.js';
import { AGENT_UNIT, DocHost, type Typed } from '../helpers/doc-host.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const doc = (name: string): DocBlock[] => readBlocks(`${ROOT}${name}`, name);

const MAINS: Record<string, string> = { 'homeostat-agent': AGENT_MAIN, 'homeostat-controller': CONTROLLER_MAIN, homeostatctl: CTL_MAIN };

// Commands whose effect cannot happen here, by name, and what the test does in their place.
const STAND_INS: Record<string, string> = {
  systemctl: 'PID 1 here is not systemd: enable --now/start run the unit ExecStart, restart stops and starts it, reload sends SIGHUP, stop stops it',
};
// Daemons keep running as in a terminal of their own: started in the background, ready when the log says so.
const DAEMONS: Record<string, { kind: 'agent' | 'controller'; ready: string }> = {
  'homeostat-agent': { kind: 'agent', ready: '"agent ready"' },
  'homeostat-controller': { kind: 'controller', ready: '"controller listening"' },
};
// What a daemon does next (a repair, an event reaching the controller) takes a moment: a command is typed again until
// it succeeds, for this long.
const SETTLE_MS = 20_000;

const helpCache = new Map<string, string>();
function helpOf(program: string, path: string[]): string {
  const key = [program, ...path].join(' ');
  let text = helpCache.get(key);
  if (text === undefined) {
    const main = MAINS[program];
    assert.ok(main, `unknown program ${program}`);
    const r = spawnSync(process.execPath, [main, ...path, '--help'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent' } });
    assert.equal(r.status, 0, `${key} --help exited ${r.status}: ${r.stderr}`);
    text = r.stdout;
    helpCache.set(key, text);
  }
  return text;
}

function subcommands(help: string): string[] {
  const at = help.indexOf('\nCommands:\n');
  if (at < 0) return [];
  return [...help.slice(at).matchAll(/^ {2}([a-z][a-z0-9-]*)/gm)].map((m) => m[1] ?? '').filter((n) => n !== 'help');
}

/** Problems of one documented invocation against the program's --help: unknown subcommands, unknown flags. */
function checkInvocation(program: string, words: string[]): string[] {
  const path: string[] = [];
  let help = helpOf(program, path);
  let i = 0;
  for (; i < words.length; i++) {
    const w = words[i] ?? '';
    if (w.startsWith('-') || w.startsWith('[')) break;
    const subs = subcommands(help);
    if (!subs.includes(w)) {
      // A word that is no subcommand is an argument only where the usage line has room for one.
      const usage = /^Usage: .*$/m.exec(help)?.[0] ?? '';
      const slots = (usage.match(/[<[][^\]>]+[\]>]/g) ?? []).filter((x) => x !== '[options]' && x !== '[command]');
      if (subs.length > 0 && slots.length === 0) return [`${[program, ...path].join(' ')} has no command '${w}' (its commands: ${subs.join(', ')})`];
      break;
    }
    path.push(w);
    help = helpOf(program, path);
  }
  const problems: string[] = [];
  for (const w of words.slice(i)) {
    for (const flag of w.match(/(?<=^\[?)--[a-z][a-z0-9-]*/g) ?? []) {
      if (flag === '--help' || flag === '--version') continue;
      if (!new RegExp(`(^|[\\s,])${flag}([\\s,=]|$)`, 'm').test(help)) problems.push(`${[program, ...path].join(' ')} does not take ${flag} (see its --help)`);
    }
  }
  return problems;
}

/** An error printed by a command: commander's `error:`, an HS_ code, or a JSON log line at level error or worse. */
function printedError(stderr: string): string | undefined {
  for (const line of stderr.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('{')) {
      try {
        if (((JSON.parse(line) as { level?: number }).level ?? 0) >= 50) return line;
        continue;
      } catch {
        // not a log line: judged as text below
      }
    }
    if (/^error\b|\bHS_[A-Z]+(?:_[A-Z]+)*\b|\bError\b/.test(line)) return line;
  }
  return undefined;
}

function describeRun(cmd: DocCommand, r: Typed): string {
  return `${cmd.where}: \`${cmd.text}\` exited ${r.code} (expected ${cmd.expectedExit})\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

// Placeholders the docs write where the reader fills in a value: FIXED ones, and ID from what an earlier command printed.
const PLACEHOLDERS: Record<string, string> = {
  ID: 'the id in the first row of the escalations listed last (homeostat-agent escalations, homeostatctl escalations)',
  HOST: 'the controller\'s host name: localhost, the controller runs on the scratch host',
  DATA_DIR: 'the controller\'s --data-dir as the docs start it: /var/lib/homeostat-controller',
};
const FIXED: Record<string, string> = { HOST: 'localhost', DATA_DIR: '/var/lib/homeostat-controller' };

/** The first id of an escalations listing: the first cell of the first row that starts with a number. */
function firstListedId(stdout: string): string | undefined {
  return /^(\d+)\s/m.exec(stdout)?.[1];
}

/** Types the blocks of pages in order on one host, as a reader would. */
class Reader {
  readonly transcript: string[] = [];
  private lastListing: string | undefined;

  constructor(private readonly host: DocHost) {}

  async typeBlocks(blocks: DocBlock[]): Promise<void> {
    for (const block of blocks) {
      if (block.marker.kind === 'illustration') continue;
      if (block.marker.kind === 'file') {
        const r = await this.host.type(`cat > '${block.marker.path}' <<'HS_DOCS_EOF'\n${block.body}\nHS_DOCS_EOF`);
        assert.equal(r.code, 0, `${block.file}:${block.line}: writing ${block.marker.path}: ${r.stderr}`);
        continue;
      }
      if (block.lang !== 'sh') continue;
      for (const cmd of commandsOf(block)) {
        this.transcript.push(`$ ${cmd.text}`);
        await this.typeCommand(cmd);
      }
    }
  }

  private async typeCommand(cmd: DocCommand): Promise<void> {
    const host = this.host;
    const words = shellWords(cmd.text.split('\n')[0] ?? '');
    const daemon = DAEMONS[words[0] ?? ''];
    if (daemon && words[1] === 'run') {
      await host.startDaemon(daemon.kind, (await this.fillIn(cmd)) ?? cmd.text, daemon.ready);
      return;
    }
    if (words[0] === 'systemctl') {
      await systemctl(host, cmd, words.slice(1));
      return;
    }
    const listing = words[1] === 'escalations' && words.slice(2).every((w) => w.startsWith('-'));
    const deadline = Date.now() + SETTLE_MS;
    for (;;) {
      const text = await this.fillIn(cmd);
      const r = text === undefined ? { code: -1, stdout: '', stderr: `no escalation listed yet for ID (${this.lastListing ?? 'nothing listed'})` } : await host.type(text);
      const error = r.code === cmd.expectedExit ? printedError(r.stderr) : undefined;
      if (r.code === cmd.expectedExit && (error === undefined || cmd.expectedExit !== 0)) {
        if (listing) this.lastListing = cmd.text;
        this.transcript.push(r.stdout.trimEnd());
        return;
      }
      if (Date.now() > deadline) assert.fail(`${describeRun(cmd, r)}${error ? `\nprinted an error: ${error}` : ''}\n--- agent log\n${host.daemonLog('agent')}`);
      await new Promise((res) => setTimeout(res, 250));
    }
  }

  /** The command with its placeholders filled in from what the reader saw; undefined while there is nothing to fill. */
  private async fillIn(cmd: DocCommand): Promise<string | undefined> {
    let text = cmd.text;
    for (const [name, value] of Object.entries(FIXED)) text = text.replace(new RegExp(`\\b${name}\\b`, 'g'), value);
    if (!/\bID\b/.test(text)) return text;
    assert.ok(this.lastListing, `${cmd.where}: ID, but no escalations were listed before`);
    const id = firstListedId((await this.host.type(this.lastListing)).stdout);
    return id === undefined ? undefined : text.replace(/\bID\b/g, id);
  }
}

/** The agent unit's ExecStart, as the documented systemctl calls would run it. */
function agentExecStart(): string {
  const line = readFileSync(AGENT_UNIT, 'utf8').split('\n').find((l) => l.startsWith('ExecStart='));
  assert.ok(line, `${AGENT_UNIT}: no ExecStart`);
  return line.slice('ExecStart='.length).replace(/^\/usr\/bin\//, '');
}

async function systemctl(host: DocHost, cmd: DocCommand, args: string[]): Promise<void> {
  const unit = args.filter((a) => !a.startsWith('-')).slice(1);
  assert.deepEqual(unit, ['homeostat-agent'], `${cmd.where}: the test stands in for systemctl on homeostat-agent only`);
  const start = (): Promise<unknown> => host.startDaemon('agent', agentExecStart(), DAEMONS['homeostat-agent']?.ready ?? '');
  switch (args[0]) {
    case 'enable':
      assert.ok(args.includes('--now'), `${cmd.where}: enable without --now starts nothing`);
      await start();
      return;
    case 'start':
      await start();
      return;
    case 'stop':
      await host.stopDaemon('agent');
      return;
    case 'restart':
      await host.stopDaemon('agent');
      await start();
      return;
    case 'reload': {
      const before = await auditHead(host);
      const d = host.daemons.get('agent');
      assert.ok(d, `${cmd.where}: reload with no agent running`);
      process.kill(d.pid, 'SIGHUP');
      let last = before;
      await waitFor(async () => (last = await auditHead(host)).some((e) => e.seq > Math.max(0, ...before.map((b) => b.seq)) && e.trigger === 'reload'), 15_000, `${cmd.where}: the reload recorded in the audit`).catch((err: unknown) => {
        throw new Error(`${String(err)}\n${JSON.stringify(last)}\n${host.daemonLog('agent')}`);
      });
      return;
    }
    default:
      assert.fail(`${cmd.where}: no stand-in for systemctl ${args[0] ?? ''}`);
  }
}

async function auditHead(host: DocHost): Promise<{ seq: number; trigger: string | null }[]> {
  const r = await host.type('homeostat-agent audit --json --since 1h');
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { entries: { seq: number; trigger: string | null }[] }).entries;
}

describe('the docs: example commands', function () {
  this.timeout(240_000);

  for (const name of ['README.md', 'docs/operators.md', 'docs/controller.md', 'docs/baseline.md']) {
    it(`${name}: every command names subcommands that exist and flags its --help lists`, () => {
      const problems: string[] = [];
      let checked = 0;
      for (const block of doc(name).filter((b) => b.lang === 'sh' || b.lang === 'text')) {
        for (const cmd of commandsOf(block)) {
          for (const inv of invocations(cmd.text.replace(/^\$ /, ''))) {
            checked++;
            for (const p of checkInvocation(inv.program, inv.words)) problems.push(`${cmd.where}: ${p}`);
          }
        }
      }
      assert.ok(checked > 0, `${name}: no command found`);
      assert.deepEqual(problems, []);
    });
  }

  it('knows the commands it stands in for by name', () => {
    const used = new Set<string>();
    for (const name of ['README.md', 'docs/operators.md', 'docs/controller.md']) {
      for (const block of doc(name).filter((b) => b.lang === 'sh' && b.marker.kind === 'run')) {
        for (const cmd of commandsOf(block)) {
          const first = shellWords(cmd.text)[0] ?? '';
          if (first in STAND_INS) used.add(first);
        }
      }
    }
    assert.deepEqual([...used], Object.keys(STAND_INS));
  });

  describe('docs/controller.md: starting a controller, then homeostatctl and its context', () => {
    let host: DocHost;
    before(async () => (host = await DocHost.create('ctl')));
    after(async () => host?.close());

    it('runs every command as written', async () => {
      const blocks = doc('docs/controller.md').filter((b) => b.section === 'Running it' || b.section === 'homeostatctl and its context');
      const reader = new Reader(host);
      await reader.typeBlocks(blocks);
      assert.ok(reader.transcript.some((l) => l.startsWith('$ homeostatctl login')), 'the section logs in');
    });
  });

  describe('docs/operators.md: the walk from one standalone host to a managed fleet and back', () => {
    let host: DocHost;
    let reader: Reader | undefined;
    before(async () => (host = await DocHost.create('ops')));
    after(async () => host?.close());

    it('runs every command as written', async function () {
      const blocks = doc('docs/operators.md');
      assert.ok(blocks.filter((b) => b.marker.kind === 'run' && b.lang === 'sh').length >= 6, 'the walk has its command blocks');
      reader = new Reader(host);
      try {
        await reader.typeBlocks(blocks);
      } finally {
        if (process.env.HOMEOSTAT_DOCS_TRANSCRIPT) console.log(reader.transcript.join('\n'));
      }
    });
  });
});
