// The controller's Prometheus metrics, on a registry of its own so several controllers (tests) never share counters.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export class ControllerMetrics {
  readonly registry = new Registry();
  readonly agentsConnected = new Gauge({ name: 'homeostat_agents_connected', help: 'Agents connected to this controller now', registers: [this.registry] });
  readonly enrollments = new Counter({ name: 'homeostat_enrollments_total', help: 'Enrollment attempts by result', labelNames: ['result'], registers: [this.registry] });
  readonly connections = new Counter({ name: 'homeostat_agent_connections_total', help: 'Agent connections by result', labelNames: ['result'], registers: [this.registry] });
  readonly framesRejected = new Counter({ name: 'homeostat_frames_rejected_total', help: 'Agent frames refused (malformed, oversized, out of order)', labelNames: ['reason'], registers: [this.registry] });
  readonly eventsReceived = new Counter({ name: 'homeostat_events_received_total', help: 'Events received from agents, duplicates included', registers: [this.registry] });
  readonly eventsPersisted = new Counter({ name: 'homeostat_events_persisted_total', help: 'Events newly persisted', registers: [this.registry] });
  readonly eventsDeferred = new Counter({ name: 'homeostat_events_deferred_total', help: 'Events left with their agent by its ingest rate, to be sent again', registers: [this.registry] });
  readonly eventFieldsCut = new Counter({ name: 'homeostat_event_fields_cut_total', help: 'Event fields cut to their size limit at ingest, by field', labelNames: ['field'], registers: [this.registry] });
  readonly eventsDeleted = new Counter({ name: 'homeostat_events_deleted_total', help: 'Events removed by retention: past the age limit (age) or past the agent quota (quota)', labelNames: ['reason'], registers: [this.registry] });
  readonly escalationsRefused = new Counter({ name: 'homeostat_escalations_refused_total', help: 'Escalating events that opened no escalation: resource not assigned to the agent, or its open cap reached', labelNames: ['reason'], registers: [this.registry] });
  readonly escalationsDeleted = new Counter({ name: 'homeostat_escalations_deleted_total', help: 'Decided escalations removed by retention', registers: [this.registry] });
  readonly eventsDuplicate = new Counter({ name: 'homeostat_events_duplicate_total', help: 'Events received again and dropped', registers: [this.registry] });
  readonly agentErrors = new Counter({ name: 'homeostat_agent_errors_total', help: 'Errors reported by agents, by code', labelNames: ['code'], registers: [this.registry] });
  readonly assignmentsSent = new Counter({ name: 'homeostat_assignments_sent_total', help: 'Baseline assignments sent to agents', registers: [this.registry] });
  readonly baselineRejections = new Counter({ name: 'homeostat_baseline_rejections_total', help: 'Baselines agents refused, by code', labelNames: ['code'], registers: [this.registry] });
  readonly httpRequests = new Counter({ name: 'homeostat_http_requests_total', help: 'API requests by route pattern and status', labelNames: ['route', 'status'], registers: [this.registry] });
  readonly httpClientErrors = new Counter({ name: 'homeostat_http_client_errors_total', help: 'Connections closed before routing: malformed requests (400), timeouts (408), oversized headers (431)', labelNames: ['status'], registers: [this.registry] });
  readonly connectionsRefused = new Counter({ name: 'homeostat_connections_refused_total', help: 'Connections closed by the pre-authentication limits: per address, in total, the oldest stalled one making room for a new one (evicted), or an agent connection without a hello in time (timeout)', labelNames: ['reason'], registers: [this.registry] });
  readonly connectionsUnauthenticated = new Gauge({ name: 'homeostat_connections_unauthenticated', help: 'Open connections that have not yet shown an operator or agent credential', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'homeostat_controller_' });
  }
}
