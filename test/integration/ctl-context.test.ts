// homeostatctl's connection, run as a process against a real controller: `login` checks and saves the context file
// (0600) so later calls need no flags, the environment and flags still win, `logout` forgets it; TLS and connection
// failures say what to pass instead.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateSelfSignedCert } from '../../controller/tls/selfsigned.js';
import { tempDir } from '../helpers/agent.js';
import { cleanEnv, runCtl, startControllerProcess, type ControllerProcess } from '../helpers/ctl.js';

describe('homeostatctl login, logout and connection errors against a real controller', function () {
  this.timeout(60_000);
  const tmp = tempDir('hs-ctlctx-');
  const dataDir = path.join(tmp.dir, 'controller');
  const tokenFile = path.join(tmp.dir, 'operator.token');
  const ca = path.join(dataDir, 'tls.crt');
  const home = path.join(tmp.dir, 'home');
  const contextFile = path.join(home, '.config', 'homeostat', 'ctl.yaml');
  let ctl: ControllerProcess;
  let plain: ControllerProcess;
  // HOME names where ~/.config is: the default context file, nothing else pointing elsewhere.
  const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => cleanEnv({ HOME: home, ...extra });

  before(async () => {
    writeFileSync(tokenFile, 'ctl-context-operator-token\n', { mode: 0o600 });
    ctl = await startControllerProcess(['--data-dir', dataDir, '--admin-token-file', tokenFile]);
    plain = await startControllerProcess(['--data-dir', path.join(tmp.dir, 'plain'), '--insecure-http', '--admin-token-file', tokenFile]);
  });
  after(async () => {
    await ctl?.stop();
    await plain?.stop();
    tmp.cleanup();
  });

  it('says what to pass when nothing is saved, and when the certificate is not trusted', async () => {
    const none = await runCtl(['agents'], env());
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no operator token for https:\/\/127\.0\.0\.1:7400: pass --token-file DATA_DIR\/admin\.token .* or save it once with homeostatctl login/);
    const untrusted = await runCtl(['--server', ctl.url, '--token-file', tokenFile, 'agents'], env());
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.stderr, /the certificate of https:\/\/127\.0\.0\.1:\d+ is not trusted \([A-Z_]+\): pass --ca DATA_DIR\/tls\.crt \(the controller's data dir\), or --fingerprint SHA256/);
    const otherCa = path.join(tmp.dir, 'other.crt');
    writeFileSync(otherCa, generateSelfSignedCert(['127.0.0.1']).certPem);
    const wrongCa = await runCtl(['--server', ctl.url, '--token-file', tokenFile, '--ca', otherCa, 'agents'], env());
    assert.equal(wrongCa.code, 1);
    assert.match(wrongCa.stderr, /the certificate of https:\/\/127\.0\.0\.1:\d+ is not the one --ca names \([A-Z_]+\): give the controller's own DATA_DIR\/tls\.crt/);
    const tlsToPlain = await runCtl(['--server', plain.url.replace('http:', 'https:'), '--token-file', tokenFile, '--ca', ca, 'agents'], env());
    assert.equal(tlsToPlain.code, 1);
    assert.match(tlsToPlain.stderr, /does not speak TLS: if the controller runs with --insecure-http, use http:\/\/127\.0\.0\.1:\d+/);
    const port = new URL(ctl.url).port;
    const plainToTls = await runCtl(['--server', `http://127.0.0.1:${port}`, '--token-file', tokenFile, 'agents'], env());
    assert.equal(plainToTls.code, 1);
    assert.match(plainToTls.stderr, /closed the connection: if the controller serves TLS \(the default\), use https:\/\/127\.0\.0\.1:\d+ with --ca DATA_DIR\/tls\.crt/);
    const json = await runCtl(['--server', ctl.url, '--token-file', tokenFile, 'agents', '--json'], env());
    assert.equal((JSON.parse(json.stdout) as { error: { code: string } }).error.code, 'HS_AUTH', 'scripts get the error as the document');
  });

  it('logs in once (checked against the controller), then needs no flags; the environment wins over it; logout forgets it', async () => {
    const refused = await runCtl(['login', ctl.url, '--token', 'wrong', '--ca', ca], env());
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /401 HS_AUTH/);
    assert.equal(existsSync(contextFile), false, 'nothing saved for a refused login');

    const login = await runCtl(['login', ctl.url, '--token-file', tokenFile, '--ca', ca], env());
    assert.equal(login.code, 0, login.stderr);
    assert.equal(login.stdout, `logged in to ${ctl.url}; saved in ${contextFile}\n`);
    assert.equal(statSync(contextFile).mode & 0o777, 0o600);
    assert.equal(statSync(path.dirname(contextFile)).mode & 0o777, 0o700);
    const saved = readFileSync(contextFile, 'utf8');
    assert.match(saved, new RegExp(`^server: ${ctl.url}$`, 'm'));
    assert.match(saved, new RegExp(`^tokenFile: ${tokenFile}$`, 'm'));
    assert.doesNotMatch(saved, /ctl-context-operator-token/, 'a token file is named, not copied');

    const agents = await runCtl(['agents'], env());
    assert.equal(agents.code, 0, agents.stderr);
    assert.equal(agents.stdout, 'no agents enrolled yet (homeostatctl token create makes a join token for them)\n');
    const empty = await runCtl(['agents'], env({ HOMEOSTAT_ADMIN_TOKEN: '', HOMEOSTAT_SERVER: '' }));
    assert.equal(empty.code, 0, `empty variables count as unset: ${empty.stderr}`);
    const envToken = await runCtl(['agents'], env({ HOMEOSTAT_ADMIN_TOKEN: 'wrong' }));
    assert.equal(envToken.code, 1, 'the environment wins over the context');
    assert.match(envToken.stderr, /401 HS_AUTH/);
    const flagToken = await runCtl(['--token-file', tokenFile, 'agents'], env({ HOMEOSTAT_ADMIN_TOKEN: 'wrong' }));
    assert.equal(flagToken.code, 0, `the flag wins over the environment: ${flagToken.stderr}`);
    const elsewhere = await runCtl(['--server', plain.url, 'agents'], env());
    assert.equal(elsewhere.code, 1);
    assert.match(elsewhere.stderr, /no operator token for http:\/\/127\.0\.0\.1:\d+/, 'the saved token goes only to its own server');

    const logout = await runCtl(['logout'], env());
    assert.equal(logout.code, 0, logout.stderr);
    assert.equal(logout.stdout, `removed ${contextFile}\n`);
    assert.equal(existsSync(contextFile), false);
    assert.equal((await runCtl(['agents'], env())).code, 1, 'nothing saved any more');
    assert.match((await runCtl(['logout'], env())).stdout, /no context to remove/);
  });

  it('shows defaults and required options in --help', async () => {
    // Help wraps at the terminal's width: read it with the line breaks folded.
    const helpOf = async (args: string[]): Promise<string> => (await runCtl([...args, '--help'], env())).stdout.replace(/\s+/g, ' ');
    const help = { stdout: await helpOf([]) };
    assert.match(help.stdout, /HOMEOSTAT_SERVER, HOMEOSTAT_ADMIN_TOKEN, HOMEOSTAT_TOKEN_FILE, HOMEOSTAT_CA, HOMEOSTAT_FINGERPRINT, HOMEOSTAT_CTL_CONFIG/);
    assert.match(help.stdout, /homeostatctl login https:\/\/HOST:7400 --token-file DATA_DIR\/admin\.token --ca DATA_DIR\/tls\.crt/);
    const reject = { stdout: await helpOf(['reject']) };
    assert.match(reject.stdout, /--reason <text> why the drift is acceptable \(required/);
    assert.match(reject.stdout, /--expires <duration> how long the exception lasts \(default: "7d"\)/);
    const start = { stdout: await helpOf(['rollout', 'start']) };
    assert.match(start.stdout, /--waves <list> [^-]*\(default: "1host,10%,50%,100%"\)/);
    assert.match(start.stdout, /--soak <duration> [^-]*\(default: "60s"\)/);
    const events = { stdout: await helpOf(['events']) };
    assert.match(events.stdout, /--limit <n> [^-]*\(default: "100"\)/);
    const missing = await runCtl(['reject', '1'], env());
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /required option '--reason <text>' not specified/);
  });
});
