// HBONE server: mTLS with client certificates from our trust domain, then an HTTP/2 session per connection.
import http2, { type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { WorkloadCertificate } from '../identity/manager.js';
import { formatIdentity, type Identity } from '../identity/spiffe.js';
import { canonicalIp } from '../net/ip.js';
import { CONNECTION_WINDOW, serverSessionOptions } from './settings.js';
import { peerIdentity, serverTlsOptions } from './tls.js';

export interface HboneServerPeer {
  identity: Identity;
  ip: string;
  port: number;
}

/**
 * The 'error' listener every stream arrives with (a reset by the peer then shows only as 'close'); a handler that
 * listens for errors itself may take it off.
 */
export function ignoreStreamErrors(): void {}

export type StreamHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, peer: HboneServerPeer) => void;

export class HboneServer {
  readonly tls: tls.Server;
  private readonly sessions = new Set<ServerHttp2Session>();

  constructor(
    cert: WorkloadCertificate,
    private readonly trustDomain: string,
    private readonly onStream: StreamHandler,
    private readonly log: Logger,
  ) {
    // noDelay: small frames (a request, a reply, a WINDOW_UPDATE) must not wait behind Nagle for the peer's ACK.
    this.tls = tls.createServer({ ...serverTlsOptions(cert), noDelay: true }, (s) => this.accept(s));
    this.tls.on('tlsClientError', (err, s) => {
      log.warn({ 'src.addr': `${s.remoteAddress}:${s.remotePort}`, err: err.message }, 'HBONE handshake failed');
    });
  }

  /** Serve a rotated certificate to new connections. */
  setCertificate(cert: WorkloadCertificate): void {
    this.tls.setSecureContext(serverTlsOptions(cert));
  }

  private accept(socket: tls.TLSSocket): void {
    const ip = canonicalIp(socket.remoteAddress ?? '');
    const port = socket.remotePort ?? 0;
    const identity = peerIdentity(socket);
    if (!identity || identity.trustDomain !== this.trustDomain) {
      this.log.warn(
        { 'src.addr': `${ip}:${port}`, 'src.identity': identity ? formatIdentity(identity) : '(none)', trustDomain: this.trustDomain },
        'HBONE client rejected: identity not in our trust domain',
      );
      socket.destroy();
      return;
    }
    const session = http2.performServerHandshake(socket, serverSessionOptions);
    // The SETTINGS window is per stream; the connection window must be raised separately or every upload shares 64 KiB.
    session.setLocalWindowSize(CONNECTION_WINDOW);
    this.sessions.add(session);
    session.on('close', () => this.sessions.delete(session));
    session.on('error', (err) => this.log.debug({ err: err.message }, 'HBONE session error'));
    const peer: HboneServerPeer = { identity, ip, port };
    session.on('stream', (stream, headers) => {
      stream.on('error', ignoreStreamErrors);
      this.onStream(stream, headers, peer);
    });
  }

  /** Stop accepting; send GOAWAY so clients open no new streams while running ones finish. */
  shutdown(): void {
    this.tls.close();
    for (const s of this.sessions) if (!s.closed) s.close();
  }

  destroyAll(): void {
    for (const s of this.sessions) s.destroy();
  }
}
