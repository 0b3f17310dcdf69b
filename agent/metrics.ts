// Prometheus metrics of one agent (served with --metrics-listen): events by kind, resources, engine counters.
import { Counter, Gauge, Registry } from 'prom-client';
import type { Agent } from './agent.js';

export class AgentMetrics {
  private readonly registry = new Registry();

  constructor(agent: Agent) {
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
      help: 'Engine counts since start (reconciles, repairs, failures, records not written), by counter',
      labelNames: ['counter'],
      registers: [this.registry],
      collect() {
        for (const [k, v] of Object.entries(agent.engine.stats)) this.set({ counter: k }, v);
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
