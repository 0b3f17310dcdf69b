// Where homeostatctl finds its controller: flags win over the environment, the environment over the saved context, an
// empty variable counts as unset, and the context's token and CA go only to the server they were saved for.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { contextPath, readContext, removeContext, resolveConnection, writeContext } from '../../controller/ctl/context.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

describe('homeostatctl context', () => {
  let dir: string;
  let file: string;
  let tokenFile: string;
  let ca: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-ctx-'));
    file = path.join(dir, 'cfg', 'homeostat', 'ctl.yaml');
    tokenFile = path.join(dir, 'admin.token');
    ca = path.join(dir, 'tls.crt');
    writeFileSync(tokenFile, 'from-context-file\n', { mode: 0o600 });
    writeFileSync(ca, PEM);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('is found at $HOMEOSTAT_CTL_CONFIG, else under $XDG_CONFIG_HOME, else ~/.config, empty variables unset', () => {
    assert.equal(contextPath({ HOMEOSTAT_CTL_CONFIG: '/x/ctl.yaml' }), '/x/ctl.yaml');
    assert.equal(contextPath({ HOMEOSTAT_CTL_CONFIG: '', XDG_CONFIG_HOME: '/xdg' }), '/xdg/homeostat/ctl.yaml');
    assert.match(contextPath({ XDG_CONFIG_HOME: ' ' }), /\/\.config\/homeostat\/ctl\.yaml$/);
  });

  it('writes the context 0600 in a 0700 folder and reads it back; logout removes it', () => {
    writeContext(file, { server: 'https://c.example:7400', tokenFile, ca });
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(path.dirname(file)).mode & 0o777, 0o700);
    assert.deepEqual(readContext(file), { server: 'https://c.example:7400', tokenFile, ca });
    assert.equal(removeContext(file), true);
    assert.equal(readContext(file), undefined);
    assert.equal(removeContext(file), false);
  });

  it('refuses a context file others may change, or one with unknown keys', () => {
    writeContext(file, { server: 'https://c.example:7400', tokenFile });
    chmodSync(file, 0o666);
    assert.throws(() => readContext(file), /may be changed by other users \(mode 666\): chmod 600/);
    writeFileSync(file, 'server: https://c.example:7400\ntokenfile: /x\n', { mode: 0o600 });
    chmodSync(file, 0o600);
    assert.throws(() => readContext(file), /unknown key "tokenfile"; allowed: server, tokenFile, token, ca, fingerprint/);
  });

  it('takes flags over environment over context, each item on its own', () => {
    writeContext(file, { server: 'https://c.example:7400', tokenFile, ca });
    const fromContext = resolveConnection({}, {}, file);
    assert.deepEqual([fromContext.server, fromContext.token, fromContext.caFile, fromContext.from], ['https://c.example:7400', 'from-context-file', ca, 'context']);
    const env = resolveConnection({}, { HOMEOSTAT_ADMIN_TOKEN: 'from-env' }, file);
    assert.deepEqual([env.server, env.token, env.caFile], ['https://c.example:7400', 'from-env', ca], 'the token from the environment, the rest from the context');
    const flag = resolveConnection({ token: 'from-flag' }, { HOMEOSTAT_ADMIN_TOKEN: 'from-env' }, file);
    assert.equal(flag.token, 'from-flag');
    const empty = resolveConnection({}, { HOMEOSTAT_ADMIN_TOKEN: '', HOMEOSTAT_SERVER: '' }, file);
    assert.deepEqual([empty.server, empty.token], ['https://c.example:7400', 'from-context-file'], 'empty variables count as unset');
  });

  it('sends the saved token and CA only to the server they were saved for', () => {
    writeContext(file, { server: 'https://c.example:7400', tokenFile, ca });
    assert.throws(() => resolveConnection({ server: 'https://other.example:7400' }, {}, file), /no operator token for https:\/\/other\.example:7400: pass --token-file DATA_DIR\/admin\.token/);
    const other = resolveConnection({ server: 'https://other.example:7400', token: 't' }, {}, file);
    assert.equal(other.ca, undefined, 'the saved CA is not trusted for another server');
  });

  it('says what to pass when nothing names a token, and refuses conflicting flags', () => {
    assert.throws(() => resolveConnection({}, { HOMEOSTAT_ADMIN_TOKEN: '' }, file), /no operator token for https:\/\/127\.0\.0\.1:7400: .*homeostatctl login/);
    assert.throws(() => resolveConnection({ token: 'a', tokenFile }, {}, file), /give --token or --token-file, not both/);
    assert.throws(() => resolveConnection({ token: 'a', server: 'ftp://x' }, {}, file), /is not a URL like https:\/\/controller\.example:7400/);
    assert.throws(() => resolveConnection({ token: 'a', ca: tokenFile }, {}, file), /holds no PEM certificate/);
  });
});
