// Pre-authentication connection limits: how many connections one address (an IPv6 /64) and all addresses together may
// hold before showing a credential. A connection past its address's limit is closed as it is accepted, before TLS or HTTP
// parsing. When all addresses together are at the limit, a new connection takes the place of the oldest one if that one
// has waited long enough to be a stalled one (a real client shows its credential within milliseconds); otherwise it is
// closed. A connection that presents the operator token or completes an agent hello is no longer counted.
import { isIPv6, type Socket } from 'node:net';

export interface ConnectionLimits {
  /** Unauthenticated connections one source address (IPv4 address, or IPv6 /64) may hold. */
  perAddress: number;
  /** Unauthenticated connections all sources together may hold (each TLS one costs the process 40-90 KB). */
  unauthenticated: number;
  /** At the total limit, the oldest unauthenticated connection gives way to a new one once it has waited this long. */
  evictAfterMs: number;
  /** No connection stays unauthenticated longer, whatever it is doing (a backstop behind every HTTP and TLS timeout). */
  maxAgeMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = { perAddress: 64, unauthenticated: 384, evictAfterMs: 1000, maxAgeMs: 40_000 };

export type RefusedReason = 'per_address' | 'total' | 'evicted' | 'timeout';

/** The source a limit is counted against: an IPv4 address (also when IPv4-mapped), or the /64 of an IPv6 one. */
export function sourceOf(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1]) return mapped[1];
  if (!isIPv6(address)) return address;
  const [head = '', tail] = address.split('%')[0]?.split('::') ?? [];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

const keyOf = (s: Socket): string | undefined => (s.remoteAddress === undefined ? undefined : `${s.remoteAddress}|${String(s.remotePort)}`);

export class ConnectionGuard {
  /** Open unauthenticated connections by address|port (the same for a TLS socket and the TCP socket under it). */
  private readonly pending = new Map<string, { source: string; socket: Socket; at: number }>();
  private readonly bySource = new Map<string, number>();
  onRefused: (reason: RefusedReason) => void = () => undefined;
  onCount: (unauthenticated: number) => void = () => undefined;

  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly limits: ConnectionLimits) {
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.min(1000, Math.floor(limits.maxAgeMs / 4)))).unref();
  }

  /** Closes the connections past their maximum age (oldest first: insertion order is age order). */
  private sweep(): void {
    const limit = performance.now() - this.limits.maxAgeMs;
    for (const [key, p] of this.pending) {
      if (p.at > limit) break;
      this.release(key);
      this.refuse(p.socket, 'timeout');
    }
  }

  /** Counts a new TCP connection, or closes it at once when a limit is reached. */
  admit(socket: Socket): void {
    const key = keyOf(socket);
    if (key === undefined || socket.remoteAddress === undefined) {
      socket.destroy();
      return;
    }
    const source = sourceOf(socket.remoteAddress);
    const n = this.bySource.get(source) ?? 0;
    const now = performance.now();
    if (n >= this.limits.perAddress) return this.refuse(socket, 'per_address');
    if (this.pending.size >= this.limits.unauthenticated) {
      // Insertion order: the first entry is the oldest.
      const oldest = this.pending.entries().next().value;
      if (!oldest || now - oldest[1].at < this.limits.evictAfterMs) return this.refuse(socket, 'total');
      this.release(oldest[0]);
      this.refuse(oldest[1].socket, 'evicted');
    }
    this.pending.set(key, { source, socket, at: now });
    this.bySource.set(source, n + 1);
    this.onCount(this.pending.size);
    socket.once('close', () => this.release(key));
  }

  private refuse(socket: Socket, reason: RefusedReason): void {
    this.onRefused(reason);
    socket.destroy();
  }

  /** Closes the connection if it has not shown a credential within `ms` (an upgraded socket no HTTP timeout covers). */
  deadline(socket: Socket, ms: number): void {
    const key = keyOf(socket);
    if (key === undefined || !this.pending.has(key)) return;
    const timer = setTimeout(() => {
      if (this.pending.has(key)) {
        this.onRefused('timeout');
        socket.destroy();
      }
    }, ms).unref();
    socket.once('close', () => clearTimeout(timer));
  }

  /** The connection showed a credential: it no longer counts against the limits. */
  authenticated(socket: Socket): void {
    const key = keyOf(socket);
    if (key !== undefined) this.release(key);
  }

  get unauthenticated(): number {
    return this.pending.size;
  }

  /** Closes every connection still unauthenticated (shutdown: a stalled handshake must not hold it up). */
  destroyAll(): void {
    clearInterval(this.sweeper);
    for (const { socket } of this.pending.values()) socket.destroy();
  }

  private release(key: string): void {
    const source = this.pending.get(key)?.source;
    if (source === undefined) return;
    this.pending.delete(key);
    const n = (this.bySource.get(source) ?? 1) - 1;
    if (n <= 0) this.bySource.delete(source);
    else this.bySource.set(source, n);
    this.onCount(this.pending.size);
  }
}
