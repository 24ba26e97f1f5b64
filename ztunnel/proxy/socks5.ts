// SOCKS5 listener (15080, opt-in): lets a local app name its destination instead of relying on redirection.
import { lookup } from 'node:dns/promises';
import type net from 'node:net';
import type { ProxyContext } from './context.js';
import { handleOutbound } from './outbound.js';
import { encodeReply, GREETING_NO_ACCEPTABLE, GREETING_NO_AUTH, parseGreeting, parseRequest, REPLY, type Parse } from './socks5-protocol.js';

const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Read until `parse` has a whole message; leftover bytes are pushed back for the proxy. */
function readMessage<T>(sock: net.Socket, parse: (b: Buffer) => Parse<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const done = (f: () => void) => {
      sock.off('data', onData);
      sock.off('end', onEnd);
      f();
    };
    const onEnd = () => done(() => reject(new Error('client closed during SOCKS5 handshake')));
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const r = parse(buf);
      if (r.kind === 'incomplete') return;
      if (r.kind === 'error') return done(() => (sock.end(encodeReply(r.reply)), reject(new Error(r.reason))));
      sock.pause();
      if (r.used < buf.length) sock.unshift(buf.subarray(r.used));
      done(() => resolve(r.value));
    };
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.resume(); // the previous message paused the socket; a new 'data' listener alone does not resume it
  });
}

export async function handleSocks5(ctx: ProxyContext, sock: net.Socket): Promise<void> {
  sock.setTimeout(HANDSHAKE_TIMEOUT_MS, () => sock.destroy());
  sock.on('error', () => {});
  try {
    const greeting = await readMessage(sock, parseGreeting);
    if (!greeting.noAuth) {
      sock.end(GREETING_NO_ACCEPTABLE);
      return;
    }
    sock.write(GREETING_NO_AUTH);
    const target = await readMessage(sock, parseRequest);
    const ip = target.kind === 'ip' ? target.ip : (await lookup(target.host)).address;
    sock.setTimeout(0);
    // We answer success before the upstream connects, as Istio's ztunnel does; a failure then resets the connection.
    sock.write(encodeReply(REPLY.succeeded));
    await handleOutbound(ctx, sock, ip, target.port);
  } catch (err) {
    ctx.log.debug({ err: (err as Error).message }, 'SOCKS5 handshake failed');
    if (!sock.destroyed) sock.destroy();
  }
}
