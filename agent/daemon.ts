// The daemon (`homeostat-agent run`): enforces continuously until SIGTERM, reloads on SIGHUP, and keeps the last good
// baselines when a new one is bad or the controller is away.
import { createServer, type Server } from 'node:http';
import { parseBaseline, loadBaselineFiles } from '../lib/baseline/index.js';
import { sourcesFromMap } from '../lib/baseline/sources.js';
import { BaselineInvalidError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import type { Baseline } from '../lib/baseline/types.js';
import { Agent } from './agent.js';
import type { AgentConfig } from './config.js';
import { AgentStore } from './store/store.js';
import { AgentMetrics } from './metrics.js';

export interface Daemon {
  agent: Agent;
  /** Resolves with the exit code once the daemon has stopped. */
  done: Promise<number>;
  stop(): Promise<void>;
}

/**
 * Baselines cached by an earlier run: what an agent enforces when it starts without its controller (`only: 'controller'`),
 * or when its configured files cannot be loaded (all of them: the last good set).
 */
export function cachedBaselines(store: AgentStore, only?: 'controller'): { baselines: Baseline[]; versions: Record<string, number>; origin: 'local' | 'controller' } {
  const baselines: Baseline[] = [];
  const versions: Record<string, number> = {};
  let origin: 'local' | 'controller' = 'local';
  for (const b of store.getActive()) {
    if (only && b.origin !== only) continue;
    baselines.push(
      parseBaseline(b.text, {
        file: `cache:${b.name}@${b.version}`,
        readSource: sourcesFromMap(b.sources, (rel) => `source ${rel} missing from the cached version`),
      }),
    );
    versions[b.name] = b.version;
    if (b.origin === 'controller') origin = 'controller';
  }
  return { baselines, versions, origin };
}

export async function startDaemon(config: AgentConfig, log: Logger): Promise<Daemon> {
  const store = AgentStore.open(config.settings.stateDir);
  store.setMeta('daemon.pid', String(process.pid));
  store.setMeta('daemon.startedAt', String(Date.now()));
  const agent = new Agent({ settings: config.settings, log, store });

  const loadFromFiles = async (trigger: 'startup' | 'manual'): Promise<boolean> => {
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

  if (config.baselines.length > 0) {
    if (!(await loadFromFiles('startup'))) {
      const cached = cachedBaselines(store);
      await agent.activate(cached.baselines, { origin: cached.origin, versions: cached.versions }, 'startup');
    } else {
      forgetUnconfigured(store, agent, new Set(agent.activeBaselines().map((b) => b.name)), log);
    }
  } else {
    forgetUnconfigured(store, agent, new Set(), log);
    const cached = cachedBaselines(store, 'controller');
    if (cached.baselines.length > 0) {
      log.info({ baselines: Object.keys(cached.versions) }, 'enforcing cached baselines');
      await agent.activate(cached.baselines, { origin: cached.origin, versions: cached.versions }, 'startup');
    }
  }
  await agent.start();

  let link: { stop(): Promise<void> } | undefined;
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

  let metricsServer: Server | undefined;
  if (config.metricsListen) metricsServer = await serveMetrics(config.metricsListen, new AgentMetrics(agent), log);

  // Armed before readiness is announced: a SIGHUP that follows READY=1 at once must reload, not end the process.
  const onHup = (): void => {
    if (config.baselines.length === 0) return;
    log.info('reloading baselines');
    void loadFromFiles('manual');
  };
  process.on('SIGHUP', onHup);
  const { notifyReady, notifyStopping, startWatchdog } = await import('./host/sdnotify.js');
  const stopWatchdog = startWatchdog();
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
      await link?.stop();
      metricsServer?.close();
      await agent.stop();
      store.close();
      log.info('agent stopped');
      resolveDone(0);
    })();
    return stopping;
  };
  return { agent, done, stop };
}

/**
 * Local baselines are the files configured now: one cached from a file that is no longer configured (its `baselines:`
 * entry removed) stops being enforced, and the audit says so. Only a controller's assignments outlive their source.
 */
function forgetUnconfigured(store: AgentStore, agent: Agent, configured: Set<string>, log: Logger): void {
  for (const b of store.getActive()) {
    if (b.origin !== 'local' || configured.has(b.name)) continue;
    store.deactivate(b.name);
    agent.engine.recordAgentEvent('baseline_removed', 'startup', `${b.name} v${b.version}: its file is no longer configured (baselines in the config file, or --baseline)`, b);
    log.info({ baseline: b.name, version: b.version }, 'local baseline no longer configured: not enforced');
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
