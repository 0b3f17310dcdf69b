// The daemon's side of the local control channel (protocol.ts): a unix socket in the state dir, mode 0600 in a directory
// only root may enter, so only root on this host can ask. Each connection carries one bounded request; a bad or slow one
// is answered or dropped on its own and never holds the others or the daemon.
import fs from 'node:fs';
import net from 'node:net';
import { HsError, errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { runControl, type ControlTarget } from './operations.js';
import { MAX_REQUEST_BYTES, REQUEST_TIMEOUT_MS, parseRequest, socketPath, type ControlAnswer } from './protocol.js';

export interface ControlServer {
  close(): Promise<void>;
}

export async function serveControl(stateDir: string, target: ControlTarget, log: Logger): Promise<ControlServer | undefined> {
  const file = socketPath(stateDir);
  if (fs.existsSync(file)) {
    if (await answers(file)) {
      log.error({ socket: file }, 'another agent serves this state dir; local commands go to it, not to this one');
      return undefined;
    }
    fs.rmSync(file, { force: true });
  }
  // One operation at a time: a forget re-activates a whole set, and two at once would race.
  let chain: Promise<unknown> = Promise.resolve();
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    let buf = '';
    let done = false;
    const answer = (a: ControlAnswer): void => {
      if (done) return;
      done = true;
      sock.end(`${JSON.stringify(a)}\n`);
    };
    const refuse = (err: unknown): void => answer({ ok: false, error: err instanceof HsError ? { code: err.code, message: err.message } : { code: 'HS_INTERNAL', message: errorMessage(err) } });
    sock.setTimeout(REQUEST_TIMEOUT_MS, () => sock.destroy());
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      if (done) return;
      buf += d.toString('utf8');
      if (buf.length > MAX_REQUEST_BYTES) {
        refuse(new HsError('HS_CONFIG', `control request larger than ${MAX_REQUEST_BYTES} bytes`));
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let req;
      try {
        req = parseRequest(buf.slice(0, nl));
      } catch (err) {
        refuse(err);
        return;
      }
      // The request is in: the operation bounds itself (an approval waits at most 30 s for the engine), so the idle limit
      // for reading a request must not cut the answer off.
      sock.setTimeout(0);
      log.info({ op: req.op, by: req.by }, 'local control request');
      const run = chain.then(() => runControl(target, req));
      chain = run.catch(() => undefined);
      run.then((result) => answer({ ok: true, result }), refuse);
    });
  });
  server.on('error', (err) => log.error({ err: errorMessage(err) }, 'control socket failed'));
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(file, () => resolve());
    });
  } catch (err) {
    log.error({ socket: file, err: errorMessage(err) }, 'control socket not served; local commands edit the cache only while no daemon runs');
    return undefined;
  } finally {
    process.umask(old);
  }
  fs.chmodSync(file, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        fs.rmSync(file, { force: true });
      }),
  };
}

/** Whether something accepts connections on the socket `file`. */
export function answers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(file);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
