// Pre-authentication connection limits: how many connections one address (an IPv6 /64) and all addresses together may
// hold before showing a credential. A connection past a limit is closed as it is accepted, before TLS or HTTP parsing;
// one that presents the operator token or completes an agent hello is no longer counted.
import { isIPv6, type Socket } from 'node:net';

export interface ConnectionLimits {
  /** Unauthenticated connections one source address (IPv4 address, or IPv6 /64) may hold. */
  perAddress: number;
  /** Unauthenticated connections all sources together may hold. */
  unauthenticated: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = { perAddress: 64, unauthenticated: 1024 };

export type RefusedReason = 'per_address' | 'total' | 'timeout';

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
  private readonly pending = new Map<string, { source: string; socket: Socket }>();
  private readonly bySource = new Map<string, number>();
  onRefused: (reason: RefusedReason) => void = () => undefined;
  onCount: (unauthenticated: number) => void = () => undefined;

  constructor(private readonly limits: ConnectionLimits) {}

  /** Counts a new TCP connection, or closes it at once when a limit is reached. */
  admit(socket: Socket): void {
    const key = keyOf(socket);
    if (key === undefined || socket.remoteAddress === undefined) {
      socket.destroy();
      return;
    }
    const source = sourceOf(socket.remoteAddress);
    const n = this.bySource.get(source) ?? 0;
    const refused: RefusedReason | undefined = n >= this.limits.perAddress ? 'per_address' : this.pending.size >= this.limits.unauthenticated ? 'total' : undefined;
    if (refused) {
      this.onRefused(refused);
      socket.destroy();
      return;
    }
    this.pending.set(key, { source, socket });
    this.bySource.set(source, n + 1);
    this.onCount(this.pending.size);
    socket.once('close', () => this.release(key));
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
