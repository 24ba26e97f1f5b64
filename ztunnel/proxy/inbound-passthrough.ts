// Inbound plaintext (15006): TCP from outside the mesh to a local workload, still subject to L4 policy.
import type net from 'node:net';
import { canonicalIp, formatHostPort } from '../net/ip.js';
import { connected } from '../net/sockets.js';
import { authorize, type ConnectionInfo } from '../rbac/authorize.js';
import { ConnectionTelemetry } from '../telemetry/connection.js';
import { peerOf, trafficLabels } from '../telemetry/metrics.js';
import { DownstreamConnection } from './connections.js';
import type { ProxyContext } from './context.js';
import { abort } from './splice.js';

export async function handleInboundPlaintext(ctx: ProxyContext, down: net.Socket, dstIpRaw: string, dstPort: number): Promise<void> {
  const srcIp = canonicalIp(down.remoteAddress ?? '');
  const srcPort = down.remotePort ?? 0;
  const srcAddr = formatHostPort(srcIp, srcPort);
  const dstIp = canonicalIp(dstIpRaw);
  const fail = (error: string) => {
    ctx.accessLog.warn({ 'src.addr': srcAddr, 'dst.addr': formatHostPort(dstIp, dstPort), direction: 'inbound', error }, 'connection failed');
    abort(down);
  };
  const dst = ctx.servedWorkload(dstIp);
  if (!dst) return fail(`${dstIp} is not a workload served here`);
  if (Object.values(ctx.cfg.ports).includes(dstPort)) return fail(`refusing a connection to ztunnel's own port ${dstPort}`);
  const info: ConnectionInfo = { srcIp, dstIp, dstPort };
  const decision = authorize(ctx.state.policies.forWorkload(dst), info);
  if (!decision.allowed) return fail(decision.reason);

  const src = ctx.state.workloads.byAddress(ctx.cfg.network, srcIp);
  const telemetry = new ConnectionTelemetry(
    ctx.accessLog,
    ctx.metrics,
    { direction: 'inbound', srcIp, srcPort, srcWorkload: src?.name, srcNamespace: src?.namespace, dstIp, dstPort, dstWorkload: dst.name, dstNamespace: dst.namespace },
    trafficLabels({ reporter: 'destination', src: peerOf(src), dst: peerOf(dst), mtls: false }),
  );
  const conn = new DownstreamConnection(ctx.tracker, telemetry, down, info, dst.uid);
  let up: net.Socket;
  try {
    up = await connected(ctx.sockets.connect(dstIp, dstPort, ctx.spoofSource ? { spoofSource: srcIp } : undefined));
  } catch (err) {
    abort(down);
    return conn.finish((err as Error).message);
  }
  conn.start(up);
}
