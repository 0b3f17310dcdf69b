// One WebSocket connection to the controller's /agent endpoint: TLS pinned to the enrolled certificate fingerprint (plain
// ws:// only where the transport policy below allows it), binary frames with a size limit, and the agent's own ping so a
// dead path is noticed within two heartbeats.
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { HsError } from '../../lib/errors.js';
import { DEFAULT_MAX_MESSAGE_BYTES, decodeControllerMessage, encodeAgentMessage, type ControllerMessage, type OutgoingAgentMessage } from '../../proto/codec.js';
import { derFingerprint, type JoinToken } from '../../lib/join-token.js';

export interface ConnectOptions {
  /** The controller base URL (ws://, wss://, http:// or https://); /agent is appended. */
  url: string;
  /** Pinned sha256 of the controller certificate (base64url); when set, it replaces CA validation. */
  fingerprint: string | null;
  /** Plain ws:// allowed (checkTransport decided it); otherwise a ws:// URL is refused before any socket is opened. */
  allowPlain: boolean;
  maxMessageBytes?: number;
  handshakeTimeoutMs?: number;
  localAddress?: string;
}

export interface ConnectionHandlers {
  onMessage(msg: ControllerMessage): void;
  onClose(code: number, reason: string, err: HsError | undefined): void;
}

export function agentEndpoint(url: string): string {
  const u = new URL(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new HsError('HS_CONFIG', `--controller ${url}: expected wss://HOST:PORT (or ws:// with an --insecure-http controller)`);
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/agent`;
  return u.toString();
}

/**
 * Whether the agent may talk to `url` at all. Plain ws:// sends the join token or the credential in cleartext, so it needs
 * --insecure-http, and never happens with a token that pins a TLS certificate or an enrollment made over TLS. Throws HS_CONFIG.
 */
export function checkTransport(p: { url: string; insecureHttp: boolean; token: JoinToken | null; creds: { tlsFingerprint: string | null; insecureHttp: boolean } | undefined }): void {
  if (!agentEndpoint(p.url).startsWith('ws:')) return;
  const why = p.creds?.tlsFingerprint
    ? 'this agent enrolled with a controller that serves TLS; its credential never goes over plain ws://'
    : p.creds && !p.creds.insecureHttp
      ? 'this agent enrolled over wss://; its credential never goes over plain ws://'
      : !p.creds && p.token?.fingerprint
        ? 'the join token pins a TLS certificate, so its controller serves wss://'
        : !p.insecureHttp
          ? 'plain ws:// would send the join token and credential in cleartext; use wss://, or run agent and controller with --insecure-http'
          : null;
  if (why) throw new HsError('HS_CONFIG', `--controller ${p.url}: refused: ${why}`);
}

export class Connection {
  private readonly ws: WebSocket;
  private failure: HsError | undefined;
  private awaitingPong = false;

  constructor(opts: ConnectOptions, private readonly handlers: ConnectionHandlers) {
    const endpoint = agentEndpoint(opts.url);
    if (endpoint.startsWith('ws:') && !opts.allowPlain) throw new HsError('HS_CONFIG', `--controller ${opts.url}: plain ws:// needs --insecure-http`);
    const pinned = endpoint.startsWith('wss:') ? opts.fingerprint : null;
    this.ws = new WebSocket(endpoint, {
      maxPayload: opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      perMessageDeflate: false,
      handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000,
      // With a pinned fingerprint the certificate is checked below, before a single byte of ours is sent.
      rejectUnauthorized: pinned === null,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    if (pinned !== null) {
      this.ws.on('upgrade', (res: IncomingMessage) => {
        const cert = (res.socket as TLSSocket).getPeerCertificate?.();
        const seen = cert?.raw ? derFingerprint(cert.raw) : '(none)';
        if (seen !== pinned) {
          this.failure = new HsError('HS_AUTH', `controller certificate ${seen} does not match the pinned fingerprint ${pinned}`);
          this.ws.terminate();
        }
      });
    }
    this.ws.on('message', (data, isBinary) => {
      if (!isBinary || !Buffer.isBuffer(data)) return this.fail(new HsError('HS_PROTOCOL', 'text frame from the controller'));
      let msg: ControllerMessage | null;
      try {
        msg = decodeControllerMessage(data);
      } catch (err) {
        return this.fail(err instanceof HsError ? err : new HsError('HS_PROTOCOL', 'malformed controller frame'));
      }
      if (msg) this.handlers.onMessage(msg);
    });
    this.ws.on('pong', () => {
      this.awaitingPong = false;
    });
    this.ws.on('error', (err) => {
      this.failure ??= new HsError('HS_PROTOCOL', `connection to ${endpoint}: ${err.message}`, { cause: err, retryable: true });
    });
    this.ws.on('close', (code, reason) => this.handlers.onClose(code, reason.toString(), this.failure));
  }

  onOpen(fn: () => void): void {
    this.ws.once('open', () => {
      if (this.ws.readyState === WebSocket.OPEN) fn();
    });
  }

  isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(msg: OutgoingAgentMessage): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(encodeAgentMessage(msg));
  }

  /** Pings the controller; if the previous ping went unanswered the connection is considered dead and dropped. */
  probe(): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.awaitingPong) {
      this.failure ??= new HsError('HS_PROTOCOL', 'the controller stopped answering pings', { retryable: true });
      this.ws.terminate();
      return;
    }
    this.awaitingPong = true;
    this.ws.ping();
  }

  fail(err: HsError): void {
    this.failure ??= err;
    this.ws.close(1002, err.message.slice(0, 120));
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }

  close(): void {
    this.ws.close(1000, 'agent stopping');
    setTimeout(() => this.ws.terminate(), 1000).unref();
  }
}
