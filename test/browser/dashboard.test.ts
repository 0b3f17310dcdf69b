// The dashboard in a real browser (Debian's chromium through playwright-core) against a real controller fed hostile data
// by a real agent connection: HTML in the host facts and resources shown as text (labels with HTML are refused at the
// hello, so labels are shown as text too but cannot carry it), a time no Date can hold shown as a number
// without blanking a table, the token never in localStorage, the session cookie out of the page's reach, an approval
// going through with its CSRF token, and the page refusing to be framed.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startController, type RunningController } from '../../controller/server.js';
import { waitFor } from '../helpers/agent.js';
import { WireAgent, wireEvent } from '../helpers/wire-agent.js';

const CHROMIUM = '/usr/bin/chromium';
const ADMIN = 'browser-admin-token';
const HOSTILE = '<img src=x onerror="window.__pwned=1">';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

describe('dashboard in a browser', function () {
  this.timeout(90_000);
  let dir: string;
  let ctl: RunningController;
  let browser: BrowserContext;
  let page: Page;
  let framer: Server;
  const dialogs: string[] = [];
  const pageErrors: string[] = [];

  const api = async <T>(method: string, url: string, body?: unknown): Promise<T> =>
    (await ctl.core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}` }, ...(body === undefined ? {} : { body: body as object }) })).json<T>();
  // Evaluated in the page (this project compiles without the DOM library, so page code is given as text).
  const inPage = <T>(expression: string): Promise<T> => page.evaluate(expression) as Promise<T>;
  const cells = (table: string): Promise<string[][]> =>
    inPage(`Array.from(document.querySelectorAll('#${table} tbody tr')).map((r) => Array.from(r.querySelectorAll('td')).map((td) => td.textContent || ''))`);

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      // CI installs chromium (.ci/run): there a missing browser is a broken machine, not a reason to skip.
      if (process.env.CI === 'true') throw new Error(`chromium is not installed at ${CHROMIUM} (apt-get install chromium)`);
      process.stderr.write(`      chromium is not installed at ${CHROMIUM} (apt-get install chromium): skipped\n`);
      this.skip();
    }
    dir = mkdtempSync(path.join(tmpdir(), 'hs-browser-'));
    ctl = await startController({ dataDir: path.join(dir, 'controller'), listen: '127.0.0.1:0', insecureHttp: true, adminToken: ADMIN });
    const yaml = `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: web\nspec:\n  resources:\n    - file: /srv/app/ok.conf\n      content: "x"\n    - file: /srv/app/late.conf\n      content: "y"\n`;
    await api('POST', '/api/v1/baselines', { yaml });
    await api('POST', '/api/v1/rollouts', { baseline: 'web', version: 1, strategy: 'all-at-once' });
    const { token } = await api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { allowLabels: ['team'] });
    const agent = await WireAgent.enroll(ctl.agentUrl, token, { team: 'web' }, { hostname: HOSTILE });
    await agent.deliver([
      wireEvent(1, { resource: `file:/srv/${HOSTILE}`, detail: 'd'.repeat(100_000) }),
      wireEvent(2, { time: 9e15, event: 'escalated', resource: 'file:/srv/app/late.conf', baseline: 'web', version: 1 }),
      wireEvent(3, { event: 'escalated', resource: 'file:/srv/app/ok.conf', baseline: 'web', version: 1, time: Date.now(), observedJson: '{"exists":false}', desiredJson: '{"exists":true}' }),
      wireEvent(4, { time: Number.MAX_SAFE_INTEGER, event: HOSTILE }),
      // The drift changes while it waits: the review shows the latest state and diff, not the first.
      wireEvent(5, {
        event: 'escalated', resource: 'file:/srv/app/ok.conf', baseline: 'web', version: 1, time: Date.now(),
        observedJson: '{"exists":true,"sha256":"ee"}', desiredJson: '{"exists":true,"sha256":"cd"}', diff: `-x\n+${HOSTILE}\n`, detail: 'content changed',
        actorJson: JSON.stringify({ source: 'audit', exe: '/usr/bin/vim.basic', uid: 1000, user: 'alice', pid: 4242 }),
      }),
    ]);
    await ctl.core.events.flush();
    browser = await chromium.launchPersistentContext(path.join(dir, 'profile'), { executablePath: CHROMIUM, headless: true, args: FLAGS });
    page = browser.pages()[0] ?? (await browser.newPage());
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.accept();
    });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    // Another origin that tries to frame the dashboard (clickjacking).
    framer = createServer((_req, res) => res.end(`<!doctype html><iframe id="f" src="${ctl.url}/" width="800" height="600"></iframe>`));
    await new Promise<void>((r) => framer.listen(0, '127.0.0.1', () => r()));
  });

  after(async () => {
    await browser?.close();
    await new Promise<void>((r) => (framer ? framer.close(() => r()) : r()));
    await ctl?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('asks for the token, logs in, and keeps it out of localStorage and the session cookie out of the page', async () => {
    await page.goto(`${ctl.url}/`);
    await page.waitForSelector('#login:not([hidden])');
    await page.fill('#token', ADMIN);
    await page.click('#login button');
    await page.waitForSelector('#main:not([hidden])');
    assert.equal(await page.inputValue('#token'), '', 'the field is cleared');
    assert.equal(await inPage('localStorage.length + sessionStorage.length'), 0);
    assert.equal(await inPage('document.cookie'), '', 'the session cookie is HttpOnly');
    const cookies = await browser.cookies();
    assert.deepEqual(cookies.map((c) => [c.name, c.httpOnly, c.sameSite]), [['hs_session', true, 'Strict']]);
  });

  it('shows hostile text as text and an impossible time as a number, with every table filled', async () => {
    await waitFor(async () => (await cells('events')).length === 5 && (await cells('escalations')).length === 2, 15_000, 'tables filled');
    const agents = await cells('agents');
    assert.equal(agents[0]?.[1], HOSTILE, `the host name as text: ${JSON.stringify(agents)}`);
    assert.ok(agents[0]?.[2]?.includes('team=web'), `labels: ${JSON.stringify(agents)}`);
    const escalations = await cells('escalations');
    assert.deepEqual(escalations.map((r) => [r[2], r[4]]).sort(), [
      ['file:/srv/app/late.conf', '9000000000000000'],
      ['file:/srv/app/ok.conf', escalations.find((r) => r[2] === 'file:/srv/app/ok.conf')?.[4] ?? ''],
    ]);
    assert.match(escalations.find((r) => r[2] === 'file:/srv/app/ok.conf')?.[4] ?? '', /^\d{4}-\d\d-\d\dT/);
    const events = await cells('events');
    assert.ok(events.some((r) => r[0] === '9000000000000000'));
    assert.ok(events.some((r) => r[0] === String(Number.MAX_SAFE_INTEGER) && r[2] === HOSTILE), JSON.stringify(events));
    assert.ok(events.some((r) => r[3] === `file:/srv/${HOSTILE}`));
    assert.equal(await inPage('document.querySelectorAll("img").length'), 0, 'no element made from agent data');
    assert.equal(await inPage('window.__pwned'), undefined);
    assert.deepEqual(pageErrors, []);
  });

  it('shows an escalation in full before its approve button, and approves it through the session, with its CSRF token', async () => {
    const open = (await api<{ id: number; resource: string }[]>('GET', '/api/v1/escalations?status=open')).find((e) => e.resource === 'file:/srv/app/ok.conf');
    assert.ok(open);
    const row = page.locator('#escalations tbody tr', { hasText: open.resource });
    assert.equal(await row.locator('button', { hasText: 'approve' }).count(), 0, 'no approval without the review');
    assert.equal((await cells('escalations')).find((r) => r[2] === open.resource)?.[6], '1', 'the repeat counted in the list');
    await row.locator('button', { hasText: 'review' }).click();
    await page.waitForSelector('#escalation:not([hidden])');
    const field = (name: string): Promise<string> => inPage(`document.querySelector('#esc-fields dd[data-field="${name}"]').textContent`);
    assert.equal(await inPage(`document.querySelector('#esc-title').textContent`), `Escalation ${open.id}: file:/srv/app/ok.conf on ${(await cells('agents'))[0]?.[0] ?? ''}, open`);
    assert.equal(await field('observed'), 'exists=true sha256=ee', 'the latest observed state, not the first (exists=false)');
    assert.equal(await field('baseline'), 'web v1');
    assert.match(await field('last seen'), /, 1 repeat since it opened$/);
    assert.equal(await field('actor'), '/usr/bin/vim.basic, user alice (uid 1000), pid 4242, known from audit');
    assert.equal(await inPage(`document.querySelector('#esc-diff').textContent`), `-x\n+${HOSTILE}\n`, 'the diff, as text');
    assert.equal((await cells('esc-history')).length, 2, 'both sightings');
    assert.equal(await inPage('document.querySelectorAll("img").length'), 0, 'no element made from agent data');
    await page.click('#esc-approve');
    await waitFor(async () => (await api<{ status: string }>('GET', `/api/v1/escalations/${open.id}`)).status === 'approved', 10_000, 'approved');
    assert.ok(dialogs.some((d) => d.startsWith(`Approve escalation ${open.id}?`)), 'the operator confirms first');
    await waitFor(async () => (await cells('escalations')).length === 1, 10_000, 'the table follows');
    await waitFor(async () => /^approved by /.test(await field('decision')), 10_000, 'the review shows the decision');
    assert.equal(await inPage(`document.querySelector('#esc-approve').hidden`), true, 'no second approval');
    await page.click('#esc-close');
    await page.waitForSelector('#escalation', { state: 'hidden' });
  });

  it('keeps the session across a reload, and logs out', async () => {
    await page.reload();
    await page.waitForSelector('#main:not([hidden])');
    await page.click('#logout');
    await page.waitForSelector('#login:not([hidden])');
    assert.deepEqual(await browser.cookies(), [], 'the cookie is gone');
    await page.reload();
    await page.waitForSelector('#login:not([hidden])');
  });

  it('refuses to be framed by another site', async () => {
    const other = await browser.newPage();
    await other.goto(`http://127.0.0.1:${(framer.address() as AddressInfo).port}/`);
    await other.waitForSelector('#f');
    const frame = other.frames().find((f) => f !== other.mainFrame());
    assert.ok(frame);
    await frame.waitForLoadState();
    // Blocked by frame-ancestors 'none' / X-Frame-Options: the frame shows the browser's error page, not the dashboard.
    assert.ok(!frame.url().startsWith(ctl.url), `the frame shows ${frame.url()}`);
    assert.notEqual(await frame.evaluate('document.title').catch(() => ''), 'Homeostat');
    await other.close();
  });
});
