// An agent speaking the real protocol over a real websocket, driven by a test: enrolls with a join token, sends event
// batches and reads their acknowledgements, delivers a list of events the way the agent's outbox does.
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { PROTOCOL_VERSION, decodeControllerMessage, encodeAgentMessage, type HostFacts, type WireEvent } from '../../proto/codec.js';

/** An agent speaking the real protocol, driven by the test. */
export class WireAgent {
  private acks: ((upto: number) => void)[] = [];
  id = '';
  private constructor(private readonly ws: WebSocket) {}

  static async enroll(url: string, token: string, labels: Record<string, string> = {}, facts?: Partial<HostFacts>): Promise<WireAgent> {
    const ws = new WebSocket(`${url}/agent`, { perMessageDeflate: false, rejectUnauthorized: false });
    const a = new WireAgent(ws);
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => ws.send(encodeAgentMessage({ hello: { protocolVersion: PROTOCOL_VERSION, agentVersion: 'test', joinToken: token, labels, ...(facts ? { facts: { ...NO_FACTS, ...facts } } : {}) } })));
      ws.on('message', (data: Buffer) => {
        const m = decodeControllerMessage(data);
        if (m?.body === 'welcome') {
          a.id = m.welcome.agentId;
          resolve();
        } else if (m?.body === 'eventAck') a.acks.shift()?.(m.eventAck.uptoSeq);
      });
      ws.on('error', reject);
      ws.on('close', (code) => reject(new Error(`closed ${code}`)));
    });
    return a;
  }

  /** Sends one batch and resolves with the seq the controller acknowledged up to. */
  send(events: WireEvent[]): Promise<number> {
    const acked = new Promise<number>((resolve) => this.acks.push(resolve));
    this.ws.send(encodeAgentMessage({ events: { events } }));
    return acked;
  }

  /** What a real agent's outbox does: send from the first unacknowledged event until everything is acknowledged. */
  async deliver(events: WireEvent[], batch = 500): Promise<{ batches: number; partial: number }> {
    let next = 0;
    let batches = 0;
    let partial = 0;
    while (next < events.length) {
      const chunk = events.slice(next, next + batch);
      const upto = await this.send(chunk);
      batches++;
      const taken = chunk.filter((e) => e.seq <= upto).length;
      assert.ok(taken >= 1, 'every acknowledgement takes at least one event');
      if (taken < chunk.length) partial++;
      next += taken;
    }
    return { batches, partial };
  }

  close(): void {
    this.ws.close();
  }
}

/** Facts a test does not care about. */
const NO_FACTS: HostFacts = { hostname: '', os: '', osRelease: '', kernel: '', arch: '', cpu: '', cpuCores: 0, memoryBytes: 0 };

/** An event with every field set, as an agent's outbox sends it. */
export const wireEvent = (seq: number, over: Partial<WireEvent> = {}): WireEvent => ({
  seq,
  time: Date.now(),
  resource: 'file:/srv/app/motd',
  event: 'drift_detected',
  trigger: 'watch',
  baseline: '',
  version: 0,
  observedJson: '{"sha256":"ab"}',
  desiredJson: '{"sha256":"cd"}',
  diff: '',
  detail: '',
  prevHash: '',
  hash: `h${seq}`,
  ...over,
});
