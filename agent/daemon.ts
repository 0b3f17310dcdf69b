// The daemon (`homeostat-agent run`) and its composition root: opens (and if need be rebuilds) the store, composes the
// agent, starts the controller link and metrics, and owns the signals — SIGHUP reloads, SIGTERM and SIGINT stop. Whatever
// goes wrong later (a bad baseline, a full disk, a damaged cache, a throw nobody caught) is recorded or logged while the
// last good baselines keep being enforced; the process ends only when asked to.
import { createServer, type Server } from 'node:http';
import { parseBaseline, loadBaselineFiles } from '../lib/baseline/index.js';
import { loadPolicyFiles, parsePolicy, PolicyInvalidError } from '../lib/policy/index.js';
import { BaselineInvalidError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Baseline } from '../lib/baseline/types.js';
import { activeLocalPolicies, type Agent, type BaselineOrigin } from './agent.js';
import { Actors } from './actor/actors.js';
import { composeAgent } from './compose.js';
import type { AgentConfig } from './config.js';
import { serveControl } from './control/server.js';
import type { RunningLink } from './link/index.js';
import { compactHeapSoon } from './host/heap.js';
import { AgentMetrics } from './metrics.js';
import { openDaemonStore } from './store/recovery.js';
import { DEFAULT_AUDIT_RETENTION_MS, type AgentStore } from './store/store.js';

export interface Daemon {
  agent: Agent;
  /** Resolves with the exit code once the daemon has stopped. */
  done: Promise<number>;
  stop(): Promise<void>;
}

export interface CachedSet {
  baselines: Baseline[];
  versions: Record<string, number>;
  signedBy: string | undefined;
}

/** Baselines cached by an earlier run, per origin: what an agent enforces when it starts without them at hand. */
export function cachedBaselines(store: AgentStore, log: Logger): Record<BaselineOrigin, CachedSet> {
  const out: Record<BaselineOrigin, CachedSet> = { local: { baselines: [], versions: {}, signedBy: undefined }, controller: { baselines: [], versions: {}, signedBy: undefined } };
  let stored;
  try {
    stored = store.getActive();
  } catch (err) {
    log.error({ err: errorMessage(err) }, 'cached baselines unreadable');
    return out;
  }
  for (const b of stored) {
    try {
      const set = out[b.origin];
      set.baselines.push(parseBaseline(b.text, { file: `cache:${b.name}@${b.version}`, sources: b.sources }));
      set.versions[b.name] = b.version;
      if (b.origin === 'controller') set.signedBy = b.signedBy ?? undefined;
    } catch (err) {
      log.error({ baseline: b.name, version: b.version, err: errorMessage(err) }, 'cached baseline unreadable; not enforced');
    }
  }
  return out;
}

/** Runs the daemon until SIGTERM or SIGINT; resolves with its exit code. */
export async function runDaemon(config: AgentConfig, log: Logger): Promise<number> {
  // Armed before anything else: without a listener, a SIGTERM that follows READY=1 at once would end the process by the
  // default action instead of stopping it. One that arrives while starting stops it once started.
  let daemon: Daemon | undefined;
  let stopAsked = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    log.info({ signal }, 'stopping');
    stopAsked = true;
    if (daemon) void daemon.stop();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  daemon = await startDaemon(config, log);
  if (stopAsked) void daemon.stop();
  return daemon.done;
}

export async function startDaemon(config: AgentConfig, log: Logger): Promise<Daemon> {
  const uncaught = containStrays(log);
  const { store, recovered } = openDaemonStore(config.settings, log);
  bestEffort(log, 'daemon pid not recorded', () => {
    store.setMeta('daemon.pid', String(process.pid));
    store.setMeta('daemon.startedAt', String(Date.now()));
  });
  const agent = composeAgent({ settings: config.settings, log, store });

  const loadFromFiles = async (trigger: 'startup' | 'reload'): Promise<boolean> => {
    try {
      await agent.activate(loadBaselineFiles(config.baselines), { origin: 'local' }, trigger);
      return true;
    } catch (err) {
      const detail = err instanceof BaselineInvalidError ? err.describe() : errorMessage(err);
      log.error({ err: detail }, 'baseline rejected, keeping the last good one');
      agent.recordRejectedBaseline(null, detail, trigger);
      return false;
    }
  };
  const activateCached = async (origin: BaselineOrigin, set: CachedSet): Promise<void> => {
    if (set.baselines.length === 0) return;
    try {
      log.info({ origin, baselines: Object.keys(set.versions) }, 'enforcing cached baselines');
      await agent.activate(set.baselines, { origin, versions: set.versions, ...(set.signedBy !== undefined ? { signedBy: set.signedBy } : {}) }, 'startup');
    } catch (err) {
      log.error({ origin, err: errorMessage(err) }, 'cached baselines not enforced');
      agent.recordRejectedBaseline(null, `cached ${origin} baselines: ${errorMessage(err)}`, 'startup');
    }
  };

  const loadPolicies = async (trigger: 'startup' | 'reload'): Promise<boolean> => {
    try {
      await agent.setLocalPolicies(loadPolicyFiles(config.policies), trigger);
      return true;
    } catch (err) {
      const detail = err instanceof PolicyInvalidError ? err.describe() : errorMessage(err);
      log.error({ err: detail }, 'policy rejected, keeping the last good one');
      // A set the agent itself refused (a name taken by the controller) it has recorded already.
      if (err instanceof PolicyInvalidError) agent.engine.recordAgentEvent('policy_rejected', trigger, detail);
      return false;
    }
  };
  if (config.policies.length > 0 && !(await loadPolicies('startup'))) {
    // The last good versions of the host's own policy files, from the cache, until the files are fixed (SIGHUP).
    const cachedPolicies = activeLocalPolicies(store).flatMap((v) => {
      try {
        return [parsePolicy(v.text, { file: v.file })];
      } catch (err) {
        log.error({ file: v.file, err: errorMessage(err) }, 'cached policy unreadable; not active');
        return [];
      }
    });
    if (cachedPolicies.length > 0) {
      log.info({ policies: cachedPolicies.map((p) => p.name) }, 'enforcing cached policies');
      await agent.setLocalPolicies(cachedPolicies, 'startup').catch((err: unknown) => log.error({ err: errorMessage(err) }, 'cached policies not active'));
    }
  }

  // Who made each drift: the audit subsystem when auditd runs, said plainly when it does not.
  const actors = new Actors({ log, key: config.settings.auditKey, scope: config.settings.systemdScope, selfPid: process.pid });
  agent.engine.setActors(actors);
  // Starting attribution removes the rules a killed run left (one kernel grace period each): enforcement does not wait
  // for it, watch updates do. One watch update at a time: two overlapping ones would each add the same rules.
  let watching: Promise<void> = actors.start().then(
    (attribution) => {
      const actorsState = attribution.state === 'active' ? `audit (${attribution.logFile})` : `unknown: ${attribution.state === 'unavailable' ? attribution.reason : 'not started'}`;
      if (attribution.state === 'active') log.info({ logFile: attribution.logFile }, 'actors of file changes read from the audit log');
      else log.warn({ reason: actorsState }, 'auditd is not available: actors of file and directory changes are unknown');
      bestEffort(log, 'actor state not recorded', () => store.setMeta('actors.state', actorsState));
    },
    (err: unknown) => log.warn({ err: errorMessage(err) }, 'actors of file changes not started'),
  );
  const watchManaged = (): Promise<void> =>
    (watching = watching.then(async () => {
      try {
        await actors.watch(agent.engine.resourceIds().map(splitId));
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'managed resources not watched for actors');
      }
    }));
  agent.afterActivation = () => {
    compactHeapSoon();
    void watchManaged();
  };

  const cached = cachedBaselines(store, log);
  // The controller's last signed baselines go first: the local files cannot take a resource the controller assigned.
  await activateCached('controller', cached.controller);
  if (config.baselines.length > 0) {
    if (await loadFromFiles('startup')) {
      const configured = new Set(agent.activeBaselines().filter((a) => a.origin === 'local').map((a) => a.name));
      forgetUnconfigured(agent, cached.local, configured);
    } else {
      await activateCached('local', cached.local);
    }
  } else if (!config.controller) {
    log.warn('no baseline files and no controller: this agent enforces nothing (pass --baseline FILE, --controller URL, or list them in the config file)');
    forgetUnconfigured(agent, cached.local, new Set());
  } else if (cached.local.baselines.length > 0) {
    // Managed and given no files: the host's own baselines of an earlier standalone run are not enforced any more, so the
    // controller can take over the names and resources they had (docs/controller.md, "From standalone to managed").
    const why = 'the agent is managed by a controller and given no baseline files of its own';
    log.warn({ baselines: Object.keys(cached.local.versions) }, 'cached local baselines not enforced: managed by a controller and given no baseline files');
    agent.dropCached('local', Object.entries(cached.local.versions).map(([name, version]) => ({ name, version, signedBy: undefined })), (b) => `${b.name} v${b.version} (local) no longer enforced: ${why}`);
  }
  closeInterrupted(agent, store, log);
  holdEscalated(agent, store, log);
  // The audit rules go in while the start-up pass enforces (each activation asked for them): enforcement never waits for
  // attribution. Ready waits for both, and the pass created the folders of managed files that had none, so their paths
  // can be watched now too.
  await agent.start();
  await watchManaged();
  if (recovered) agent.engine.recordAgentEvent('store_recovered', 'startup', recovered);
  // Damage found later, while writing, is rebuilt in place by the store; it says so here.
  store.onRecovered = (description) => agent.engine.recordAgentEvent('store_recovered', null, description);
  const retention = keepAuditRetention(store, config, log);

  let link: RunningLink | undefined;
  if (config.controller) {
    const { startLink } = await import('./link/index.js');
    link = await startLink(agent, {
      url: config.controller,
      ...(config.token ? { token: config.token } : {}),
      stateDir: config.settings.stateDir,
      labels: config.settings.labels,
      insecureHttp: config.insecureHttp,
      log,
    });
  }

  // Local commands (forget, approve, reject) reach the running daemon here; see agent/control/.
  const control = await serveControl(config.settings.stateDir, {
    store,
    agent,
    live: true,
    configuredFiles: config.baselines,
    stopEnforcing: async (origin, name) => {
      const set = cachedBaselines(store, log)[origin];
      const { [name]: _gone, ...versions } = set.versions;
      await agent.activate(set.baselines.filter((b) => b.name !== name), { origin, versions, ...(set.signedBy !== undefined ? { signedBy: set.signedBy } : {}) }, 'manual');
    },
    ...(link ? { link } : {}),
  }, log);

  let metricsServer: Server | undefined;
  if (config.metricsListen) metricsServer = await serveMetrics(config.metricsListen, new AgentMetrics(agent, uncaught), log);

  // Armed before readiness is announced: a SIGHUP that follows READY=1 at once must reload, not end the process.
  const onHup = (): void => {
    if (config.policies.length > 0) {
      log.info('reloading policies');
      void loadPolicies('reload');
    }
    if (config.baselines.length === 0) return;
    log.info('reloading baselines');
    void loadFromFiles('reload');
  };
  process.on('SIGHUP', onHup);
  const { notifyReady, notifyStopping, startWatchdog } = await import('./host/sdnotify.js');
  const stopWatchdog = startWatchdog();
  compactHeapSoon();
  notifyReady(`enforcing ${agent.engine.resourceIds().length} resources`);
  log.info({ resources: agent.engine.resourceIds().length, baselines: agent.activeBaselines().map((b) => `${b.name}@${b.version}`) }, 'agent ready');

  let resolveDone: (code: number) => void = () => undefined;
  const done = new Promise<number>((r) => (resolveDone = r));
  // The engine's poll and resync timers are unref'd; with nothing else open (only sysctls, no controller) the process would
  // simply end. The daemon lives until stop().
  const keepAlive = setInterval(() => undefined, 1 << 30);
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      clearInterval(keepAlive);
      notifyStopping();
      stopWatchdog();
      process.off('SIGHUP', onHup);
      retention.stop();
      await bestEffortAsync(log, 'control socket not closed cleanly', () => control?.close());
      await bestEffortAsync(log, 'controller link did not stop cleanly', () => link?.stop());
      metricsServer?.close();
      await bestEffortAsync(log, 'engine did not stop cleanly', () => agent.stop());
      // The audit rules go with the agent: none is left watching for a process that is gone.
      await bestEffortAsync(log, 'audit rules not removed', () => actors.stop());
      bestEffort(log, 'store not closed cleanly', () => store.close());
      uncaught.release();
      log.info('agent stopped');
      resolveDone(0);
    })();
    return stopping;
  };
  return { agent, done, stop };
}

/**
 * Local baselines are the files configured now: one cached from a file that is no longer configured (its `baselines:`
 * entry removed) stops being enforced, and the audit says so. Only a controller's assignments outlive their source; a
 * cached copy of a local baseline is only the fallback for a configured file that cannot be loaded.
 */
function forgetUnconfigured(agent: Agent, cached: CachedSet, configured: Set<string>): void {
  const gone = Object.entries(cached.versions).filter(([name]) => !configured.has(name));
  if (gone.length === 0) return;
  agent.dropCached(
    'local',
    gone.map(([name, version]) => ({ name, version, signedBy: undefined })),
    (b) => `${b.name} v${b.version}: its file is no longer configured (baselines in the config file, or --baseline)`,
  );
}

/**
 * A last net under promises and callbacks that lost their owner: logged and counted (agent metrics), never the end of
 * enforcement. Every background task is meant to catch its own errors; this only keeps a missed one from ending the host's.
 */
function containStrays(log: Logger): { count(): number; release(): void } {
  let n = 0;
  const onRejection = (reason: unknown): void => {
    n++;
    log.error({ err: errorMessage(reason), stack: reason instanceof Error ? reason.stack : undefined }, 'unhandled rejection');
  };
  const onException = (err: Error): void => {
    n++;
    log.error({ err: errorMessage(err), stack: err.stack }, 'uncaught exception');
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return {
    count: () => n,
    release: () => {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    },
  };
}

/**
 * Drifts escalated by an earlier run (or a one-shot `apply`) and not answered keep waiting for a human in this one,
 * whatever version is enforced now: the start-up pass does not repair them.
 */
function holdEscalated(agent: Agent, store: AgentStore, log: Logger): void {
  try {
    const waiting = store.openEscalations().filter((e) => e.cause === 'decision');
    const n = agent.engine.holdForHuman(waiting);
    if (n > 0) log.warn({ escalations: n }, 'escalated drifts wait for a human (homeostat-agent escalations, or the controller)');
  } catch (err) {
    log.warn({ err: errorMessage(err) }, 'open escalations not read; their drifts are decided afresh');
  }
}

/**
 * A killed run leaves its in-flight repairs recorded as `drift_detected` with no outcome. The start-up pass has looked
 * at those resources again; each open drift is closed with `repair_interrupted`, so no record stays without an answer.
 */
function closeInterrupted(agent: Agent, store: AgentStore, log: Logger): void {
  try {
    for (const open of store.openDrifts()) {
      // A drift only reported (monitor mode, or enforcement paused) has no outcome to wait for.
      if (open.paused || agent.isReportOnly(open.resource)) continue;
      agent.engine.recordAgentEvent(
        'repair_interrupted',
        'startup',
        `the agent stopped before it finished the repair begun at record ${open.seq}; the start-up pass looked again`,
        open.baseline ?? undefined,
        open.resource,
      );
    }
  } catch (err) {
    log.warn({ err: errorMessage(err) }, 'interrupted repairs not looked for');
  }
}

/** Removes delivered audit records past their retention, at start and then every hour; never undelivered ones. */
function keepAuditRetention(store: AgentStore, config: AgentConfig, log: Logger): { stop(): void } {
  const maxAgeMs = config.settings.auditRetentionMs ?? DEFAULT_AUDIT_RETENTION_MS;
  const run = (): void => {
    store
      .retainAudit(maxAgeMs, config.controller !== undefined)
      .then((n) => {
        if (n > 0) log.info({ removed: n, olderThanDays: Math.round(maxAgeMs / 86_400_000) }, 'old audit records removed');
      })
      .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'audit retention failed; tried again in an hour'));
  };
  const first = setTimeout(run, 120_000);
  const hourly = setInterval(run, 3_600_000);
  first.unref();
  hourly.unref();
  return {
    stop: () => {
      clearTimeout(first);
      clearInterval(hourly);
    },
  };
}

/** `file:/etc/motd` → kind `file`, name `/etc/motd`. */
function splitId(id: string): { kind: string; name: string } {
  const colon = id.indexOf(':');
  return { kind: id.slice(0, colon), name: id.slice(colon + 1) };
}

function bestEffort(log: Logger, what: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    log.error({ err: errorMessage(err) }, what);
  }
}

async function bestEffortAsync(log: Logger, what: string, fn: () => Promise<void> | undefined): Promise<void> {
  try {
    await fn();
  } catch (err) {
    log.error({ err: errorMessage(err) }, what);
  }
}

async function serveMetrics(listen: string, metrics: AgentMetrics, log: Logger): Promise<Server> {
  const idx = listen.lastIndexOf(':');
  const host = listen.slice(0, idx) || '127.0.0.1';
  const port = Number(listen.slice(idx + 1));
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    metrics
      .render()
      .then((body) => res.writeHead(200, { 'content-type': metrics.contentType }).end(body))
      .catch((err: unknown) => res.writeHead(500).end(errorMessage(err)));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  log.info({ listen }, 'metrics listening');
  return server;
}
