// How ztunnel makes its sockets. Outbound sockets carry ztunnel's mark so the redirection rules let them through.
import net from 'node:net';
import { connectTcp } from '../native/index.js';

/** Mark on every socket ztunnel opens, matched by the in-pod rules (Istio's 0x539). */
export const ZTUNNEL_MARK = 0x539;

export interface SocketFactory {
  /** Start a TCP connection; errors arrive as 'error' events. */
  connect(ip: string, port: number): net.Socket;
  /** Listen on host:port; rejects with a clear error when the port is taken. */
  listen(server: net.Server, host: string, port: number): Promise<void>;
}

/** Resolves once the socket has connected, rejects with its connect error. */
export function connected(sock: net.Socket): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.off('error', reject);
      resolve(sock);
    });
  });
}

export function listenError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  if (err.code === 'EADDRINUSE') return new Error(`port ${port} on ${host} is already in use (is another ztunnel running?)`);
  if (err.code === 'EACCES') return new Error(`no permission to listen on ${host}:${port}`);
  return new Error(`cannot listen on ${host}:${port}: ${err.message}`);
}

export function listenOn(server: net.Server, opts: net.ListenOptions, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(listenError(err, host, port));
    server.once('error', onError);
    server.listen(opts, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Sockets in ztunnel's own network namespace (dedicated mode). */
export class LocalSocketFactory implements SocketFactory {
  constructor(private readonly mark: number = ZTUNNEL_MARK) {}

  connect(ip: string, port: number): net.Socket {
    return connectTcp({ host: ip, port, mark: this.mark, allowHalfOpen: true, noDelay: true });
  }

  listen(server: net.Server, host: string, port: number): Promise<void> {
    return listenOn(server, { host, port, exclusive: true }, host, port);
  }
}
