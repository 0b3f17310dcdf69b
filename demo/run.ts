// The demo: starts a real agent on a scratch folder, changes its files the way a person would, and shows each repair.
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentStore } from '../agent/store/store.js';

const agentMain = fileURLToPath(new URL('../agent/main.js', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'homeostat-demo-'));
  const root = path.join(dir, 'etc');
  const stateDir = path.join(dir, 'state');
  mkdirSync(root);
  const motd = path.join(root, 'motd');
  const baseline = path.join(dir, 'demo.yaml');
  writeFileSync(
    baseline,
    `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: demo
  description: a message of the day and an app config, kept in place
spec:
  resources:
    - file: ${motd}
      content: "Authorized use only\\n"
      mode: "0644"
    - file: ${path.join(root, 'app/app.conf')}
      content: "listen = 8080\\n"
      mode: "0600"
`,
  );
  say(`baseline ${baseline}\nmanaged files under ${root}\n`);
  const agent = spawn(process.execPath, [agentMain, 'run', '--baseline', baseline, '--state-dir', stateDir, '--log-level', 'warn'], { stdio: ['ignore', 'inherit', 'inherit'] });
  const store = (): AgentStore => AgentStore.open(stateDir, { readonly: true });
  let seen = 0;
  const showNew = (): void => {
    let s: AgentStore | undefined;
    try {
      s = store();
      for (const e of s.queryAudit({ afterSeq: seen })) {
        seen = e.seq;
        if (e.resource) say(`  audit #${e.seq} ${e.event.padEnd(15)} ${e.resource} (${e.trigger}) ${e.detail ?? ''}`);
      }
    } catch {
      // the agent has not created its cache yet
    } finally {
      s?.close();
    }
  };
  const timer = setInterval(showNew, 100);
  await sleep(1500);
  say(`\n$ cat ${motd}\n${readFileSync(motd, 'utf8')}`);

  const steps: [string, () => void][] = [
    [`echo 'owned' > ${motd}`, () => writeFileSync(motd, 'owned\n')],
    [`chmod 666 ${motd}`, () => chmodSync(motd, 0o666)],
    [`rm ${motd}`, () => unlinkSync(motd)],
    [`rm -r ${path.join(root, 'app')}`, () => rmSync(path.join(root, 'app'), { recursive: true })],
  ];
  for (const [cmd, act] of steps) {
    say(`\n$ ${cmd}`);
    act();
    await sleep(700);
  }
  say(`\n$ cat ${motd}\n${readFileSync(motd, 'utf8')}`);

  if (process.stdin.isTTY) {
    say(`The agent keeps running. Change ${motd} from another terminal and watch it come back; Ctrl-C to stop.`);
    await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  }
  clearInterval(timer);
  agent.kill('SIGTERM');
  await new Promise((r) => agent.once('exit', r));
  showNew();
  say(`\nagent stopped. Its state (SQLite cache and audit log) is in ${stateDir};`);
  say(`read it with: node ${path.relative(process.cwd(), agentMain)} audit --state-dir ${stateDir}`);
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${String(err)}\n`);
  process.exit(1);
});
