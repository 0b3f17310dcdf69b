// Prometheus metrics of one agent (served with --metrics-listen): events by kind, resources, engine counters.
import { Counter, Gauge, Registry } from 'prom-client';
import type { Agent } from './agent.js';

export class AgentMetrics {
  private readonly registry = new Registry();

  /** `strays` counts errors nothing else caught (the daemon's last net): each one is a bug to report. */
  constructor(agent: Agent, strays?: { count(): number }) {
    const events = new Counter({ name: 'homeostat_agent_events_total', help: 'Audit events recorded, by event', labelNames: ['event'], registers: [this.registry] });
    agent.onAudit((e) => events.inc({ event: e.event }));
    new Gauge({
      name: 'homeostat_agent_resources',
      help: 'Resources under management',
      registers: [this.registry],
      collect() {
        this.set(agent.engine.resourceIds().length);
      },
    });
    new Gauge({
      name: 'homeostat_agent_enforcement_paused',
      help: '1 while enforcement is paused (signed baselines expired)',
      registers: [this.registry],
      collect() {
        this.set(agent.engine.isPaused ? 1 : 0);
      },
    });
    new Gauge({
      name: 'homeostat_agent_engine_count',
      help: 'Engine counts since start (reconciles, repairs, failures, timeouts, records not written, listeners failed), by counter',
      labelNames: ['counter'],
      registers: [this.registry],
      collect() {
        for (const [k, v] of Object.entries(agent.engine.stats)) this.set({ counter: k }, v);
      },
    });
    new Gauge({
      name: 'homeostat_agent_uncaught_errors',
      help: 'Errors no part of the agent caught, logged and contained since start (each one is a bug)',
      registers: [this.registry],
      collect() {
        this.set(strays?.count() ?? 0);
      },
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}
