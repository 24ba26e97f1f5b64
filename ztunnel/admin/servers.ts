// Operational endpoints: admin (localhost only), readiness, and Prometheus metrics.
import http from 'node:http';
import type { Logger } from 'pino';
import { listenOn } from '../net/sockets.js';

export interface AdminHooks {
  configDump(): unknown;
  quit(): void;
  setLogLevel(level: string): boolean;
  ready(): boolean;
  metrics(): Promise<{ contentType: string; body: string }>;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>;

function send(res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type });
  res.end(body);
}

function server(routes: Record<string, Handler>, log: Logger): http.Server {
  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const h = routes[`${req.method} ${url.pathname}`] ?? routes[`* ${url.pathname}`];
    if (!h) return send(res, 404, `no such endpoint: ${req.method} ${url.pathname}\n`);
    Promise.resolve(h(req, res)).catch((err: Error) => {
      log.error({ err: err.message, path: url.pathname }, 'admin handler failed');
      if (!res.headersSent) send(res, 500, `${err.message}\n`);
    });
  });
}

export class AdminServers {
  private readonly servers: http.Server[] = [];

  constructor(private readonly hooks: AdminHooks, private readonly log: Logger) {}

  async start(bind: string, ports: { admin: number; readiness: number; metrics: number }): Promise<void> {
    const h = this.hooks;
    const admin = server(
      {
        'GET /config_dump': (_q, res) => send(res, 200, JSON.stringify(h.configDump(), null, 2) + '\n', 'application/json'),
        'POST /quitquitquit': (_q, res) => {
          send(res, 200, 'OK\n');
          setImmediate(() => h.quit());
        },
        'POST /logging': (req, res) => {
          const level = new URL(req.url ?? '', 'http://localhost').searchParams.get('level') ?? '';
          if (!h.setLogLevel(level)) return send(res, 400, `unknown level ${JSON.stringify(level)} (trace, debug, info, warn, error)\n`);
          send(res, 200, `current log level is ${level}\n`);
        },
        'GET /healthz/ready': (_q, res) => send(res, h.ready() ? 200 : 503, h.ready() ? 'ready\n' : 'not ready\n'),
      },
      this.log,
    );
    const readiness = server({ 'GET /healthz/ready': (_q, res) => send(res, h.ready() ? 200 : 503, h.ready() ? 'ready\n' : 'not ready\n') }, this.log);
    const metricsHandler: Handler = async (_q, res) => {
      const m = await h.metrics();
      send(res, 200, m.body, m.contentType);
    };
    const metrics = server({ 'GET /metrics': metricsHandler, 'GET /stats/prometheus': metricsHandler }, this.log);
    // The admin API can stop the process: never expose it beyond localhost.
    await listenOn(admin, { host: '127.0.0.1', port: ports.admin }, '127.0.0.1', ports.admin);
    await listenOn(readiness, { host: bind, port: ports.readiness }, bind, ports.readiness);
    await listenOn(metrics, { host: bind, port: ports.metrics }, bind, ports.metrics);
    this.servers.push(admin, readiness, metrics);
  }

  close(): void {
    for (const s of this.servers) {
      s.close();
      s.closeAllConnections();
    }
  }
}
