// Waiting out a backoff step, cut short when the controller is back: a cheap reachability probe, a TCP connection to its
// port closed at once. It sends nothing (no token, no credential), so it is safe to repeat; success only means "try now".
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

/**
 * Waits `ms`, or less: when `probe` is given, tries the controller every `everyMs` (jittered) and ends as soon as it
 * answers. `wake` ends the wait at once (the link stopping).
 */
export function waitOrProbe(ms: number, probe: { url: string; everyMs: number } | null): { done: Promise<'elapsed' | 'answered' | 'woken'>; wake: () => void } {
  let finish: (how: 'elapsed' | 'answered' | 'woken') => void = () => undefined;
  const done = new Promise<'elapsed' | 'answered' | 'woken'>((resolve) => {
    let over = false;
    let probeTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => finish('elapsed'), ms);
    finish = (how) => {
      if (over) return;
      over = true;
      clearTimeout(timer);
      if (probeTimer) clearTimeout(probeTimer);
      resolve(how);
    };
    if (!probe || ms <= probe.everyMs) return;
    const schedule = (): void => {
      probeTimer = setTimeout(() => {
        void probeController(probe.url, Math.min(probe.everyMs, 2000)).then((up) => {
          if (over) return;
          if (up) finish('answered');
          else schedule();
        });
      }, probe.everyMs * (0.5 + Math.random()));
    };
    schedule();
  });
  return { done, wake: () => finish('woken') };
}
