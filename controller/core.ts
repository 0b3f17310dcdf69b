// The controller's composition root: every subsystem wired once (store, keys, services, gateway, HTTP app), no socket yet.
import path from 'node:path';
import { systemClock, type Clock } from '../lib/clock.js';
import { HsError, errorMessage } from '../lib/errors.js';
import { silentLogger, type Logger } from '../lib/log.js';
import { publicKeyFingerprint, type SigningKey } from '../lib/signing.js';
import { BaselineService, DEFAULT_SIGNATURE_VALIDITY_MS } from './baselines.js';
import { Enrollment } from './enrollment.js';
import { EscalationService, type EscalationLimits } from './escalations.js';
import type { EventLimits } from './event-limits.js';
import { EventIngest } from './events.js';
import { AgentGateway, type GatewayOptions } from './gateway/gateway.js';
import { createApp, type App, type AppOptions } from './http/app.js';
import { ensureDataDir, loadAdminToken } from './identity.js';
import { ControllerMetrics } from './metrics.js';
import { PlanService } from './plans.js';
import { PolicyService } from './policies.js';
import { RolloutEngine, type RolloutEngineOptions } from './rollouts/engine.js';
import { openSigningKey } from './signing-key.js';
import { Retention, DEFAULT_RETENTION, type RetentionOptions } from './store/retention.js';
import { SqliteControllerStore } from './store/sqlite.js';
import type { ControllerStore } from './store/types.js';
import { FleetPolicyPublisher } from './tuning/publisher.js';
import { TuningService } from './tuning/service.js';
import type { AutotuneMode } from './tuning/settings.js';

export interface CoreOptions {
  dataDir: string;
  /** `sqlite:PATH` or a plain path (default DATA_DIR/controller.db); `postgres://` is reserved for the PostgreSQL store. */
  database?: string;
  adminToken?: string;
  /** The TLS certificate fingerprint put in enrollment tokens; null when serving plain HTTP. */
  fingerprint: string | null;
  signatureValidityMs?: number;
  /** Make a new signing key even though agents pinned the current (or lost) one; they must all be enrolled again. */
  rotateSigningKey?: boolean;
  gateway?: Partial<GatewayOptions>;
  rollouts?: Partial<RolloutEngineOptions>;
  /** How the HTTP app is served (server.ts); absent for an app used only through inject(). */
  http?: AppOptions;
  /** Per-agent ingest rate. */
  events?: Partial<EventLimits>;
  escalations?: Partial<EscalationLimits>;
  retention?: Partial<RetentionOptions>;
  /** `--autotune`: sets bounded autotuning on or off at start (absent: the stored setting stands, off by default). */
  autotune?: AutotuneMode;
  clock?: Clock;
  log?: Logger;
}

export interface ControllerCore {
  store: ControllerStore;
  signingKey: SigningKey;
  adminToken: string;
  adminTokenFile: string | null;
  enrollment: Enrollment;
  baselines: BaselineService;
  policies: PolicyService;
  events: EventIngest;
  escalations: EscalationService;
  gateway: AgentGateway;
  rollouts: RolloutEngine;
  plans: PlanService;
  tuning: TuningService;
  metrics: ControllerMetrics;
  retention: Retention;
  app: App;
  close(): Promise<void>;
}

export function openStore(dataDir: string, database: string | undefined): ControllerStore {
  if (database === undefined || database === '') return new SqliteControllerStore(path.join(dataDir, 'controller.db'));
  if (/^postgres(ql)?:\/\//.test(database)) {
    throw new HsError('HS_CONFIG', 'the PostgreSQL store is not built yet; run with the embedded SQLite default (omit --database)');
  }
  return new SqliteControllerStore(database.replace(/^sqlite:/, ''));
}

export async function createControllerCore(opts: CoreOptions): Promise<ControllerCore> {
  const clock = opts.clock ?? systemClock;
  const log = opts.log ?? silentLogger;
  ensureDataDir(opts.dataDir);
  const admin = loadAdminToken(opts.dataDir, opts.adminToken);
  const store = openStore(opts.dataDir, opts.database);
  let signingKey: SigningKey;
  try {
    signingKey = await openSigningKey(opts.dataDir, store, { rotate: opts.rotateSigningKey ?? false, clock, log });
  } catch (err) {
    await store.close();
    throw err;
  }
  const metrics = new ControllerMetrics();
  const enrollment = new Enrollment(store, clock, opts.fingerprint, publicKeyFingerprint(signingKey.publicKey));
  const baselines = new BaselineService(store, signingKey, clock, log, opts.signatureValidityMs ?? DEFAULT_SIGNATURE_VALIDITY_MS);
  await baselines.load();
  const policies = new PolicyService(store, signingKey, clock, log, opts.signatureValidityMs ?? DEFAULT_SIGNATURE_VALIDITY_MS);
  await policies.load();
  const events = new EventIngest(store, clock, log, opts.events);
  events.observer = {
    fieldCut: (field) => metrics.eventFieldsCut.inc({ field }),
    deferred: (n) => metrics.eventsDeferred.inc(n),
    duplicates: (n) => metrics.eventsDuplicate.inc(n),
  };
  const escalations = new EscalationService(store, signingKey, clock, log, opts.escalations);
  escalations.onRefused = (reason) => metrics.escalationsRefused.inc({ reason });
  await escalations.load();
  events.onInserted((inserted) => {
    metrics.eventsPersisted.inc(inserted.length);
    return escalations.observe(inserted);
  });
  const gateway = new AgentGateway(
    { store, enrollment, baselines, policies, events, escalations, metrics, log, clock, signingPublicKey: signingKey.publicKey, signingKeyId: signingKey.keyId },
    opts.gateway,
  );
  // Before any agent connects: a restarted controller resumes its rollouts and hands out what their waves reached.
  const rollouts = new RolloutEngine({ store, baselines, policies, gateway, events, escalations, clock, log }, { tickMs: 250, ...opts.rollouts });
  await rollouts.load();
  const plans = new PlanService({ store, baselines, gateway, clock, log, signingKey });
  const tuning = new TuningService({ store, publisher: new FleetPolicyPublisher({ store, policies, rollouts, clock, log }), clock, log });
  await tuning.start(opts.autotune);
  const app = createApp({ store, baselines, policies, enrollment, escalations, events, gateway, rollouts, plans, tuning, metrics, clock, log, adminToken: admin.token }, opts.http);
  // Renewal keeps signatures fresh for connected agents; checking hourly is plenty against a validity of days.
  const validity = opts.signatureValidityMs ?? DEFAULT_SIGNATURE_VALIDITY_MS;
  const renew = async (): Promise<void> => {
    await baselines.renewDue();
    await policies.renewDue();
  };
  const renewal = setInterval(
    () => void renew().catch((err: unknown) => log.error({ err: errorMessage(err) }, 'signature renewal failed')),
    Math.min(3_600_000, Math.max(1000, validity / 4)),
  ).unref();
  await renew();
  const retention = new Retention(store, clock, log, { ...DEFAULT_RETENTION, ...opts.retention });
  retention.onPass = (r) => {
    metrics.eventsDeleted.inc({ reason: 'age' }, r.eventsAged);
    metrics.eventsDeleted.inc({ reason: 'quota' }, r.eventsOverQuota);
    metrics.escalationsDeleted.inc(r.escalations);
  };
  retention.start();
  return {
    store,
    signingKey,
    adminToken: admin.token,
    adminTokenFile: admin.file,
    enrollment,
    baselines,
    policies,
    events,
    escalations,
    gateway,
    rollouts,
    plans,
    tuning,
    metrics,
    retention,
    app,
    async close() {
      clearInterval(renewal);
      await retention.close();
      plans.close();
      await tuning.close();
      await rollouts.close();
      await gateway.close();
      await events.flush();
      await store.close();
      await app.close();
    },
  };
}
