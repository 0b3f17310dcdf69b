// What the API routes may use: the controller's services, wired once by the composition root (controller/core.ts).
import type { Clock } from '../../lib/clock.js';
import type { Logger } from '../../lib/log.js';
import type { BaselineService } from '../baselines.js';
import type { Enrollment } from '../enrollment.js';
import type { EscalationService } from '../escalations.js';
import type { EventIngest } from '../events.js';
import type { AgentGateway } from '../gateway/gateway.js';
import type { ControllerMetrics } from '../metrics.js';
import type { PlanService } from '../plans.js';
import type { PolicyService } from '../policies.js';
import type { RolloutEngine } from '../rollouts/engine.js';
import type { ControllerStore } from '../store/types.js';
import type { TuningService } from '../tuning/service.js';

export interface ApiContext {
  store: ControllerStore;
  baselines: BaselineService;
  policies: PolicyService;
  enrollment: Enrollment;
  escalations: EscalationService;
  events: EventIngest;
  gateway: AgentGateway;
  rollouts: RolloutEngine;
  plans: PlanService;
  tuning: TuningService;
  metrics: ControllerMetrics;
  clock: Clock;
  log: Logger;
  adminToken: string;
}
