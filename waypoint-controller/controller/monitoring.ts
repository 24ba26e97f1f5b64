// The controller's operational endpoints (Istio's istiod uses 15014): Prometheus metrics and the xDS debug view.
import http from 'node:http';
import type { Registry } from 'prom-client';

export interface MonitoringSources {
  registry: Registry;
  debugState(): unknown;
  ready(): boolean;
}

export function startMonitoring(src: MonitoringSources, host: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'GET') return send(405, 'text/plain', 'GET only\n');
    if (path === '/metrics') return void src.registry.metrics().then((m) => send(200, src.registry.contentType, m), (e: Error) => send(500, 'text/plain', e.message));
    if (path === '/debug/connections') return send(200, 'application/json', JSON.stringify(src.debugState(), null, 2) + '\n');
    if (path === '/ready') return send(src.ready() ? 200 : 503, 'text/plain', src.ready() ? 'ready\n' : 'not ready\n');
    send(404, 'text/plain', 'endpoints: /metrics, /debug/connections, /ready\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
