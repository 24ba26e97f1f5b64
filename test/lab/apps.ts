// Small apps that live in lab namespaces without leaving this process: sockets are created inside the netns by the addon.
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { connectTcp, listenTcp, type ConnectTcpOptions } from '../../ztunnel/native/index.js';
import type { Netns } from './netns.js';

export function listenIn(ns: Netns, host: string, port: number, onConn: (s: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    onConn(s);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd: listenTcp({ netnsFd: ns.fd, host, port }) }, () => resolve(server));
  });
}

/** Echo: returns every byte, and ends after the client ended (so half-close travels both ways). */
export const echoServer = (ns: Netns, host: string, port: number) => listenIn(ns, host, port, (s) => s.pipe(s));

/** Answers each connection with a fixed greeting and closes: tells which replica was reached. */
export const nameServer = (ns: Netns, host: string, port: number, name: string) =>
  listenIn(ns, host, port, (s) => {
    s.resume();
    s.end(name);
  });

export interface Exchange {
  received: Buffer;
  /** The first error (errno code when there is one). */
  error?: string;
  connected: boolean;
  /** The client's port (the src.addr ztunnel logs for an outbound connection). */
  localPort?: number;
}

/** Connect from inside `ns`, send `payload`, half-close, and collect everything until the connection closes (bounded). */
export const exchange = (ns: Netns, host: string, port: number, payload: Buffer | string = Buffer.alloc(0), timeoutMs = 30_000): Promise<Exchange> =>
  exchangeWith({ netnsFd: ns.fd, host, port }, payload, timeoutMs);

/** exchange() with any socket options (netns, mark, transparent source). */
export function exchangeWith(opts: ConnectTcpOptions, payload: Buffer | string = Buffer.alloc(0), timeoutMs = 30_000): Promise<Exchange> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const r: Exchange = { received: Buffer.alloc(0), connected: false };
    const s = connectTcp({ ...opts, allowHalfOpen: true });
    const timer = setTimeout(() => s.destroy(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', (e) => (r.error ??= (e as NodeJS.ErrnoException).code ?? e.message));
    s.on('close', () => {
      clearTimeout(timer);
      r.received = Buffer.concat(chunks);
      resolve(r);
    });
    s.once('connect', () => {
      r.connected = true;
      r.localPort = s.localPort;
      s.end(payload);
    });
  });
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Open a connection and keep it open; returns the socket once connected (or the error). */
export function holdOpen(ns: Netns, host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = connectTcp({ netnsFd: ns.fd, host, port, allowHalfOpen: true });
    s.once('error', reject);
    s.once('connect', () => resolve(s));
  });
}

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * One HTTP/1.1 request from inside a namespace, on a connection of its own. `keepAlive` (as curl, Go and browsers
 * send) leaves the connection to the client to close after the response; without it the request says
 * `Connection: close`.
 */
export function httpRequest(
  ns: Netns,
  o: { method?: string; host: string; port: number; path?: string; headers?: Record<string, string>; body?: string; timeoutMs?: number; keepAlive?: boolean },
): Promise<HttpAnswer> {
  return new Promise<HttpAnswer>((resolve, reject) => {
    const headers = o.keepAlive ? { ...o.headers, connection: 'keep-alive' } : o.headers;
    const req = http.request(
      {
        method: o.method ?? 'GET', host: o.host, port: o.port, path: o.path ?? '/', headers, timeout: o.timeoutMs ?? 5000,
        createConnection: () => connectTcp({ netnsFd: ns.fd, host: o.host, port: o.port }),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
          // The client closes, once it has the whole answer (a reset after that is no error of the request).
          if (o.keepAlive) req.socket?.on('error', () => {}).end();
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(o.body);
  });
}

/** Plain HTTP from inside a namespace (readiness, metrics, admin). */
export const httpIn = (ns: Netns, method: string, port: number, path: string, host = '127.0.0.1'): Promise<{ status: number; body: string }> =>
  httpRequest(ns, { method, host, port, path });

/** An HTTP server in a namespace: answers every request with its name and the caller's address. */
export function httpServer(ns: Netns, host: string, port: number, name: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(`${name} (saw the call come from ${req.socket.remoteAddress})`));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd: listenTcp({ netnsFd: ns.fd, host, port }) }, () => resolve(server));
  });
}

/** What echoHttpServer answers: who it is and what it received. */
export interface EchoAnswer {
  who: string;
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  from: string;
}

/**
 * An HTTP app in a namespace that answers every request with JSON saying who it is and what it got (method, path,
 * headers, the caller's address). A path starting with `/slow/<ms>` answers after that many milliseconds.
 */
export function echoHttpServer(ns: Netns, host: string, port: number, who: string, onRequest?: (a: EchoAnswer) => void): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const a: EchoAnswer = { who, method: req.method ?? '', path: req.url ?? '', headers: req.headers, from: req.socket.remoteAddress ?? '' };
      onRequest?.(a);
      const delay = /^\/slow\/(\d+)/.exec(a.path);
      const answer = () => {
        if (res.destroyed) return;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(a));
      };
      if (delay) setTimeout(answer, Math.min(Number(delay[1]), 60_000)).unref();
      else answer();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd: listenTcp({ netnsFd: ns.fd, host, port }) }, () => resolve(server));
  });
}

export interface CallStats {
  calls: number;
  errors: number;
  bytesSent: number;
  bytesReceived: number;
  p50Ms: number;
  p99Ms: number;
  /** Distinct answers, e.g. which replicas replied. */
  answers: string[];
}

/** `count` sequential HTTP POSTs from inside `ns`, with latency percentiles and byte counts. */
export async function timedHttpCalls(ns: Netns, host: string, port: number, count: number, body: Buffer): Promise<CallStats> {
  const latencies: number[] = [];
  const answers = new Set<string>();
  let errors = 0;
  let bytesReceived = 0;
  for (let i = 0; i < count; i++) {
    const start = process.hrtime.bigint();
    try {
      const text = await new Promise<string>((resolve, reject) => {
        const req = http.request(
          { method: 'POST', host, port, path: '/', timeout: 5000, createConnection: () => connectTcp({ netnsFd: ns.fd, host, port }) },
          (res) => {
            let got = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (got += c));
            res.on('end', () => resolve(got));
          },
        );
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
        req.end(body);
      });
      latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
      bytesReceived += Buffer.byteLength(text);
      answers.add(text);
    } catch {
      errors++;
    }
  }
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]! : NaN);
  return { calls: count, errors, bytesSent: body.length * count, bytesReceived, p50Ms: pct(50), p99Ms: pct(99), answers: [...answers].sort() };
}
