// Outbound: a local app's connection (captured on 15001, or from SOCKS5) goes to its destination over HBONE or TCP.
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { buildConnectHeaders } from '../hbone/headers.js';
import { formatIdentity, workloadIdentity } from '../identity/spiffe.js';
import { canonicalIp, formatHostPort } from '../net/ip.js';
import { connected } from '../net/sockets.js';
import { ConnectionTelemetry } from '../telemetry/connection.js';
import { peerOf, trafficLabels } from '../telemetry/metrics.js';
import type { ProxyContext } from './context.js';
import { resolveAndRoute, type Route } from './route.js';
import { abort, splice } from './splice.js';

/** Ports ztunnel itself listens on: a connection aimed at them on a local address would loop back into us. */
function isOwnPort(ctx: ProxyContext, ip: string, port: number): boolean {
  const own = Object.values(ctx.cfg.ports).includes(port);
  return own && (ip.startsWith('127.') || ip === '::1' || ctx.servedWorkload(ip) !== undefined);
}

export async function handleOutbound(ctx: ProxyContext, down: net.Socket, dstIpRaw: string, dstPort: number): Promise<void> {
  const srcIp = canonicalIp(down.remoteAddress ?? '');
  const srcPort = down.remotePort ?? 0;
  const dstIp = canonicalIp(dstIpRaw);
  const dstAddr = formatHostPort(dstIp, dstPort);
  const fail = (reason: string) => {
    ctx.accessLog.warn({ 'src.addr': formatHostPort(srcIp, srcPort), 'dst.addr': dstAddr, direction: 'outbound', error: reason }, 'connection failed');
    abort(down);
  };
  if (isOwnPort(ctx, dstIp, dstPort)) return fail(`refusing a connection to ztunnel's own port ${dstAddr}`);

  const r: Route = await resolveAndRoute(ctx.state, ctx.cfg.network, dstIp, dstPort);
  if (down.destroyed) return; // the app gave up while the destination was being looked up
  const src = ctx.sourceWorkload(srcIp);
  if (r.kind === 'reject') return fail(r.reason);

  const srcIdentity = src ? formatIdentity(workloadIdentity(src)) : undefined;
  const service = r.kind === 'passthrough' ? undefined : r.service;
  const dstWorkload = r.kind === 'passthrough' ? undefined : r.workload;
  const mtls = r.kind === 'hbone';
  const dstIdentity = dstWorkload && mtls ? formatIdentity(workloadIdentity(dstWorkload)) : undefined;
  const telemetry = new ConnectionTelemetry(
    ctx.accessLog,
    ctx.metrics,
    {
      direction: 'outbound',
      srcAddr: formatHostPort(srcIp, srcPort),
      srcWorkload: src?.name,
      srcNamespace: src?.namespace,
      srcIdentity: mtls ? srcIdentity : undefined,
      dstAddr: r.kind === 'hbone' ? formatHostPort(r.targetIp, r.targetPort) : formatHostPort(r.ip, r.port),
      dstHboneAddr: r.kind === 'hbone' ? formatHostPort(r.hboneIp, r.hbonePort) : undefined,
      dstService: service?.hostname,
      dstWorkload: dstWorkload?.name,
      dstNamespace: dstWorkload?.namespace,
      dstIdentity,
    },
    trafficLabels({ reporter: 'source', src: peerOf(src), srcPrincipal: srcIdentity, dst: peerOf(dstWorkload), dstPrincipal: dstIdentity, service, mtls }),
  );
  const untrack = ctx.tracker.add({ close: () => abort(down) });
  let upstream: Duplex | undefined;
  let error: string | undefined;
  try {
    if (r.kind === 'hbone') {
      if (!src) throw new Error(`no local workload has address ${srcIp}, so there is no identity to connect with`);
      upstream = await ctx.pool.connect(
        { srcIdentity: srcIdentity!, expectedIdentities: r.expectedIdentities, dstIp: r.hboneIp, dstPort: r.hbonePort, srcIp },
        buildConnectHeaders({ dstIp: r.targetIp, dstPort: r.targetPort, srcIp, srcPort, source: src, serviceHost: service?.hostname }),
      );
    } else {
      upstream = await connected(ctx.sockets.connect(r.ip, r.port));
    }
    const err = await splice(down, upstream);
    error = err?.message;
  } catch (err) {
    error = (err as Error).message;
    if (!down.destroyed) abort(down);
  } finally {
    untrack();
    telemetry.closed(down.bytesRead, down.bytesWritten, error);
  }
}
