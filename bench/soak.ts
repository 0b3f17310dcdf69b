// Soak of the agent executable: the package tests' work (the daemon on 10,000 files under continuous drift and SIGHUP reloads, one-shot apply and check on fresh state beside it) for as long as asked; prints repairs/s, RSS over time and aborts.
//
//   node_modules/.bin/node dist/bench/soak.js [--minutes 10] [--files 10000] [--interval 30] [--rate 40] [--reload-seconds 5]
//                                             [--bin packaging/out/homeostat-agent]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { AGENT_BIN, cleanEnv, sh } from '../test/package/artifacts.js';
import { Daemon, TAMPERS, aborted, compliant, driftContinuously, memoryOf, tamper, writeFileSet, type DriftReport } from '../test/package/workload.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    files: { type: 'string', default: '10000' },
    interval: { type: 'string', default: '30' },
    rate: { type: 'string', default: '40' },
    'reload-seconds': { type: 'string', default: '5' },
    bin: { type: 'string', default: AGENT_BIN },
  },
});
const MINUTES = Number(values.minutes);
const FILES = Number(values.files);
const INTERVAL_S = Number(values.interval);
const RATE = Number(values.rate);
/** 0: no reloads, to tell their cost from the repairs'. */
const RELOAD_S = Number(values['reload-seconds']);
const BIN = path.resolve(values.bin);
const ONE_SHOT_FILES = 1000;

const mb = (kb: number): string => (kb / 1024).toFixed(1);

async function main(): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), 'hs-soak-'));
  const env = cleanEnv({ HOMEOSTAT_CACHE_DIR: path.join(dir, 'cache') });
  const version = (await sh(BIN, ['--version'], { env })).stdout.trim();
  console.log(`soak: ${BIN} (${version}), ${MINUTES} min, daemon on ${FILES} files at ${RATE} tampers/s ${RELOAD_S > 0 ? `with a SIGHUP reload every ${RELOAD_S} s` : 'without reloads'}; apply + check of ${ONE_SHOT_FILES} files on fresh state beside it`);
  const set = writeFileSet(path.join(dir, 'daemon'), FILES, { create: true });
  const oneShotSet = writeFileSet(path.join(dir, 'oneshot'), ONE_SHOT_FILES, { create: true });
  const end = Date.now() + MINUTES * 60_000;
  let aborts = 0;
  let daemonStarts = 0;
  let oneShots = 0;
  let oneShotFailures = 0;
  const rss: { t: number; rssKb: number; anonKb: number }[] = [];
  const started = Date.now();

  // One-shot commands in a loop beside the daemon, each a new process on a fresh state dir, as in the package tests.
  const oneShotLoop = (async () => {
    let n = 0;
    while (Date.now() < end) {
      const stateDir = path.join(dir, 'oneshot-state');
      rmSync(stateDir, { recursive: true, force: true });
      const drifted = Array.from({ length: 30 }, (_, i) => oneShotSet.paths[(n * 97 + i * 31) % ONE_SHOT_FILES] ?? '');
      drifted.forEach((p, i) => tamper(p, TAMPERS[i % TAMPERS.length] ?? 'content'));
      n += 1;
      for (const args of [['apply', '--baseline', oneShotSet.baseline, '--state-dir', stateDir], ['check', '--baseline', oneShotSet.baseline]]) {
        const r = await sh(BIN, args, { env, timeoutMs: 120_000 });
        oneShots += 1;
        if (r.code === -1 || /Assertion failed|Segmentation/.test(r.stderr)) {
          aborts += 1;
          console.log(`ABORT: ${args[0]} ${r.stderr.slice(-500)}`);
        } else if (r.code !== 0) {
          oneShotFailures += 1;
          console.log(`one-shot ${args[0]} exited ${r.code}: ${r.stderr.slice(-300)}`);
        }
      }
      if (drifted.some((p) => !compliant(p))) oneShotFailures += 1;
    }
  })();

  const totals: DriftReport = { tampers: 0, byKind: { content: 0, deleted: 0, chmod: 0 }, reloads: 0, unrepaired: [], latenciesMs: [] };
  let lastLine = Date.now();
  let repairedAtLastLine = 0;
  while (Date.now() < end) {
    const stateDir = path.join(dir, 'daemon-state');
    const daemon = new Daemon(BIN, ['--baseline', set.baseline, '--state-dir', stateDir, '--log-level', 'info'], path.join(dir, `daemon-${daemonStarts}.log`), env);
    daemonStarts += 1;
    const readyMs = await daemon.ready(120_000).catch((err: Error) => {
      console.log(`the daemon did not start: ${err.message.slice(0, 800)}`);
      return -1;
    });
    if (readyMs >= 0) console.log(`daemon start ${daemonStarts}: ready in ${readyMs} ms, rss=${mb(memoryOf(daemon.pid).rssKb)}MB`);
    const base = { tampers: totals.tampers, repaired: totals.latenciesMs.length };
    const report = await driftContinuously(daemon, set, {
      ratePerSecond: RATE,
      reloadEveryMs: RELOAD_S > 0 ? RELOAD_S * 1000 : Number.POSITIVE_INFINITY,
      repairDeadlineMs: 10_000,
      until: () => Date.now() < end,
      onSecond: (r) => {
        const m = memoryOf(daemon.pid);
        rss.push({ t: Date.now() - started, ...m });
        if (Date.now() - lastLine >= INTERVAL_S * 1000) {
          const repaired = base.repaired + r.latenciesMs.length;
          const rate = (repaired - repairedAtLastLine) / ((Date.now() - lastLine) / 1000);
          console.log(
            `t=${Math.round((Date.now() - started) / 1000)}s repairs=${repaired} repairs/s=${rate.toFixed(1)} rss=${mb(m.rssKb)}MB anon=${mb(m.anonKb)}MB ` +
              `tampers=${base.tampers + r.tampers} unrepaired=${totals.unrepaired.length + r.unrepaired.length} reloads=${totals.reloads + r.reloads} one-shots=${oneShots} aborts=${aborts}`,
          );
          lastLine = Date.now();
          repairedAtLastLine = repaired;
        }
      },
    });
    totals.tampers += report.tampers;
    totals.reloads += report.reloads;
    totals.unrepaired.push(...report.unrepaired);
    totals.latenciesMs.push(...report.latenciesMs);
    const ended = daemon.running ? await daemon.stop() : await daemon.ended;
    if (aborted(ended)) {
      aborts += 1;
      console.log(`ABORT: the daemon died by ${ended.signal}: ${daemon.log().slice(-800)}`);
    } else if (ended.code !== 0) {
      console.log(`the daemon exited ${ended.code}: ${daemon.log().slice(-800)}`);
    }
  }
  await oneShotLoop;
  const verify = await sh(BIN, ['audit', '--verify', '--state-dir', path.join(dir, 'daemon-state')], { env });
  const secs = (Date.now() - started) / 1000;
  const rssKb = rss.map((r) => r.rssKb).filter((x) => x > 0);
  const anonKb = rss.map((r) => r.anonKb).filter((x) => x > 0);
  totals.latenciesMs.sort((a, b) => a - b);
  const summary = {
    minutes: +(secs / 60).toFixed(2),
    files: FILES,
    tampers: totals.tampers,
    repaired: totals.latenciesMs.length,
    unrepaired: totals.unrepaired.length,
    repairsPerSecond: +(totals.latenciesMs.length / secs).toFixed(1),
    reloads: totals.reloads,
    daemonStarts,
    oneShots,
    oneShotFailures,
    aborts,
    rssMB: { first: +mb(rssKb[0] ?? 0), max: +mb(Math.max(0, ...rssKb)), last: +mb(rssKb[rssKb.length - 1] ?? 0) },
    anonMB: { first: +mb(anonKb[0] ?? 0), max: +mb(Math.max(0, ...anonKb)), last: +mb(anonKb[anonKb.length - 1] ?? 0) },
    auditChain: verify.stdout.trim() || verify.stderr.trim(),
  };
  console.log(JSON.stringify(summary));
  rmSync(dir, { recursive: true, force: true });
  return aborts === 0 && totals.unrepaired.length === 0 && verify.code === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
