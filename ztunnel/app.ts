// Wires a ztunnel together: sources -> state -> proxies, plus telemetry and admin. Dedicated mode for now.
import net from 'node:net';
import { pino, type Logger } from 'pino';
import { AdminServers } from './admin/servers.js';
import type { Config } from './config/env.js';
import { dialHbone } from './hbone/client.js';
import { HbonePool } from './hbone/pool.js';
import { HboneServer } from './hbone/server.js';
import { LocalCa } from './identity/local-ca.js';
import { CertificateManager } from './identity/manager.js';
import { formatIdentity, parseIdentity, type Identity } from './identity/spiffe.js';
import { originalDst, socketFd } from './native/index.js';
import { canonicalIp } from './net/ip.js';
import { LocalSocketFactory } from './net/sockets.js';
import type { ProxyContext } from './proxy/context.js';
import { handleInboundStream } from './proxy/inbound.js';
import { handleInboundPlaintext } from './proxy/inbound-passthrough.js';
import { handleOutbound } from './proxy/outbound.js';
import { handleSocks5 } from './proxy/socks5.js';
import { ConnectionTracker } from './proxy/tracker.js';
import { LocalFileSource } from './sources/local-file.js';
import { ProxyState } from './state/index.js';
import type { Workload } from './state/types.js';
import { Metrics } from './telemetry/metrics.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export class Ztunnel {
  readonly state = new ProxyState();
  readonly metrics = new Metrics();
  readonly tracker = new ConnectionTracker();
  readonly log: Logger;
  private readonly accessLog: Logger;
  private certs?: CertificateManager;
  private pool?: HbonePool;
  private source?: LocalFileSource;
  private hbone?: HboneServer;
  private readonly listeners: net.Server[] = [];
  private admin?: AdminServers;
  private ready = false;
  private stopping?: Promise<void>;
  private markStopped!: () => void;
  /** Resolves when a drain has finished. */
  readonly stopped = new Promise<void>((r) => (this.markStopped = r));

  constructor(private readonly cfg: Config, log?: Logger) {
    this.log = log ?? pino({ level: LEVELS.includes(cfg.logLevel) ? cfg.logLevel : 'info', base: { node: cfg.nodeName || undefined } });
    this.accessLog = this.log.child({ scope: 'access' });
  }

  async start(): Promise<void> {
    const cfg = this.cfg;
    if (cfg.proxyMode !== 'dedicated')
      throw new Error('PROXY_MODE=shared (in-pod mode) is not implemented yet; run with PROXY_MODE=dedicated and PROXY_WORKLOAD_INFO=<ns>/<name>/<sa>');
    if (!cfg.localXdsPath) throw new Error('LOCAL_XDS_PATH is required: the xDS client is not implemented yet');
    if (!cfg.localCaCert || !cfg.localCaKey) throw new Error('LOCAL_CA_CERT and LOCAL_CA_KEY are required: the remote CA client is not implemented yet');

    this.source = new LocalFileSource(cfg.localXdsPath, { trustDomain: cfg.trustDomain, clusterId: cfg.clusterId }, this.state, this.log);
    this.source.start();
    this.state.on('change', () => {
      const n = this.tracker.recheck(this.state);
      if (n > 0) this.log.info({ closed: n }, 'closed connections no longer allowed by policy');
    });

    const ca = await LocalCa.open(cfg.localCaCert, cfg.localCaKey, cfg.trustDomain);
    const certs = (this.certs = new CertificateManager(ca, cfg.certTtlSeconds, this.log));
    const sockets = new LocalSocketFactory();
    this.pool = new HbonePool(async (key) =>
      dialHbone({ ip: key.dstIp, port: key.dstPort, expectedIdentities: key.expectedIdentities }, await certs.get(parseIdentity(key.srcIdentity)), sockets),
    );

    const ctx: ProxyContext = {
      cfg, state: this.state, certs, pool: this.pool, sockets, metrics: this.metrics, log: this.log, accessLog: this.accessLog, tracker: this.tracker,
      servedWorkload: (ip) => {
        const w = this.state.workloads.byAddress(cfg.network, canonicalIp(ip));
        return w && this.isProxied(w) ? w : undefined;
      },
      sourceWorkload: (ip) => ctx.servedWorkload(ip) ?? this.proxiedWorkload(),
    };

    this.admin = new AdminServers(
      {
        configDump: () => this.configDump(),
        quit: () => void this.stop('quitquitquit'),
        setLogLevel: (level) => {
          if (!LEVELS.includes(level)) return false;
          this.log.level = level;
          this.accessLog.level = level;
          return true;
        },
        ready: () => this.ready,
        metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() }),
      },
      this.log,
    );
    await this.admin.start(cfg.bindAddress, cfg.ports);

    const identity = this.proxiedIdentity();
    const cert = await certs.get(identity);
    this.hbone = new HboneServer(cert, cfg.trustDomain, (stream, headers, peer) => void handleInboundStream(ctx, stream, headers, peer), this.log);
    certs.on('issued', (c) => c.identity === formatIdentity(identity) && this.hbone?.setCertificate(c));

    const redirected = (handler: (s: net.Socket, ip: string, port: number) => Promise<void>) =>
      net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => {
        s.on('error', () => {}); // handlers see failures through close/splice
        s.setNoDelay(true);
        let dst: { address: string; port: number };
        try {
          dst = originalDst(socketFd(s));
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'no original destination (connection not redirected?)');
          return void s.destroy();
        }
        void handler(s, dst.address, dst.port);
      });
    const { ports, bindAddress: bind } = cfg;
    await this.listen(redirected((s, ip, port) => handleOutbound(ctx, s, ip, port)), sockets, bind, ports.outbound);
    await this.listen(redirected((s, ip, port) => handleInboundPlaintext(ctx, s, ip, port)), sockets, bind, ports.inboundPlaintext);
    await sockets.listen(this.hbone.tls, bind, ports.inbound);
    if (cfg.enableSocks5) {
      // SOCKS5 is for apps on this host only.
      const socks = net.createServer({ allowHalfOpen: true }, (s) => void handleSocks5(ctx, s));
      await sockets.listen(socks, '127.0.0.1', ports.socks5);
      this.listeners.push(socks);
    }
    this.ready = true;
    this.log.info({ mode: cfg.proxyMode, identity: formatIdentity(identity), ports }, 'ztunnel ready');
  }

  private async listen(server: net.Server, sockets: LocalSocketFactory, host: string, port: number): Promise<void> {
    await sockets.listen(server, host, port);
    this.listeners.push(server);
  }

  private isProxied(w: Workload): boolean {
    const info = this.cfg.proxyWorkloadInfo!;
    return w.namespace === info.namespace && w.name === info.name && w.serviceAccount === info.serviceAccount;
  }

  private proxiedWorkload(): Workload | undefined {
    for (const w of this.state.workloads.all()) if (this.isProxied(w)) return w;
    return undefined;
  }

  private proxiedIdentity(): Identity {
    const info = this.cfg.proxyWorkloadInfo!;
    return { trustDomain: this.proxiedWorkload()?.trustDomain ?? this.cfg.trustDomain, namespace: info.namespace, serviceAccount: info.serviceAccount };
  }

  configDump(): unknown {
    const portMaps = (m: ReadonlyMap<string, ReadonlyMap<number, number>>) =>
      Object.fromEntries([...m].map(([k, v]) => [k, Object.fromEntries(v)]));
    return {
      workloads: [...this.state.workloads.all()].map((w) => ({ ...w, services: portMaps(w.services) })),
      services: [...this.state.services.all()].map((s) => ({
        ...s,
        vips: s.vips.map((v) => `${v.network}/${v.address}`),
        ports: Object.fromEntries(s.ports),
        endpoints: [...this.state.endpointsOf(s)].map(({ workload, endpoint }) => ({
          workloadUid: workload.uid, status: workload.status, port: Object.fromEntries(endpoint.ports),
        })),
      })),
      policies: [...this.state.policies.all()],
      certificates: this.certs?.dump() ?? [],
      config: { proxyMode: this.cfg.proxyMode, nodeName: this.cfg.nodeName, trustDomain: this.cfg.trustDomain, clusterId: this.cfg.clusterId, network: this.cfg.network },
    };
  }

  /** Drain: stop accepting, GOAWAY, wait for open connections up to the deadline, then close the rest. */
  stop(reason: string): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info({ reason, open: this.tracker.size, deadlineMs: this.cfg.terminationDeadlineMs }, 'draining');
      this.ready = false;
      for (const l of this.listeners) l.close();
      this.hbone?.shutdown();
      this.pool?.close();
      const drained = await this.tracker.waitIdle(this.cfg.terminationDeadlineMs);
      if (!drained) {
        this.log.warn({ open: this.tracker.size }, 'drain deadline reached; closing remaining connections');
        this.tracker.closeAll('drain deadline');
        this.hbone?.destroyAll();
      }
      this.source?.close();
      this.certs?.close();
      this.admin?.close();
      this.log.info('ztunnel stopped');
      this.markStopped();
    })();
    return this.stopping;
  }
}
