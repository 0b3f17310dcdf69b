// The agent binary's composition root: builds the host adapters (path journal, file watches), the engine and the agent
// for every command. The daemon (daemon.ts) adds the store's recovery, the controller link, metrics and signals on top.
import { systemClock, type Clock } from '../lib/clock.js';
import type { Logger } from '../lib/log.js';
import { Agent } from './agent.js';
import { Engine } from './engine/engine.js';
import { Journal } from './engine/journal.js';
import { DirWatchHub } from './host/fswatch.js';
import type { HostContext } from './resources/resource.js';
import type { AgentSettings } from './settings.js';
import type { AgentStore } from './store/store.js';

export interface ComposeOptions {
  settings: AgentSettings;
  log: Logger;
  clock?: Clock;
  /** Absent for the read-only one-shot `check`, which records nothing. */
  store?: AgentStore;
}

export function composeAgent(opts: ComposeOptions): Agent {
  const clock = opts.clock ?? systemClock;
  const { log, store, settings } = opts;
  const journal = new Journal(store, log);
  let engine: Engine | undefined;
  // inotify can lose events (a queue overflow, the watch limit): the engine then looks at everything again.
  const hub = new DirWatchHub(log, () => engine?.enqueueAll('resync'));
  const host: HostContext = { log, clock, fsWatch: hub, settings, journal, adapters: new Map() };
  engine = new Engine({
    host,
    clock,
    log,
    ...(store ? { store } : {}),
    ...(settings.reconcileTimeoutMs !== undefined ? { reconcileTimeoutMs: settings.reconcileTimeoutMs } : {}),
  });
  return new Agent({
    engine,
    host,
    log,
    clock,
    ...(store ? { store } : {}),
    closeHost: async () => {
      await hub.close();
      journal.flush();
    },
  });
}
