// Where baselines come from: the host's own files and the controller number their versions apart, each controller
// under its own signing key, so a host that enforced `web` itself, or one re-enrolled with a new controller, takes the
// controller's `web` v1 without a clash of numbers. A resource is enforced from one place: a second claim is refused,
// naming both. Real stores and engines in process; a real controller and daemon for standalone → managed.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Agent } from '../../agent/agent.js';
import { composeAgent } from '../../agent/compose.js';
import { DEFAULT_SETTINGS } from '../../agent/settings.js';
import { AgentStore } from '../../agent/store/store.js';
import { parseBaseline } from '../../lib/baseline/index.js';
import { HsError } from '../../lib/errors.js';
import { silentLogger } from '../../lib/log.js';
import { runAgent, startAgentDaemon, tempDir, waitFor, writeBaseline, type DaemonProcess } from '../helpers/agent.js';
import { controller } from '../helpers/trust.js';

const web = (file: string, content: string, extra = ''): string =>
  `apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: web }\nspec:\n  resources:\n    - file: ${file}\n      content: "${content}\\n"\n${extra}`;

describe('baseline sources', function () {
  this.timeout(60_000);
  let t: { dir: string; cleanup: () => void };
  let store: AgentStore;
  let agent: Agent;
  let file: string;

  beforeEach(() => {
    t = tempDir('hs-sources-');
    file = path.join(t.dir, 'motd');
    store = AgentStore.open(path.join(t.dir, 'state'));
    agent = composeAgent({ settings: { ...DEFAULT_SETTINGS, stateDir: path.join(t.dir, 'state') }, log: silentLogger, store });
  });

  afterEach(async () => {
    await agent.stop();
    store.close();
    t.cleanup();
  });

  const parse = (text: string): ReturnType<typeof parseBaseline> => parseBaseline(text, { file: 'web.yaml' });
  const refusal = async (p: Promise<unknown>): Promise<HsError> => {
    try {
      await p;
    } catch (err) {
      assert.ok(err instanceof HsError, String(err));
      return err;
    }
    return assert.fail('expected a refusal');
  };

  it("keeps a controller's version numbers apart from the host's: web v1 from the controller after local web v1 to v4", async () => {
    for (let v = 1; v <= 4; v++) assert.equal((await agent.activate([parse(web(file, `local ${v}`))], { origin: 'local' }))[0]?.version, v);
    const controllerWeb = parse(web(file, 'from the controller'));
    // Both claim file:…/motd: refused, naming both places, and the local v4 stays enforced. Not a clash of numbers.
    const e = await refusal(agent.activate([controllerWeb], { origin: 'controller', versions: { web: 1 }, signedBy: 'key-A' }));
    assert.equal(e.code, 'HS_BASELINE_CONFLICT');
    assert.match(e.message, /baseline 'web' from the controller \(signing key key-A\) is refused: 'web' v4 is enforced from this host's own baseline files; a baseline is enforced from one place — remove it from this host's baseline files to hand it over/);
    assert.deepEqual(agent.activeBaselines().map((b) => `${b.name}@${b.version}/${b.origin}`), ['web@4/local']);
    // Once the host's own files give it up, the controller's v1 is taken as v1.
    await agent.activate([], { origin: 'local' });
    const taken = await agent.activate([controllerWeb], { origin: 'controller', versions: { web: 1 }, signedBy: 'key-A' });
    assert.deepEqual(taken.map((b) => `${b.name}@${b.version}/${b.origin}`), ['web@1/controller']);
    assert.deepEqual(store.getActive().map((b) => `${b.source}/${b.name}@${b.version}`), ['controller:key-A/web@1']);
  });

  it('refuses a resource claimed from both places, naming both baselines and their origins', async () => {
    await agent.activate([parse(web(file, 'local'))], { origin: 'local' });
    const other = parse(`apiVersion: homeostat/v1\nkind: Baseline\nmetadata: { name: app }\nspec:\n  resources:\n    - file: ${file}\n      content: "app\\n"\n`);
    const e = await refusal(agent.activate([other], { origin: 'controller', versions: { app: 3 }, signedBy: 'key-A' }));
    assert.equal(e.code, 'HS_BASELINE_CONFLICT');
    assert.match(e.message, new RegExp(`file:${file} is managed by both baseline 'web' v1 \\(this host's own baseline files\\) and baseline 'app' v3 \\(the controller \\(signing key key-A\\)\\): a resource is enforced from one place`));
  });

  it('takes a re-enrolled controller\'s web v1 although the old controller sent another web v1, and leaves the old set', async () => {
    await agent.activate([parse(web(file, 'controller A'))], { origin: 'controller', versions: { web: 1 }, signedBy: 'key-A' });
    await agent.activate([parse(web(file, 'controller A, v2'))], { origin: 'controller', versions: { web: 2 }, signedBy: 'key-A' });
    const taken = await agent.activate([parse(web(file, 'controller B'))], { origin: 'controller', versions: { web: 1 }, signedBy: 'key-B' });
    assert.deepEqual(taken.map((b) => `${b.name}@${b.version}`), ['web@1']);
    assert.deepEqual(store.getActive().map((b) => `${b.source}/${b.name}@${b.version}`), ['controller:key-B/web@1']);
    await agent.engine.converge('manual');
    assert.equal(readFileSync(file, 'utf8'), 'controller B\n');
  });

  describe('from standalone to managed (daemon and controller)', () => {
    let daemon: DaemonProcess | undefined;
    afterEach(async () => {
      await daemon?.stop();
      daemon = undefined;
    });

    it("a host that enforced web itself takes the controller's web v1 once it runs managed without baseline files", async () => {
      const stateDir = path.join(t.dir, 'agent');
      const local = writeBaseline(t.dir, 'web', web(file, 'local 1'));
      daemon = startAgentDaemon(['--baseline', local, '--state-dir', stateDir]);
      await daemon.ready();
      writeFileSync(local, web(file, 'local 2'));
      daemon.child.kill('SIGHUP');
      await waitFor(() => existsAndIs(file, 'local 2\n'), 10_000, 'local v2 enforced');
      assert.equal(await daemon.stop(), 0);

      const c = await controller(path.join(t.dir, 'controller'));
      try {
        const pushed = await c.api<{ version: number }>('POST', '/api/v1/baselines', { yaml: web(file, 'managed'), file: 'web.yaml' });
        assert.equal(pushed.version, 1);
        await c.api('POST', '/api/v1/rollouts', { baseline: 'web', version: 1, strategy: 'all-at-once' });
        const token = (await c.api<{ token: string }>('POST', '/api/v1/enrollment-tokens', { ttl: '1h' })).token;
        daemon = startAgentDaemon(['--state-dir', stateDir, '--controller', c.ctl.agentUrl, '--token', token]);
        await daemon.ready();
        await waitFor(() => existsAndIs(file, 'managed\n'), 15_000, "the controller's web v1 enforced");
        const status = JSON.parse((await runAgent(['status', '--json', '--state-dir', stateDir])).stdout) as { baselines: { name: string; version: number; origin: string }[] };
        assert.deepEqual(status.baselines.map((b) => `${b.name}@${b.version}/${b.origin}`), ['web@1/controller']);
        const audit = JSON.parse((await runAgent(['audit', '--json', '--state-dir', stateDir])).stdout) as { entries: { event: string; detail: string | null }[] };
        assert.ok(audit.entries.some((e) => e.event === 'baseline_removed' && /web v2 \(local\) no longer enforced: the agent is managed by a controller/.test(e.detail ?? '')));
        assert.ok(!audit.entries.some((e) => e.event === 'baseline_rejected'), JSON.stringify(audit.entries.filter((e) => e.event === 'baseline_rejected')));
      } finally {
        await daemon?.stop();
        daemon = undefined;
        await c.stop();
      }
    });
  });
});

function existsAndIs(file: string, content: string): boolean {
  try {
    return readFileSync(file, 'utf8') === content;
  } catch {
    return false;
  }
}
