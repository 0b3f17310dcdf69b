// The rollout engine's own consistency, on a real controller core (real SQLite, real signing) with no socket: operator
// actions never land in the middle of a pass step, and a rollout that could not start leaves no `running` record.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createControllerCore, type ControllerCore } from '../../controller/core.js';
import { parseStrategy } from '../../controller/rollouts/waves.js';
import type { AgentRecord, RolloutRecord } from '../../controller/store/types.js';
import { HsError } from '../../lib/errors.js';

const YAML = (motd: string): string => `apiVersion: homeostat/v1
kind: Baseline
metadata:
  name: app
spec:
  resources:
    - file: /srv/app/motd
      content: "${motd}\\n"
`;

function agent(id: string): AgentRecord {
  return {
    id,
    credentialHash: randomBytes(32).toString('hex'),
    enrolledAt: 0,
    tokenId: 't',
    labels: {},
    tokenLabels: {},
    allowLabels: [],
    requestedLabels: {},
    operatorLabels: {},
    facts: null,
    protocolVersion: 2,
    agentVersion: 'test',
    lastSeen: 0,
    revokedAt: null,
    outboxPending: 0,
    outboxDropped: 0,
    enforcementPaused: false,
    lastEventSeq: 0,
  };
}

async function until(pred: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('rollout engine consistency', function () {
  this.timeout(30_000);
  let dir: string;
  let core: ControllerCore;

  const open = async (): Promise<ControllerCore> => createControllerCore({ dataDir: dir, fingerprint: null, adminToken: 'x'.repeat(32), rollouts: { tickMs: 20 } });

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'hs-rollout-engine-'));
    core = await open();
    await core.baselines.push({ yaml: YAML('one'), sources: {}, file: 'app.yaml' });
    await core.baselines.push({ yaml: YAML('two'), sources: {}, file: 'app.yaml' });
    await core.store.putAgent(agent('ag-1'));
  });

  afterEach(async () => {
    await core.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('never completes (promotes) a rollout an operator aborted while its last wave was being judged healthy', async () => {
    // Hold the pass inside its `wave_healthy` record, the await after which it used to promote the version.
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    let holding = false;
    const add = core.store.addControllerEvent.bind(core.store);
    core.store.addControllerEvent = async (e) => {
      if (e.kind === 'wave_healthy') {
        holding = true;
        await held;
      }
      return add(e);
    };
    const { kind, spec } = parseStrategy({ waves: [100], gate: { soakSeconds: 0 } });
    const started = core.rollouts.start({ baseline: 'app', version: 1, kind, spec, supersede: false });
    await until(() => holding, 'the pass to reach wave_healthy');
    const rollout = (await core.store.listRollouts())[0] as RolloutRecord;
    const abort = core.rollouts.act(rollout.id, 'abort', 'tester').then(
      (r) => ({ ok: true as const, state: r.state }),
      (err: unknown) => ({ ok: false as const, err }),
    );
    release();
    await started;
    const outcome = await abort;
    await until(async () => (await core.store.getRollout(rollout.id))?.state !== 'running', 'the rollout to end');
    const final = await core.store.getRollout(rollout.id);
    const target = core.baselines.target('app');
    if (outcome.ok) {
      // The abort went through: the version must not have become the fleet's target.
      assert.equal(final?.state, 'aborted');
      assert.equal(target, undefined, 'an aborted rollout promoted its version');
    } else {
      // The pass finished first: the abort is refused as a conflict and the record says completed.
      assert.ok(outcome.err instanceof HsError && outcome.err.code === 'HS_CONFLICT', String(outcome.err));
      assert.equal(final?.state, 'completed');
      assert.equal(target?.version, 1);
    }
  });

  it('marks a rollout that fails while starting as aborted with the cause, and the next start works', async () => {
    const stage = core.baselines.stage.bind(core.baselines);
    core.baselines.stage = () => Promise.reject(new Error('signing key unavailable'));
    const { kind, spec } = parseStrategy('all-at-once');
    await assert.rejects(core.rollouts.start({ baseline: 'app', version: 2, kind, spec, supersede: false }), /signing key unavailable/);
    const [failed] = await core.store.listRollouts();
    assert.equal(failed?.state, 'aborted');
    assert.match(failed?.reason ?? '', /could not start: signing key unavailable/);
    core.baselines.stage = stage;
    const r = await core.rollouts.start({ baseline: 'app', version: 2, kind, spec, supersede: false });
    await until(async () => (await core.store.getRollout(r.id))?.state === 'completed', 'the second rollout to complete');
  });

  it('after a restart, aborts a rollout the controller stopped inside of, instead of skipping it for good', async () => {
    const now = Date.now();
    const { kind, spec } = parseStrategy('all-at-once');
    // What a crash between creating the record and signing the version leaves behind.
    const r = await core.store.addRollout({
      document: 'baseline', baseline: 'app', version: 2, previousVersion: null, strategy: kind, rollback: false, createdAt: now, state: 'running', spec,
      currentWave: -1, waveStartedAt: null, reason: null, pausedFor: null, updatedAt: now, finishedAt: null, signed: null,
    });
    await core.close();
    core = await open();
    const after = await core.store.getRollout(r.id);
    assert.equal(after?.state, 'aborted');
    assert.match(after?.reason ?? '', /stopped while starting/);
    const again = await core.rollouts.start({ baseline: 'app', version: 2, kind, spec, supersede: false });
    await until(async () => (await core.store.getRollout(again.id))?.state === 'completed', 'a new rollout to complete');
  });
});
