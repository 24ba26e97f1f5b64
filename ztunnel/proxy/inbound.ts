// Inbound HBONE: a CONNECT stream from another ztunnel is checked, authorized and spliced to the local app.
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type net from 'node:net';
import { checkConnectRequest, parseBaggage } from '../hbone/headers.js';
import type { Identity } from '../identity/spiffe.js';
import { formatHostPort } from '../net/ip.js';
import { connected } from '../net/sockets.js';
import { authorize, type ConnectionInfo } from '../rbac/authorize.js';
import { ConnectionTelemetry } from '../telemetry/connection.js';
import { peerOf, trafficLabels } from '../telemetry/metrics.js';
import { InboundTunnel } from './connections.js';
import type { ProxyContext } from './context.js';
import { identityUri, workloadUri } from './shared-strings.js';

export interface HbonePeer {
  identity: Identity;
  ip: string;
  port: number;
}

function reply(stream: ServerHttp2Stream, status: number): void {
  // The client may already have reset the stream.
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond({ ':status': status }, { endStream: true });
}

/**
 * Resolves once the stream is answered; an accepted one then lives on in its own object (the request headers are not
 * kept: what the connection needs later is taken out of them here).
 */
export async function handleInboundStream(ctx: ProxyContext, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, peer: HbonePeer): Promise<void> {
  const srcAddr = formatHostPort(peer.ip, peer.port);
  const srcIdentity = identityUri(peer.identity);
  const early = (status: number, error: string) => {
    ctx.accessLog.warn({ 'src.addr': srcAddr, 'src.identity': srcIdentity, 'dst.addr': String(headers[':authority']), direction: 'inbound', status, error }, 'connection failed');
    reply(stream, status);
  };
  const check = checkConnectRequest(headers);
  if (!check.ok) return early(400, check.reason);
  const dst = ctx.servedWorkload(check.ip);
  if (!dst) return early(400, `${check.ip} is not a workload served here`);

  const info: ConnectionInfo = { srcIp: peer.ip, dstIp: check.ip, dstPort: check.port, srcIdentity: peer.identity };
  const decision = authorize(ctx.state.policies.forWorkload(dst), info);
  for (const d of decision.dryRun) ctx.log.info({ policy: d.policy, action: d.action, matched: d.matched, 'src.identity': srcIdentity }, 'dry-run policy evaluated');
  if (!decision.allowed) return early(401, decision.reason);

  const src = ctx.state.workloads.byAddress(ctx.cfg.network, peer.ip);
  // What the source says of itself counts only when our state does not know it.
  const srcPeer = src ? peerOf(src) : parseBaggage(headers.baggage as string | undefined);
  const dstIdentity = workloadUri(dst);
  const serviceHost = /;host=([^;,]+)/.exec(String(headers.forwarded ?? ''))?.[1];
  const service = serviceHost ? ctx.state.services.byHostname(serviceHost) : undefined;
  const telemetry = new ConnectionTelemetry(
    ctx.accessLog,
    ctx.metrics,
    {
      direction: 'inbound',
      srcIp: peer.ip,
      srcPort: peer.port,
      srcWorkload: src?.name ?? srcPeer.workloadName,
      srcNamespace: src?.namespace ?? srcPeer.namespace,
      srcIdentity,
      dstIp: check.ip,
      dstPort: check.port,
      dstService: service?.hostname,
      dstWorkload: dst.name,
      dstNamespace: dst.namespace,
      dstIdentity,
    },
    trafficLabels({ reporter: 'destination', src: srcPeer, srcPrincipal: srcIdentity, dst: peerOf(dst), dstPrincipal: dstIdentity, service, mtls: true }),
  );
  // Tracked from here: a drain or a policy change while the app is being connected closes it too.
  const conn = new InboundTunnel(ctx.tracker, telemetry, stream, info, dst.uid);
  let upstream: net.Socket;
  try {
    upstream = await connected(ctx.sockets.connect(check.ip, check.port, ctx.spoofSource ? { spoofSource: peer.ip } : undefined));
  } catch (err) {
    reply(stream, 503);
    return conn.finish(`upstream ${formatHostPort(check.ip, check.port)} unreachable: ${(err as Error).message}`);
  }
  conn.start(upstream);
}
