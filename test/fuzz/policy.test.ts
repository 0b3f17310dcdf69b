// Fuzzing the policy parser: arbitrary text, policy-shaped documents with hostile values, and mutations of the worked
// example never crash it; every refusal is a PolicyInvalidError whose problems are located inside the text; what it
// accepts can be decided on for any drift without throwing.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { ERROR_CODES } from '../../lib/errors.js';
import { DEFAULT_POLICY, RISKS } from '../../lib/baseline/types.js';
import { decide, parsePolicy, PolicyInvalidError, PolicySet, type PolicyDocument } from '../../lib/policy/index.js';
import { fuzzParams, fuzzTimeoutMs } from '../helpers/fuzz.js';

const EXAMPLE = readFileSync(new URL('../../../baselines/examples/policies/fleet-governance.yaml', import.meta.url), 'utf8');
const SHARE = 1 / 3;

/** Parses, and checks what a refusal looks like; the document when accepted. */
function check(text: string): PolicyDocument | undefined {
  try {
    return parsePolicy(text, { file: 'fuzz.yaml' });
  } catch (err) {
    if (!(err instanceof PolicyInvalidError)) throw err;
    assert.ok(err.issues.length > 0);
    const lines = text.split(/\r\n|\r|\n/).length;
    for (const issue of err.issues) {
      assert.ok(issue.code in ERROR_CODES, issue.code);
      assert.ok(issue.code.startsWith('HS_POLICY_'), `${issue.code}: ${issue.message}`);
      const at = issue.location;
      assert.ok(at, `no location: ${issue.message}`);
      assert.equal(at.file, 'fuzz.yaml');
      assert.ok(at.line >= 1 && at.line <= lines + 1, `line ${at.line} of ${lines}: ${issue.message}`);
      assert.ok(at.column >= 1, `column ${at.column}: ${issue.message}`);
      assert.ok(issue.message.length > 0 && issue.message.length < 2000);
    }
    return undefined;
  }
}

/** Decides a few drifts with the accepted policy: rules, windows and globs built from hostile input still answer. */
function decideSome(doc: PolicyDocument, time: number): void {
  const set = new PolicySet([{ document: doc, version: 1 }]);
  for (const kind of ['file', 'sysctl', 'service']) {
    const d = decide(
      set,
      { resource: `${kind}:/etc/x`, kind, baseline: 'b', changes: ['content', 'active'], time, actor: { source: 'audit', exe: '/usr/bin/vim', user: 'root', uid: 0 } },
      { policy: DEFAULT_POLICY, paused: false, approved: false, suppressed: false, excepted: false, backingOff: false, recentRepairs: 0 },
    );
    assert.ok(typeof d.reason === 'string' && d.reason.length > 0);
  }
}

const hostileString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', '', ' ', '*', '**', '?', '\\', '*/5 * * * *', '0 2 * * 0', '@weekly', '99 99 * * *', 'L', '1#9', '30m', '0s', '31d', 'end-of-window', 'opa', 'repair', 'defer', 'none', 'any', 'Mars/Base', 'Europe/Paris', 'file:/etc/**', '/etc/ssh/*', 'a'.repeat(2000)),
);
const scalar = fc.oneof(hostileString, fc.integer({ min: -5, max: 100_000 }), fc.boolean(), fc.constant(null), fc.double({ noNaN: false }));
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof({ depthSize: 'small' }, scalar, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(hostileString, tie('v'), { maxKeys: 4 })),
})).v;

const match = fc.record(
  {
    resource: fc.oneof(hostileString, fc.array(hostileString, { maxLength: 3 }), value),
    kind: fc.oneof(fc.constantFrom('file', 'sysctl', 'service', 'directory', 'package'), fc.array(fc.constantFrom('file', 'sysctl', 'fiel'))),
    change: fc.oneof(fc.constantFrom('content', 'mode', 'state', 'value'), fc.array(hostileString, { maxLength: 3 })),
    risk: fc.oneof(fc.constantFrom(...RISKS), fc.array(fc.constantFrom(...RISKS, 'extreme'))),
    riskAtLeast: fc.constantFrom(...RISKS, 'none'),
    window: fc.oneof(fc.constantFrom('w1', 'w2', 'any', 'none', 'nope', 'constructor'), fc.array(fc.constantFrom('w1', 'w2', 'any'))),
    actor: fc.oneof(fc.record({ exe: hostileString, user: hostileString, unit: hostileString, source: fc.constantFrom('audit', 'self', 'unknown', 'x') }, { requiredKeys: [] }), value),
    [`__proto__`]: value,
  },
  { requiredKeys: [] },
);
const action = fc.oneof(
  fc.constantFrom('repair', 'escalate', 'monitor', 'ignore', 'defer', 'nope'),
  fc.record({ defer: hostileString }),
  fc.record({ ask: hostileString }),
  value,
);
const policyDoc = fc.record({
  apiVersion: fc.constantFrom('homeostat/v1', 'homeostat/v2'),
  kind: fc.constantFrom('Policy', 'Baseline'),
  metadata: fc.record({ name: fc.oneof(fc.constant('p'), hostileString), labels: fc.dictionary(hostileString, scalar, { maxKeys: 3 }) }, { requiredKeys: ['name'] }),
  spec: fc.record(
    {
      priority: scalar,
      selector: fc.record({ matchLabels: fc.dictionary(hostileString, scalar, { maxKeys: 3 }) }),
      maintenanceWindows: fc.array(
        fc.record({ name: fc.constantFrom('w1', 'w2', 'any', 'constructor'), cron: hostileString, duration: hostileString, timezone: hostileString }, { requiredKeys: ['name'] }),
        { maxLength: 3 },
      ),
      rules: fc.array(fc.record({ match, action, limits: fc.oneof(fc.record({ maxRepairsPerHour: scalar }), value), description: hostileString }, { requiredKeys: ['action'] }), {
        maxLength: 5,
      }),
    },
    { requiredKeys: ['rules'] },
  ),
});

describe('policy parser (fuzz)', function () {
  this.timeout(fuzzTimeoutMs(1));

  it('arbitrary text: no crash, every refusal located', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 400 }), fc.string({ unit: 'binary', maxLength: 400 })), (text) => {
        check(text);
      }),
      fuzzParams(SHARE),
    );
  });

  it('policy-shaped documents with hostile values, block and flow style: no crash, located refusals, decidable when accepted', () => {
    fc.assert(
      fc.property(policyDoc, fc.boolean(), fc.integer({ min: 0, max: 4_102_444_800_000 }), (doc, flow, time) => {
        const text = stringify(doc, flow ? { collectionStyle: 'flow' } : {});
        const parsed = check(text);
        if (parsed) decideSome(parsed, time);
      }),
      fuzzParams(SHARE),
    );
  });

  it('mutations of the worked example: no crash, located refusals, decidable when accepted', () => {
    const edit = fc.record({ at: fc.nat({ max: EXAMPLE.length }), drop: fc.nat({ max: 8 }), insert: fc.string({ maxLength: 8 }) });
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), fc.integer({ min: 0, max: 4_102_444_800_000 }), (edits, time) => {
        let text = EXAMPLE;
        for (const e of edits) text = text.slice(0, e.at) + e.insert + text.slice(e.at + e.drop);
        const parsed = check(text);
        if (parsed) decideSome(parsed, time);
      }),
      fuzzParams(SHARE),
    );
  });
});
