// Opens an HBONE connection: TCP (through the socket factory) + mTLS + HTTP/2 client session.
import http2, { type ClientHttp2Session } from 'node:http2';
import tls from 'node:tls';
import type { WorkloadCertificate } from '../identity/manager.js';
import { formatHostPort } from '../net/ip.js';
import type { SocketFactory } from '../net/sockets.js';
import { CONNECTION_WINDOW, clientSessionOptions } from './settings.js';
import { clientTlsOptions } from './tls.js';

export interface HboneDialTarget {
  ip: string;
  port: number;
  /** The server must present one of these SPIFFE URIs. */
  expectedIdentities: readonly string[];
}

/** A peer that accepts TCP but never completes TLS would otherwise hold every tunnel waiting on this connection. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Resolves once the TLS handshake (including the identity check) has succeeded. */
export function dialHbone(target: HboneDialTarget, cert: WorkloadCertificate, sockets: SocketFactory, handshakeTimeoutMs = HANDSHAKE_TIMEOUT_MS): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const tcp = sockets.connect(target.ip, target.port);
    tcp.on('error', () => {}); // surfaced (and handled) through the TLS socket
    const tlsSocket = tls.connect({ socket: tcp, ...clientTlsOptions(cert, target.expectedIdentities) });
    const fail = (err: Error) => {
      clearTimeout(timer);
      tlsSocket.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`HBONE peer ${target.ip}:${target.port}: no TLS handshake within ${handshakeTimeoutMs} ms`)), handshakeTimeoutMs);
    // The factory's sockets allow half-open TCP (right for app traffic); an HBONE connection is over when the peer ends it.
    tlsSocket.once('end', () => tlsSocket.destroy());
    const closed = () => fail(new Error(`HBONE peer ${target.ip}:${target.port} closed the connection during the handshake`));
    tlsSocket.once('error', fail);
    tlsSocket.once('close', closed);
    tlsSocket.once('secureConnect', () => {
      clearTimeout(timer);
      tlsSocket.off('error', fail);
      tlsSocket.off('close', closed);
      // From here the HTTP/2 session owns the socket and sees its close; a late reset must not crash the process.
      tlsSocket.on('error', () => {});
      if (tlsSocket.alpnProtocol !== 'h2') return fail(new Error(`HBONE peer ${target.ip}:${target.port} did not negotiate h2`));
      const session = http2.connect(`https://${formatHostPort(target.ip, target.port)}`, {
        ...clientSessionOptions,
        createConnection: () => tlsSocket,
      });
      session.once('connect', () => session.setLocalWindowSize(CONNECTION_WINDOW));
      session.on('error', () => {}); // the session then closes; its users watch 'close'
      // A peer that rejects us right after the handshake (e.g. wrong trust domain) may close before the session
      // notices; make sure the session closes with the socket.
      if (tlsSocket.destroyed) session.destroy();
      else tlsSocket.once('close', () => session.destroy());
      resolve(session);
    });
  });
}
