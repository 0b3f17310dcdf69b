// The fleet demo: one command starts a controller (embedded SQLite, TLS) and an agent enrolled with a join token, then
// pushes a baseline, defaces a file (repaired at once), and edits a high-risk file (escalated, approved, repaired).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const agentMain = fileURLToPath(new URL('../agent/main.js', import.meta.url));
const controllerMain = fileURLToPath(new URL('../controller/main.js', import.meta.url));
const ctlMain = fileURLToPath(new URL('../controller/ctl/main.js', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const say = (line: string): void => void process.stdout.write(`${line}\n`);

function ctl(dataDir: string, port: number, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [ctlMain, '--server', `https://127.0.0.1:${port}`, '--token-file', path.join(dataDir, 'admin.token'), '--ca', path.join(dataDir, 'tls.crt'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`homeostatctl ${args.join(' ')} exited ${String(code)}`))));
  });
}

async function until(pred: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await pred()) return true;
    await sleep(100);
  }
  return false;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'homeostat-fleet-demo-'));
  const dataDir = path.join(dir, 'controller');
  const root = path.join(dir, 'etc');
  mkdirSync(root);
  const port = 17_000 + Math.floor(Math.random() * 1000);
  const children: ChildProcess[] = [];
  try {
    say(`$ homeostat-controller run --data-dir ${dataDir} --listen 127.0.0.1:${port}`);
    children.push(spawn(process.execPath, [controllerMain, 'run', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] }));
    await until(() => {
      try {
        readFileSync(path.join(dataDir, 'tls.crt'));
        return true;
      } catch {
        return false;
      }
    }, 10_000);
    await sleep(500);
    const token = (await ctl(dataDir, port, ['token', 'create', '--ttl', '1h', '--allow-labels', 'role'])).split('\n')[0] ?? '';
    say(`$ homeostatctl token create\n${token}\n`);
    const stateDir = path.join(dir, 'agent');
    say(`$ homeostat-agent run --controller wss://127.0.0.1:${port} --token <token> --labels role=web`);
    children.push(
      spawn(process.execPath, [agentMain, 'run', '--controller', `wss://127.0.0.1:${port}`, '--token', token, '--labels', 'role=web', '--state-dir', stateDir, '--log-level', 'warn'], {
        stdio: ['ignore', 'ignore', 'inherit'],
      }),
    );
    await until(async () => (await ctl(dataDir, port, ['--json', 'agents'])).includes('"connected": true'), 20_000);
    say(await ctl(dataDir, port, ['agents']));

    const motd = path.join(root, 'motd');
    const sshd = path.join(root, 'sshd_config');
    const baseline = path.join(dir, 'web.yaml');
    writeFileSync(
      baseline,
      `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: { role: web }\n  resources:\n    - file: ${motd}\n      content: "Authorized use only\\n"\n    - file: ${sshd}\n      content: "PermitRootLogin no\\n"\n      mode: "0600"\n      risk: high\n`,
    );
    // sshd_config is high risk: were it missing, creating it would be escalated too. Here it starts out right.
    writeFileSync(sshd, 'PermitRootLogin no\n', { mode: 0o600 });
    say(`\n$ homeostatctl baseline push web.yaml\n${await ctl(dataDir, port, ['baseline', 'push', baseline])}`);
    // One host: no waves to stage, and no soak, so the escalation below is a decision for the operator, not a failed gate.
    say(`$ homeostatctl rollout start web 1 --all-at-once\n${await ctl(dataDir, port, ['rollout', 'start', 'web', '1', '--all-at-once'])}`);
    await until(() => {
      try {
        return readFileSync(motd, 'utf8') === 'Authorized use only\n';
      } catch {
        return false;
      }
    }, 10_000);
    say(`$ cat ${motd}\n${readFileSync(motd, 'utf8')}`);

    say(`$ echo owned > ${motd}`);
    writeFileSync(motd, 'owned\n');
    await until(() => readFileSync(motd, 'utf8') === 'Authorized use only\n', 5_000);
    await sleep(500);
    say(`$ cat ${motd}\n${readFileSync(motd, 'utf8')}`);
    say(`$ homeostatctl events --kind repaired\n${await ctl(dataDir, port, ['events', '--kind', 'repaired'])}\n`);

    say(`$ echo 'PermitRootLogin yes' > ${sshd}    # high risk: escalated, not repaired`);
    writeFileSync(sshd, 'PermitRootLogin yes\n');
    let id = '';
    await until(async () => {
      const rows = JSON.parse(await ctl(dataDir, port, ['--json', 'escalations'])) as { id: number; resource: string }[];
      id = String(rows.find((r) => r.resource === `file:${sshd}`)?.id ?? '');
      return id !== '';
    }, 10_000);
    say(`$ homeostatctl escalations\n${await ctl(dataDir, port, ['escalations'])}`);
    say(`$ cat ${sshd}\n${readFileSync(sshd, 'utf8')}`);
    say(`$ homeostatctl approve ${id}\n${await ctl(dataDir, port, ['approve', id])}`);
    await until(() => readFileSync(sshd, 'utf8') === 'PermitRootLogin no\n', 10_000);
    say(`$ cat ${sshd}\n${readFileSync(sshd, 'utf8')}`);
  } finally {
    for (const c of children.reverse()) {
      c.kill('SIGTERM');
      await new Promise((r) => c.once('exit', r));
    }
    say(`controller and agent stopped; their state is under ${dir}`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${String(err)}\n`);
  process.exit(1);
});
