// The agent's HTTP servers: the CNI plugin event server on a unix socket (Istio: POST /cmdadd, 200 once the pod is
// in the mesh, 4xx/5xx with the reason otherwise), and the ops server (/healthz, /readyz, /metrics).
import { existsSync, mkdirSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname } from 'node:path';
import { CNI_ADD_EVENT_PATH, type CniPluginAddEvent } from '../protocol.js';
import type { NodeAgent } from './agent.js';

const MAX_BODY = 1 << 20;

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
      if (body.length > MAX_BODY) req.destroy(new Error('request body too large'));
    });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

function parseEvent(text: string): CniPluginAddEvent {
  const ev = JSON.parse(text) as CniPluginAddEvent;
  if (!ev || typeof ev !== 'object') throw new Error('event is not a JSON object');
  for (const f of ['Netns', 'PodName', 'PodNamespace'] as const) if (typeof ev[f] !== 'string' || !ev[f]) throw new Error(`event without ${f}`);
  if (ev.IPs != null && !Array.isArray(ev.IPs)) throw new Error('IPs is not a list');
  return ev;
}

/** Serve the plugin's events on a unix socket (replacing a stale socket file). */
export async function startCniEventServer(agent: NodeAgent, socketPath: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const reply = (code: number, text: string) => {
      agent.metrics.cniEvent(code);
      if (code !== 200) agent.metrics.failure('cni_event');
      res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8' }).end(text ? `${text}\n` : '');
    };
    if (req.url !== CNI_ADD_EVENT_PATH) return reply(404, 'not found');
    if (req.method !== 'POST') return reply(405, 'method not allowed');
    void (async () => {
      let ev: CniPluginAddEvent;
      try {
        ev = parseEvent(await readBody(req));
      } catch (e) {
        return reply(400, `bad CNI event: ${(e as Error).message}`);
      }
      const ips = (ev.IPs ?? []).map((c) => c?.Address?.IP).filter((ip): ip is string => typeof ip === 'string' && ip !== '');
      try {
        await agent.cniAdd(ev.PodNamespace, ev.PodName, { netns: ev.Netns, ips });
        agent.log.info({ pod: `${ev.PodNamespace}/${ev.PodName}`, netns: ev.Netns }, 'CNI add handled');
        reply(200, '');
      } catch (e) {
        agent.log.error({ pod: `${ev.PodNamespace}/${ev.PodName}`, err: (e as Error).message }, 'CNI add failed');
        reply(500, (e as Error).message);
      }
    })();
  });
  mkdirSync(dirname(socketPath), { recursive: true });
  if (existsSync(socketPath)) unlinkSync(socketPath);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return server;
}

/** /healthz (alive), /readyz (synced and serving ZDS), /metrics (Prometheus). */
export async function startOpsServer(agent: NodeAgent, port: number, host = '0.0.0.0'): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405).end();
    if (path === '/healthz') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    if (path === '/readyz') {
      const ok = agent.isReady;
      return void res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ready\n' : 'not ready\n');
    }
    if (path === '/metrics' || path === '/stats/prometheus') {
      agent.metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': agent.metrics.registry.contentType }).end(text),
        (e: Error) => res.writeHead(500).end(e.message),
      );
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}
