// What the gateway keeps per connected agent and document kind: names it may hold (each may cost a signed removal) are
// bounded however many an agent claims, a removal it reports drops the name, and a stale assignment is noticed.
import assert from 'node:assert/strict';
import { Holding } from '../../controller/gateway/session.js';

describe('gateway: what an agent holds, per document kind', () => {
  it('takes at most 10,000 names from one report, so an agent cannot make the controller sign a removal per invented name', () => {
    const h = new Holding();
    const claimed = Array.from({ length: 25_000 }, (_, i) => ({ name: `p${i}`, version: 1, sha256: '' }));
    h.note(claimed, []);
    assert.equal(h.mayHold.size, 10_000);
  });

  it('forgets a name the agent says it removed, and asks for a new assignment when it holds what it was not sent', () => {
    const h = new Holding();
    assert.equal(h.note([{ name: 'fleet', version: 1, sha256: '' }], []), true, 'held but never sent');
    h.sent.set('fleet', 5);
    assert.equal(h.note([{ name: 'fleet', version: 1, sha256: '' }], [{ name: 'fleet', version: 1, issuedAt: 5, removed: false }]), false);
    assert.equal(h.note([], [{ name: 'fleet', version: 1, issuedAt: 7, removed: true }]), true, 'removed after what it is sent: a re-issue is due');
    assert.equal(h.mayHold.has('fleet'), false);
  });
});
