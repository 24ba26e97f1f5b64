// The listeners that serve one workload (dedicated mode: ztunnel's own netns; shared mode: one per pod, inside the
// pod's netns): outbound 15001, inbound plaintext 15006, HBONE 15008, optional SOCKS5 15080. Owns their connections.
import net from 'node:net';
import type { Logger } from 'pino';
import type { Config, WorkloadInfo } from '../config/env.js';
import { dialHbone } from '../hbone/client.js';
import { HbonePool } from '../hbone/pool.js';
import { HboneServer } from '../hbone/server.js';
import type { CertificateSource, WorkloadCertificate } from '../identity/manager.js';
import { formatIdentity, parseIdentity, type Identity } from '../identity/spiffe.js';
import { originalDst, socketFd } from '../native/index.js';
import { canonicalIp } from '../net/ip.js';
import type { SocketFactory } from '../net/sockets.js';
import type { ProxyState } from '../state/index.js';
import type { Workload } from '../state/types.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { ProxyContext } from './context.js';
import { handleInboundStream } from './inbound.js';
import { handleInboundPlaintext } from './inbound-passthrough.js';
import { handleOutbound } from './outbound.js';
import { handleSocks5 } from './socks5.js';
import { ignoreUntilSpliced } from './splice.js';
import { ConnectionTracker } from './tracker.js';

export interface Shared {
  cfg: Config;
  state: ProxyState;
  certs: CertificateSource;
  metrics: Metrics;
  log: Logger;
  accessLog: Logger;
}

export class WorkloadProxies {
  readonly tracker = new ConnectionTracker();
  readonly identity: Identity;
  private readonly ctx: ProxyContext;
  private readonly pool: HbonePool;
  private readonly servers: net.Server[] = [];
  private hbone?: HboneServer;
  private readonly onChange = () => {
    const n = this.tracker.recheck(this.shared.state);
    if (n > 0) this.ctx.log.info({ closed: n }, 'closed connections no longer allowed by policy');
  };
  private readonly onIssued = (c: WorkloadCertificate) => {
    if (c.identity === formatIdentity(this.identity)) this.hbone?.setCertificate(c);
  };

  constructor(
    private readonly shared: Shared,
    readonly info: WorkloadInfo,
    private readonly sockets: SocketFactory,
    /** Keep the client's IP on connections to the app (needs the in-pod routing rules). */
    spoofSource: boolean,
  ) {
    const { cfg, state, certs } = shared;
    this.identity = { trustDomain: this.workload()?.trustDomain || cfg.trustDomain, namespace: info.namespace, serviceAccount: info.serviceAccount };
    this.pool = new HbonePool(async (key) =>
      dialHbone({ ip: key.dstIp, port: key.dstPort, expectedIdentities: key.expectedIdentities }, await certs.get(parseIdentity(key.srcIdentity)), sockets),
    );
    const log = shared.log.child({ workload: `${info.namespace}/${info.name}` });
    this.ctx = {
      cfg, state, certs, pool: this.pool, sockets, metrics: shared.metrics, log, accessLog: shared.accessLog, tracker: this.tracker, spoofSource,
      servedWorkload: (ip) => {
        const w = state.workloads.byAddress(cfg.network, canonicalIp(ip));
        return w && this.isMine(w) ? w : undefined;
      },
      sourceWorkload: (ip) => this.ctx.servedWorkload(ip) ?? this.workload(),
    };
  }

  private isMine(w: Workload): boolean {
    return w.namespace === this.info.namespace && w.name === this.info.name && w.serviceAccount === this.info.serviceAccount;
  }

  /** The state's record of this workload (it may arrive after the pod). */
  workload(): Workload | undefined {
    for (const w of this.shared.state.workloads.all()) if (this.isMine(w)) return w;
    return undefined;
  }

  /** The workload's xDS resource name (Istio's uid convention), kept subscribed in on-demand mode. */
  private get xdsUid(): string {
    return `${this.shared.cfg.clusterId}//v1/Pod/${this.info.namespace}/${this.info.name}`;
  }

  async start(): Promise<void> {
    const { cfg, certs } = this.shared;
    this.shared.state.resolver?.pin?.(this.xdsUid);
    const { ports, bindAddress: bind } = cfg;
    const cert = await certs.get(this.identity);
    this.hbone = new HboneServer(cert, cfg.trustDomain, (stream, headers, peer) => void handleInboundStream(this.ctx, stream, headers, peer), this.ctx.log);
    try {
      await this.listen(this.redirected((s, ip, port) => handleOutbound(this.ctx, s, ip, port)), bind, ports.outbound);
      await this.listen(this.redirected((s, ip, port) => handleInboundPlaintext(this.ctx, s, ip, port)), bind, ports.inboundPlaintext);
      await this.listen(this.hbone.tls, bind, ports.inbound);
      // SOCKS5 is for apps in the same network namespace only.
      if (cfg.enableSocks5) await this.listen(net.createServer({ allowHalfOpen: true }, (s) => void handleSocks5(this.ctx, s)), '127.0.0.1', ports.socks5);
    } catch (err) {
      this.close();
      throw err;
    }
    this.shared.state.on('change', this.onChange);
    certs.on('issued', this.onIssued);
  }

  private async listen(server: net.Server, host: string, port: number): Promise<void> {
    await this.sockets.listen(server, host, port);
    this.servers.push(server);
  }

  /** A listener for traffic that iptables redirected: the original destination comes from the socket. */
  private redirected(handler: (s: net.Socket, ip: string, port: number) => Promise<void>): net.Server {
    return net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => {
      s.on('error', ignoreUntilSpliced); // handlers see failures through close/splice (TCP_NODELAY: from the listener)
      let dst: { address: string; port: number };
      try {
        dst = originalDst(socketFd(s));
      } catch (err) {
        this.ctx.log.warn({ err: (err as Error).message }, 'no original destination (connection not redirected?)');
        return void s.destroy();
      }
      void handler(s, dst.address, dst.port);
    });
  }

  /** Stop accepting and send GOAWAY; open connections may finish. */
  stopAccepting(): void {
    for (const s of this.servers) s.close();
    this.hbone?.shutdown();
    this.pool.close();
  }

  /** Drain: stop accepting, wait for open connections up to the deadline, then close the rest. */
  async drain(deadlineMs: number): Promise<boolean> {
    this.stopAccepting();
    const drained = await this.tracker.waitIdle(deadlineMs);
    if (!drained) this.ctx.log.warn({ open: this.tracker.size }, 'drain deadline reached; closing remaining connections');
    this.close();
    // What was closed finishes (and writes its access-log line) as its sockets close, a turn or so later.
    if (!drained) await this.tracker.waitIdle(500);
    return drained;
  }

  /** Close everything at once. */
  close(): void {
    this.stopAccepting();
    this.tracker.closeAll('proxy closed');
    this.hbone?.destroyAll();
    this.shared.state.off('change', this.onChange);
    this.shared.certs.off('issued', this.onIssued);
    this.shared.state.resolver?.unpin?.(this.xdsUid);
  }
}
