// Outbound: a local app's connection (captured on 15001, or from SOCKS5) goes to its destination over HBONE or TCP.
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { buildConnectHeaders } from '../hbone/headers.js';
import { canonicalIp, formatHostPort } from '../net/ip.js';
import { connected } from '../net/sockets.js';
import type { GatewayAddress } from '../state/types.js';
import { ConnectionTelemetry } from '../telemetry/connection.js';
import { peerOf, trafficLabels } from '../telemetry/metrics.js';
import { DownstreamConnection } from './connections.js';
import type { ProxyContext } from './context.js';
import { resolveAndRoute, type Route } from './route.js';
import { baggageOf, waypointName, workloadUri } from './shared-strings.js';
import { abort } from './splice.js';

/** Ports ztunnel itself listens on: a connection aimed at them on a local address would loop back into us. */
function isOwnPort(ctx: ProxyContext, ip: string, port: number): boolean {
  const own = Object.values(ctx.cfg.ports).includes(port);
  return own && (ip.startsWith('127.') || ip === '::1' || ctx.servedWorkload(ip) !== undefined);
}

/** Resolves once the connection is set up (or has failed); the open connection then lives on in its own object. */
export async function handleOutbound(ctx: ProxyContext, down: net.Socket, dstIpRaw: string, dstPort: number): Promise<void> {
  const srcIp = canonicalIp(down.remoteAddress ?? '');
  const srcPort = down.remotePort ?? 0;
  const dstIp = canonicalIp(dstIpRaw);
  const dstAddr = formatHostPort(dstIp, dstPort);
  const fail = (reason: string, waypoint?: GatewayAddress) => {
    const line = { 'src.addr': formatHostPort(srcIp, srcPort), 'dst.addr': dstAddr, 'dst.waypoint': waypoint && waypointName(waypoint), direction: 'outbound', error: reason };
    ctx.accessLog.warn(line, 'connection failed');
    abort(down);
  };
  if (isOwnPort(ctx, dstIp, dstPort)) return fail(`refusing a connection to ztunnel's own port ${dstAddr}`);

  // The source decides too: a waypoint's own pods never go through their waypoint.
  const src = ctx.sourceWorkload(srcIp);
  const r: Route = await resolveAndRoute(ctx.state, ctx.cfg.network, dstIp, dstPort, undefined, src);
  if (down.destroyed) return; // the app gave up while the destination was being looked up
  if (r.kind === 'reject') return fail(r.reason, r.waypoint);

  const srcIdentity = src ? workloadUri(src) : undefined;
  const service = r.kind === 'passthrough' ? undefined : r.service;
  const dstWorkload = r.kind === 'passthrough' ? undefined : r.workload;
  const mtls = r.kind === 'hbone';
  const dstIdentity = dstWorkload && mtls ? workloadUri(dstWorkload) : undefined;
  const telemetry = new ConnectionTelemetry(
    ctx.accessLog,
    ctx.metrics,
    {
      direction: 'outbound',
      srcIp,
      srcPort,
      srcWorkload: src?.name,
      srcNamespace: src?.namespace,
      srcIdentity: mtls ? srcIdentity : undefined,
      dstIp: r.kind === 'hbone' ? r.targetIp : r.ip,
      dstPort: r.kind === 'hbone' ? r.targetPort : r.port,
      dstHboneIp: r.kind === 'hbone' ? r.hboneIp : undefined,
      dstHbonePort: r.kind === 'hbone' ? r.hbonePort : undefined,
      dstService: service?.hostname,
      dstWaypoint: r.kind === 'hbone' && r.waypoint ? waypointName(r.waypoint) : undefined,
      dstWorkload: dstWorkload?.name,
      dstNamespace: dstWorkload?.namespace,
      dstIdentity,
    },
    trafficLabels({ reporter: 'source', src: peerOf(src), srcPrincipal: srcIdentity, dst: peerOf(dstWorkload), dstPrincipal: dstIdentity, service, mtls }),
  );
  const conn = new DownstreamConnection(ctx.tracker, telemetry, down);
  let upstream: Duplex;
  try {
    if (r.kind === 'hbone') {
      if (!src) throw new Error(`no local workload has address ${srcIp}, so there is no identity to connect with`);
      upstream = await ctx.pool.connect(
        { srcIdentity: srcIdentity!, expectedIdentities: r.expectedIdentities, dstIp: r.hboneIp, dstPort: r.hbonePort, srcIp },
        // The tunnel goes to hboneIp:hbonePort, the CONNECT asks for targetIp:targetPort (through a waypoint: what the app dialled).
        buildConnectHeaders({ dstIp: r.targetIp, dstPort: r.targetPort, srcIp, srcPort, baggage: baggageOf(src), serviceHost: service?.hostname }),
      );
    } else {
      upstream = await connected(ctx.sockets.connect(r.ip, r.port));
    }
  } catch (err) {
    if (!down.destroyed) abort(down);
    return conn.finish((err as Error).message);
  }
  conn.start(upstream);
}
