// The dashboard's escalation rows in a real browser (Debian's chromium through playwright-core), fed by a real agent
// connection: each row names who made the drift as the agent said it, a fight names the opponent, an actor's hostile
// text stays text, and the policies table lists what is pushed and rolled out.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startController, type RunningController } from '../../controller/server.js';
import { waitFor } from '../helpers/agent.js';
import { WireAgent, wireEvent } from '../helpers/wire-agent.js';

const CHROMIUM = '/usr/bin/chromium';
const ADMIN = 'browser-actor-token';
const HOSTILE = '<img src=x onerror="window.__pwned=1">';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

describe('dashboard escalation rows in a browser: actor and opponent', function () {
  this.timeout(90_000);
  let dir: string;
  let ctl: RunningController;
  let browser: BrowserContext;
  let page: Page;
  const pageErrors: string[] = [];

  const api = async <T>(method: string, url: string, body?: unknown): Promise<T> =>
    (await ctl.core.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN}` }, ...(body === undefined ? {} : { body: body as object }) })).json<T>();
  const cells = (table: string): Promise<string[][]> =>
    page.evaluate(`Array.from(document.querySelectorAll('#${table} tbody tr')).map((r) => Array.from(r.querySelectorAll('td')).map((td) => td.textContent || ''))`) as Promise<string[][]>;

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      process.stderr.write(`      chromium is not installed at ${CHROMIUM} (apt-get install chromium): skipped\n`);
      this.skip();
    }
    dir = mkdtempSync(path.join(tmpdir(), 'hs-browser-actor-'));
    ctl = await startController({ dataDir: path.join(dir, 'controller'), listen: '127.0.0.1:0', insecureHttp: true, adminToken: ADMIN });
    const yaml = `apiVersion: homeostat/v1\nkind: Baseline\nmetadata:\n  name: web\nspec:\n  resources:\n    - file: /srv/app/a\n      content: "x"\n    - file: /srv/app/b\n      content: "y"\n    - file: /srv/app/c\n      content: "z"\n`;
    await api('POST', '/api/v1/baselines', { yaml });
    await api('POST', '/api/v1/rollouts', { baseline: 'web', version: 1, strategy: 'all-at-once' });
    await api('POST', '/api/v1/policies', { yaml: 'apiVersion: homeostat/v1\nkind: Policy\nmetadata:\n  name: governance\nspec:\n  rules:\n    - match: { kind: file }\n      action: repair\n' });
    await api('POST', '/api/v1/rollouts', { policy: 'governance', version: 1, strategy: 'all-at-once' });
    const { token } = await api<{ token: string }>('POST', '/api/v1/enrollment-tokens', {});
    const agent = await WireAgent.enroll(ctl.agentUrl, token);
    const puppet = { source: 'audit', exe: '/usr/bin/puppet', unit: 'puppet.service', pid: 4242 };
    await agent.deliver([
      wireEvent(1, { event: 'escalated', resource: 'file:/srv/app/a', baseline: 'web', version: 1, actorJson: JSON.stringify({ source: 'audit', exe: '/usr/bin/vim', loginUser: 'alice', unit: 'session-4.scope' }) }),
      wireEvent(2, {
        event: 'suppressed_flapping', resource: 'file:/srv/app/b', baseline: 'web', version: 1, actorJson: JSON.stringify(puppet),
        decisionJson: JSON.stringify({ action: 'suppress', cause: 'flapping', rule: { baseline: 'web' }, reason: 'fighting /usr/bin/puppet (puppet.service): 6 changes in 10 min' }),
      }),
      wireEvent(3, { event: 'escalated', resource: 'file:/srv/app/c', baseline: 'web', version: 1, actorJson: JSON.stringify({ source: 'audit', exe: HOSTILE }) }),
    ]);
    await ctl.core.events.flush();
    browser = await chromium.launchPersistentContext(path.join(dir, 'profile'), { executablePath: CHROMIUM, headless: true, args: FLAGS });
    page = browser.pages()[0] ?? (await browser.newPage());
    page.on('pageerror', (e) => pageErrors.push(e.message));
  });

  after(async () => {
    await browser?.close();
    await ctl?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shows who made each escalated drift, and for a fight the opponent, as text', async () => {
    await page.goto(`${ctl.url}/`);
    await page.waitForSelector('#login:not([hidden])');
    await page.fill('#token', ADMIN);
    await page.click('#login button');
    await page.waitForSelector('#main:not([hidden])');
    await waitFor(async () => (await cells('escalations')).length === 3, 15_000, 'three escalations shown');
    const byResource = new Map((await cells('escalations')).map((r) => [r[2], r]));
    assert.equal(byResource.get('file:/srv/app/a')?.[5], '/usr/bin/vim (session-4.scope)');
    assert.equal(byResource.get('file:/srv/app/b')?.[5], 'fighting /usr/bin/puppet (puppet.service)');
    assert.equal(byResource.get('file:/srv/app/c')?.[5], HOSTILE);
    assert.match(byResource.get('file:/srv/app/a')?.[4] ?? '', /^\d{4}-\d\d-\d\dT/, 'the opened time stays in its column');
    assert.deepEqual(await cells('policies'), [['governance', '1', '1']]);
    assert.equal(await page.evaluate('document.querySelectorAll("img").length'), 0, 'no element made from agent data');
    assert.equal(await page.evaluate('window.__pwned'), undefined);
    assert.deepEqual(pageErrors, []);
  });
});
