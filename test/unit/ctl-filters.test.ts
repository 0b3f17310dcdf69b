// homeostatctl's filters read what the operator types the way the baseline reads it, or refuse it with a hint: a filter
// that could only match nothing never runs silently.
import assert from 'node:assert/strict';
import { count, eventName, resourceIds, timeFilter } from '../../controller/ctl/filters.js';


describe('homeostatctl filters', () => {
  it('normalises resource ids like the baseline does', () => {
    assert.deepEqual(resourceIds('/etc/motd'), ['file:/etc/motd', 'directory:/etc/motd'], 'a bare path: its file or its directory');
    assert.deepEqual(resourceIds('file:/etc/motd'), ['file:/etc/motd']);
    assert.deepEqual(resourceIds('service:web'), ['service:web.service']);
    assert.deepEqual(resourceIds('service:web.socket'), ['service:web.socket']);
    assert.deepEqual(resourceIds('sysctl:net/ipv4/ip_forward'), ['sysctl:net.ipv4.ip_forward']);
  });

  it('refuses resource ids that could match nothing, with what to write', () => {
    assert.throws(() => resourceIds('motd'), /--resource "motd": write a resource id as TYPE:NAME, e\.g\. file:\/etc\/motd/);
    assert.throws(() => resourceIds('files:/etc/motd'), /no resource type "files" \(did you mean "file"\?\); the types are file, directory, sysctl, service/);
    assert.throws(() => resourceIds('file:etc/motd'), /is relative; write it absolute/);
    assert.throws(() => resourceIds('/etc//motd/'), /not normalised .*; write \/etc\/motd/);
    assert.throws(() => resourceIds('sysctl:/proc/sys/net/ipv4/ip_forward'), /without \/proc\/sys: net\.ipv4\.ip_forward/);
    assert.throws(() => resourceIds('service:'), /name the unit/);
  });

  it('checks event names against the ones agents record and suggests the nearest', () => {
    assert.equal(eventName('repaired'), 'repaired');
    assert.throws(() => eventName('repair'), /--event "repair": agents record no such event \(did you mean "repaired"\?\)/);
    assert.throws(() => eventName('escalate', '--kind'), /--kind "escalate": .*did you mean "escalated"\?/);
    assert.throws(() => eventName('zzz'), /agents record no such event; the events are drift_detected, deferred, drift_predicted, repaired/);
  });

  it('takes times with a unit, ISO times or epoch milliseconds, and refuses a bare small number', () => {
    assert.equal(timeFilter('10m'), '10m');
    assert.equal(timeFilter('2025-01-31T12:00:00Z'), '2025-01-31T12:00:00Z');
    assert.equal(timeFilter('1700000000000'), '1700000000000');
    assert.throws(() => timeFilter('10'), /--since 10: a number without a unit; write a duration back \(10s, 10m, 10h, 10d\)/);
    assert.throws(() => timeFilter('yesterday', '--until'), /--until "yesterday": expected a duration back/);
    assert.equal(count('5', '--limit', 10), 5);
    assert.throws(() => count('0', '--limit', 10), /--limit "0": expected a whole number from 1 to 10/);
  });
});
