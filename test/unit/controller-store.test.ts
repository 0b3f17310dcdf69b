// The controller's data dir and database on real files: 0700 and 0600 whatever the umask (older, more open files
// tightened), a data dir of another user refused, a damaged database refused at start with what to do about it, and the
// operator token read from a file.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createControllerCore } from '../../controller/core.js';
import { ensureDataDir, loadTls, readAdminTokenFile } from '../../controller/identity.js';
import { SqliteControllerStore } from '../../controller/store/sqlite.js';
import { HsError } from '../../lib/errors.js';

const mode = (f: string): string => (fs.statSync(f).mode & 0o777).toString(8);

function failure(fn: () => unknown): HsError {
  try {
    fn();
  } catch (err) {
    if (err instanceof HsError) return err;
    throw err;
  }
  assert.fail('expected an HsError');
}

describe('controller data dir and database', () => {
  let root: string;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(tmpdir(), 'hs-ctl-store-'));
  });
  afterEach(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('creates the data dir 0700 and every file in it 0600, whatever the umask', async () => {
    const dir = path.join(root, 'data');
    const prev = process.umask(0);
    try {
      const core = await createControllerCore({ dataDir: dir, fingerprint: null });
      loadTls(dir, { names: [] });
      const t = await core.enrollment.createToken();
      const { agent } = await core.enrollment.enroll(t.token, { labels: {}, protocolVersion: 2, agentVersion: 't' });
      await core.events.submit(agent.id, [{ seq: 1, time: 1, resource: null, event: 'repaired', trigger: null, baseline: null, version: null, observed: null, desired: null, diff: null, detail: null, prevHash: '', hash: 'h' }]);
      const files = fs.readdirSync(dir).sort();
      assert.deepEqual(files, ['admin.token', 'controller.db', 'controller.db-shm', 'controller.db-wal', 'signing.key', 'tls.crt', 'tls.key']);
      assert.equal(mode(dir), '700');
      for (const f of files) assert.equal(mode(path.join(dir, f)), '600', f);
      await core.close();
    } finally {
      process.umask(prev);
    }
  });

  it('takes group and other access away from a data dir and files an older version left open', async () => {
    const dir = path.join(root, 'data');
    fs.mkdirSync(dir, { mode: 0o755 });
    fs.chmodSync(dir, 0o755);
    void new SqliteControllerStore(path.join(dir, 'controller.db')).close();
    for (const f of ['controller.db', 'tls.crt']) {
      if (f === 'tls.crt') loadTls(dir, { names: [] });
      fs.chmodSync(path.join(dir, f), 0o644);
    }
    fs.writeFileSync(path.join(dir, 'admin.token'), 'tok\n', { mode: 0o644 });
    const core = await createControllerCore({ dataDir: dir, fingerprint: null });
    loadTls(dir, { names: [] });
    assert.equal(mode(dir), '700');
    for (const f of ['controller.db', 'admin.token', 'tls.crt', 'tls.key']) assert.equal(mode(path.join(dir, f)), '600', f);
    assert.equal(core.adminToken, 'tok');
    await core.close();
  });

  it('refuses a data dir that belongs to another user', () => {
    const dir = path.join(root, 'theirs');
    fs.mkdirSync(dir, { mode: 0o700 });
    fs.chownSync(dir, 65534, 65534);
    const e = failure(() => ensureDataDir(dir));
    assert.equal(e.code, 'HS_CONFIG');
    assert.match(e.message, new RegExp(`${dir}.*uid 65534`));
  });

  it('refuses to open a damaged database at start, naming the file and how to restore it', () => {
    const file = path.join(root, 'controller.db');
    const s = new SqliteControllerStore(file);
    void s.setMeta('k', 'v');
    for (let i = 0; i < 50; i++) void s.setMeta(`key-${i}`, 'x'.repeat(3000));
    void s.close();
    assert.equal(fs.existsSync(`${file}-wal`), false, 'everything is in the main file');
    // A page in the middle overwritten, as a bad sector or a torn copy would leave it.
    const pageSize = 4096;
    const pages = fs.statSync(file).size / pageSize;
    assert.ok(pages > 10);
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, randomBytes(pageSize), 0, pageSize, Math.floor(pages / 2) * pageSize);
    fs.closeSync(fd);
    const damaged = failure(() => new SqliteControllerStore(file));
    assert.equal(damaged.code, 'HS_STORE');
    assert.ok(damaged.message.startsWith(`${file} is damaged`), damaged.message);
    assert.match(damaged.message, /restore controller\.db from a backup/);

    // A file that is no database at all (its header overwritten).
    const fd2 = fs.openSync(file, 'r+');
    fs.writeSync(fd2, Buffer.alloc(100, 0x41), 0, 100, 0);
    fs.closeSync(fd2);
    const notDb = failure(() => new SqliteControllerStore(file));
    assert.ok(notDb.message.startsWith(`${file} is damaged`), notDb.message);
  });

  it('reads the operator token from the first line of a file, and refuses an empty or missing one', () => {
    const f = path.join(root, 'token');
    fs.writeFileSync(f, 'from-a-file\nignored\n', { mode: 0o600 });
    assert.equal(readAdminTokenFile(f), 'from-a-file');
    fs.writeFileSync(f, '\n');
    assert.match(failure(() => readAdminTokenFile(f)).message, /is empty/);
    assert.equal(failure(() => readAdminTokenFile(path.join(root, 'none'))).code, 'HS_CONFIG');
  });
});
