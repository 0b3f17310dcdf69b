// Maintenance windows and glob patterns: worked cases, then properties against brute force — every minute asked of
// node-cron's own matcher for windows, a regular expression for globs.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createTask } from 'node-cron';
import { compileGlob } from '../../lib/policy/glob.js';
import { cronProblem, MaintenanceWindow, timezoneProblem } from '../../lib/policy/windows.js';

const H = 3_600_000;
const MIN = 60_000;

function win(cron: string, durationMs: number, timezone = 'UTC'): MaintenanceWindow {
  assert.equal(cronProblem(cron), undefined);
  return new MaintenanceWindow({ name: 'w', cron, durationMs, timezone });
}

/** Every start of `cron` in [from, to), found by asking node-cron about every minute. */
function bruteStarts(cron: string, timezone: string, from: number, to: number): number[] {
  const task = createTask(cron, () => undefined, { timezone });
  void task.destroy();
  const out: number[] = [];
  for (let t = Math.ceil(from / MIN) * MIN; t < to; t += MIN) if (task.match(new Date(t))) out.push(t);
  return out;
}

describe('maintenance windows', () => {
  it('Sunday 02:00 for 2 h, in UTC: inside from the start, outside at the end', () => {
    const w = win('0 2 * * 0', 2 * H);
    const start = Date.UTC(2025, 0, 5, 2, 0); // a Sunday
    assert.equal(w.contains(start - 1), false);
    assert.equal(w.contains(start), true);
    assert.equal(w.currentStart(start + 90 * MIN), start);
    assert.equal(w.currentEnd(start + 90 * MIN), start + 2 * H);
    assert.equal(w.contains(start + 2 * H - 1), true);
    assert.equal(w.contains(start + 2 * H), false);
    assert.equal(w.nextStart(start), start + 7 * 24 * H);
    assert.equal(w.nextStart(start - 1), start);
    assert.deepEqual(w.startsBetween(start, start + 15 * 24 * H), [start, start + 7 * 24 * H, start + 14 * 24 * H]);
  });

  it('reads the cron fields in the window time zone, across a daylight saving change', () => {
    const w = win('0 2 * * 0', 2 * H, 'Europe/Paris');
    // 2025-01-05 02:00 in Paris is 01:00 UTC (winter); 2025-07-06 02:00 is 00:00 UTC (summer).
    assert.equal(w.currentStart(Date.UTC(2025, 0, 5, 2, 30)), Date.UTC(2025, 0, 5, 1, 0));
    assert.equal(w.currentStart(Date.UTC(2025, 6, 6, 1, 30)), Date.UTC(2025, 6, 6, 0, 0));
    assert.equal(w.contains(Date.UTC(2025, 6, 6, 2, 0)), false);
  });

  it('a start at a local time that does not exist is skipped; one that happens twice starts twice', () => {
    const w = win('30 2 * * *', 30 * MIN, 'Europe/Paris');
    // 2025-03-30: clocks go from 02:00 to 03:00; 2025-10-26: from 03:00 back to 02:00.
    assert.deepEqual(w.startsBetween(Date.UTC(2025, 2, 29, 12), Date.UTC(2025, 2, 30, 12)), []);
    assert.deepEqual(w.startsBetween(Date.UTC(2025, 9, 25, 12), Date.UTC(2025, 9, 26, 12)), [Date.UTC(2025, 9, 26, 0, 30), Date.UTC(2025, 9, 26, 1, 30)]);
  });

  it('overlapping occurrences: the window lasts until the latest one ends', () => {
    const w = win('0 * * * *', 90 * MIN);
    const t = Date.UTC(2025, 0, 1, 10, 45);
    assert.equal(w.currentStart(t), Date.UTC(2025, 0, 1, 10, 0));
    assert.equal(w.currentEnd(t), Date.UTC(2025, 0, 1, 11, 30));
  });

  it('node-cron extensions work: the last day of the month, the second Monday', () => {
    assert.deepEqual(win('0 3 L * *', H).startsBetween(Date.UTC(2024, 1, 1), Date.UTC(2024, 3, 1)), [Date.UTC(2024, 1, 29, 3), Date.UTC(2024, 2, 31, 3)]);
    assert.deepEqual(win('0 3 * * 1#2', H).startsBetween(Date.UTC(2025, 0, 1), Date.UTC(2025, 1, 1)), [Date.UTC(2025, 0, 13, 3)]);
    assert.equal(win('0 3 1 1 *', H).nextStart(Date.UTC(2025, 0, 2)), Date.UTC(2026, 0, 1, 3), 'a yearly window is found');
  });

  it('refuses what it cannot read the way people mean it', () => {
    assert.match(cronProblem('0 0 2 * * 0') ?? '', /six fields/);
    assert.match(cronProblem('0 2 1 * 1') ?? '', /both day-of-month and day-of-week/);
    assert.match(cronProblem('61 2 * * *') ?? '', /"61" is not a valid minute/);
    assert.match(cronProblem('every sunday') ?? '', /illegal characters|five fields/);
    assert.equal(cronProblem('@weekly'), undefined);
    assert.equal(cronProblem('*/15 1-3 * * mon-fri'), undefined);
    assert.equal(timezoneProblem('Europe/Paris'), undefined);
    assert.match(timezoneProblem('Europe/Pariss') ?? '', /not a time zone/);
  });

  describe('agree with node-cron asked about every minute', () => {
    const zones = ['UTC', 'Europe/Paris', 'America/New_York', 'Asia/Kolkata', 'Asia/Kathmandu', 'Australia/Lord_Howe'];
    const cron = fc
      .record({
        minute: fc.oneof(fc.constant('*'), fc.constant('*/15'), fc.integer({ min: 0, max: 59 }).map(String), fc.constant('0,30')),
        hour: fc.oneof(fc.constant('*'), fc.integer({ min: 0, max: 23 }).map(String), fc.constant('1-3'), fc.constant('22,23')),
        days: fc.oneof(
          fc.constant('* * *'),
          fc.integer({ min: 0, max: 6 }).map((d) => `* * ${d}`),
          fc.constant('* * 1-5'),
          fc.integer({ min: 1, max: 28 }).map((d) => `${d} * *`),
        ),
      })
      .map((c) => `${c.minute} ${c.hour} ${c.days}`);
    const time = fc.integer({ min: Date.UTC(2024, 0, 1), max: Date.UTC(2027, 0, 1) });

    it('contains, currentStart and currentEnd', () => {
      fc.assert(
        fc.property(cron, fc.constantFrom(...zones), fc.integer({ min: 1, max: 3 * 24 * 60 }), time, (expr, tz, minutes, t) => {
          const d = minutes * MIN;
          const w = win(expr, d, tz);
          const starts = bruteStarts(expr, tz, t - d + 1, t + 1);
          const latest = starts[starts.length - 1];
          assert.equal(w.currentStart(t), latest, `${expr} ${tz} ${minutes}m at ${new Date(t).toISOString()}`);
          assert.equal(w.contains(t), latest !== undefined);
          assert.equal(w.currentEnd(t), latest === undefined ? undefined : latest + d);
        }),
        { numRuns: 60 },
      );
    });

    it('nextStart', () => {
      fc.assert(
        fc.property(cron, fc.constantFrom(...zones), time, (expr, tz, t) => {
          const w = win(expr, H, tz);
          const next = w.nextStart(t);
          assert.ok(next !== undefined && next > t);
          assert.deepEqual(bruteStarts(expr, tz, t + 1, next + 1), [next], `${expr} ${tz} after ${new Date(t).toISOString()}`);
        }),
        { numRuns: 40 },
      );
    });
  });
});

describe('glob patterns', () => {
  it('* stays within a path segment, ** crosses them, ? is one character, \\ escapes', () => {
    const ssh = compileGlob('file:/etc/ssh/*');
    assert.equal(ssh.matches('file:/etc/ssh/sshd_config'), true);
    assert.equal(ssh.matches('file:/etc/ssh/.hidden'), true, 'a leading dot is not special');
    assert.equal(ssh.matches('file:/etc/ssh/sshd_config.d/x.conf'), false);
    assert.equal(ssh.matches('file:/etc/ssh'), false);
    assert.equal(compileGlob('file:/etc/ssh/**').matches('file:/etc/ssh/sshd_config.d/x.conf'), true);
    assert.equal(compileGlob('file:/etc/**/*.conf').matches('file:/etc/a/b/c.conf'), true);
    assert.equal(compileGlob('sysctl:net.ipv4.*').matches('sysctl:net.ipv4.conf.all.rp_filter'), true);
    assert.equal(compileGlob('/usr/bin/vim?').matches('/usr/bin/vim.'), true);
    assert.equal(compileGlob('a\\*b').matches('a*b'), true);
    assert.equal(compileGlob('a\\*b').matches('axb'), false);
    assert.equal(compileGlob('puppet').matches('puppet.service'), false);
  });

  /** The meaning, as a regular expression, for short texts only. */
  function reference(pattern: string): RegExp {
    let re = '';
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern[i] as string;
      if (c === '\\' && i + 1 < pattern.length) re += (pattern[++i] as string).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      else if (c === '*' && pattern[i + 1] === '*') {
        while (pattern[i + 1] === '*') i++;
        re += '.*';
      } else if (c === '*') re += '[^/]*';
      else if (c === '?') re += '[^/]';
      else re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
    }
    return new RegExp(`^(?:${re})$`, 's');
  }

  it('agrees with the regular expression of its meaning', () => {
    const ch = (s: string): fc.Arbitrary<string> => fc.array(fc.constantFrom(...s.split('')), { maxLength: 10 }).map((a) => a.join(''));
    fc.assert(
      fc.property(ch('ab/*?\\.'), ch('ab/.*'), (pattern, text) => {
        assert.equal(compileGlob(pattern).matches(text), reference(pattern).test(text), `${JSON.stringify(pattern)} ~ ${JSON.stringify(text)}`);
      }),
      { numRuns: 20_000 },
    );
  });

  it('answers a pattern made to backtrack (a backtracking matcher would not return within the test timeout)', () => {
    assert.equal(compileGlob(`${'*a'.repeat(30)}b`).matches('a'.repeat(4096)), false);
    assert.equal(compileGlob(`${'**a'.repeat(30)}b`).matches(`${'a/'.repeat(2048)}`), false);
  });
});
