// Raw TCP and TLS clients for tests that must send what no HTTP library would (malformed request lines, bodies that never
// come, connections that never speak), and read exactly what the server answers and when it closes.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface RawConnection {
  socket: Socket;
  /** Everything received so far. */
  received(): string;
  /** Resolves when the server has closed the connection (or rejects after `ms`). */
  closed(ms?: number): Promise<string>;
  /** Resolves with the first complete HTTP response head and body received (or rejects after `ms`). */
  response(ms?: number): Promise<{ status: number; head: string; body: string }>;
}

function wrap(socket: Socket): RawConnection {
  let data = '';
  let isClosed = false;
  const waiters: (() => void)[] = [];
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  socket.on('data', (d: Buffer) => {
    data += d.toString('latin1');
    wake();
  });
  socket.on('close', () => {
    isClosed = true;
    wake();
  });
  socket.on('error', () => undefined);
  const until = (pred: () => boolean, ms: number, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what} not seen within ${ms} ms; received ${JSON.stringify(data.slice(0, 300))}`)), ms);
      const check = (): void => {
        if (pred()) {
          clearTimeout(timer);
          resolve();
        } else waiters.push(check);
      };
      check();
    });
  const parsed = (): { status: number; head: string; body: string } | undefined => {
    const end = data.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const head = data.slice(0, end);
    const len = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    const body = data.slice(end + 4);
    if (len && body.length < Number(len[1])) return undefined;
    if (!len && !isClosed) return undefined;
    return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body: len ? body.slice(0, Number(len[1])) : body };
  };
  return {
    socket,
    received: () => data,
    async closed(ms = 5000) {
      await until(() => isClosed, ms, 'the server closing the connection');
      return data;
    },
    async response(ms = 5000) {
      await until(() => parsed() !== undefined || isClosed, ms, 'a response');
      const r = parsed();
      if (!r) throw new Error(`connection closed without a response; received ${JSON.stringify(data.slice(0, 300))}`);
      return r;
    },
  };
}

/** Opens a plain TCP connection (from `localAddress` when given) and waits until it is established. */
export function rawConnect(port: number, opts: { host?: string; localAddress?: string } = {}): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ port, host: opts.host ?? '127.0.0.1', ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    const conn = wrap(socket);
    socket.once('connect', () => resolve(conn));
    socket.once('error', reject);
  });
}

/** Opens a TLS connection (any certificate) and waits for the handshake. */
export function tlsRawConnect(port: number): Promise<RawConnection> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    const conn = wrap(socket);
    socket.once('secureConnect', () => resolve(conn));
    socket.once('error', reject);
  });
}

/** Sends `text` on a new connection and returns the answer (the server closes, or answers with Connection: close). */
export async function exchange(port: number, text: string, ms = 5000): Promise<{ status: number; head: string; body: string }> {
  const c = await rawConnect(port);
  c.socket.write(text);
  const r = await c.response(ms);
  c.socket.destroy();
  return r;
}
