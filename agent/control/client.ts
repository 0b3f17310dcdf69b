// The command side of the local control channel: sends one request to the running daemon, or says none runs (then the
// command edits the cache itself). A daemon recorded as running that does not answer is an error, never a reason to
// write the cache next to it.
import fs from 'node:fs';
import net from 'node:net';
import { HsError } from '../../lib/errors.js';
import { MAX_REQUEST_BYTES, REQUEST_TIMEOUT_MS, socketPath, type ControlAnswer, type ControlRequest } from './protocol.js';

/** The daemon's answer, or `undefined` when no daemon serves this state dir. */
export async function askDaemon(stateDir: string, req: ControlRequest, daemonPid: number | null): Promise<unknown> {
  const file = socketPath(stateDir);
  const text = await exchange(file, `${JSON.stringify(req)}\n`).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT' && err.code !== 'ECONNREFUSED') throw new HsError('HS_HOST_IO', `control socket ${file}: ${err.message}`, { cause: err });
    return undefined;
  });
  if (text === undefined) {
    if (daemonPid !== null && isAgentProcess(daemonPid)) {
      throw new HsError('HS_CONFLICT', `the agent daemon (pid ${daemonPid}) runs on ${stateDir} but does not answer on ${file}; restart it (systemctl restart homeostat-agent) and try again`);
    }
    return undefined;
  }
  let a: ControlAnswer;
  try {
    a = JSON.parse(text) as ControlAnswer;
  } catch {
    throw new HsError('HS_HOST_IO', `control socket ${file}: the daemon's answer is not JSON`);
  }
  if (!a.ok) throw new HsError(a.error.code as never, a.error.message);
  return a.result;
}

function exchange(file: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(file);
    let buf = '';
    // An approval waits for its repair (up to 30 s in the daemon): the answer may take that long.
    s.setTimeout(REQUEST_TIMEOUT_MS + 40_000, () => s.destroy(Object.assign(new Error('no answer in time'), { code: 'ETIMEDOUT' })));
    s.once('connect', () => s.write(request));
    s.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      if (buf.length > MAX_REQUEST_BYTES * 64) s.destroy(new Error('answer too large'));
    });
    s.once('end', () => resolve(buf));
    s.once('error', reject);
  });
}

function isAgentProcess(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('homeostat');
  } catch {
    return false;
  }
}
