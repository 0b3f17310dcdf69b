// The agent's config file: the keys that bound its work (reconcile deadline, outbox, audit retention), each checked with
// the file and the key named when it is wrong.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../agent/config.js';
import { DEFAULT_OUTBOX_LIMIT } from '../../agent/store/store.js';
import { HsError } from '../../lib/errors.js';
import { tempDir } from '../helpers/agent.js';

describe('agent config file', () => {
  let t: { dir: string; cleanup: () => void };
  beforeEach(() => (t = tempDir('hs-config-')));
  afterEach(() => t.cleanup());

  const load = (yaml: string): ReturnType<typeof loadConfig> => {
    const file = path.join(t.dir, 'agent.yaml');
    writeFileSync(file, yaml);
    return loadConfig({ config: file });
  };
  const refused = (yaml: string): string => {
    try {
      load(yaml);
    } catch (err) {
      assert.ok(err instanceof HsError && err.code === 'HS_CONFIG', String(err));
      return err.message;
    }
    return assert.fail('expected HS_CONFIG');
  };

  it('takes the outbox bound, the reconcile deadline and the audit retention', () => {
    const c = load('outboxLimit: 2_000_000\nreconcileTimeout: 45s\nauditRetention: 30d\n');
    assert.equal(c.settings.outboxLimit, 2_000_000);
    assert.equal(c.settings.reconcileTimeoutMs, 45_000);
    assert.equal(c.settings.auditRetentionMs, 30 * 86_400_000);
    assert.equal(load('outboxLimit: 5000\n').settings.outboxLimit, 5000);
    const defaults = load('');
    assert.equal(defaults.settings.outboxLimit, undefined, 'the store default applies');
    assert.ok(DEFAULT_OUTBOX_LIMIT >= 1_000_000, 'the default holds the offline budget of a million events');
  });

  it('refuses values out of bounds, naming the file and the key', () => {
    assert.match(refused('outboxLimit: 10\n'), /agent\.yaml: outboxLimit must be a whole number of records between 1000 and 100000000, not 10/);
    assert.match(refused('outboxLimit: lots\n'), /outboxLimit .*not "lots"/);
    assert.match(refused('reconcileTimeout: 5ms\n'), /agent\.yaml: reconcileTimeout '5ms' is not a duration within bounds/);
    assert.match(refused('auditRetention: 10m\n'), /auditRetention '10m'/);
    assert.match(refused('outboxlimit: 5000\n'), /unknown setting 'outboxlimit'/);
  });
});
