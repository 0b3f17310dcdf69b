// A cheap reachability probe of the controller while the link waits out a backoff step: a TCP connection to its port, closed
// at once. It sends nothing (no token, no credential), so it is safe to repeat; success only means "try now".
import net from 'node:net';
import { agentEndpoint } from './connection.js';

export function probeController(url: string, timeoutMs: number, localAddress?: string): Promise<boolean> {
  const u = new URL(agentEndpoint(url));
  const port = Number(u.port) || (u.protocol === 'wss:' ? 443 : 80);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
