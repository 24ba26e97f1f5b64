// Wires a ztunnel together: sources -> state -> proxies, plus telemetry and admin.
// Dedicated mode serves the one workload in ztunnel's own netns; shared mode serves every pod the node agent hands over.
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { dumpState } from './admin/config-dump.js';
import { AdminServers } from './admin/servers.js';
import type { Config } from './config/env.js';
import { CaClient } from './identity/ca-client.js';
import { LocalCa } from './identity/local-ca.js';
import { CertificateManager } from './identity/manager.js';
import type { CertificateProvider } from './identity/provider.js';
import { formatIdentity } from './identity/spiffe.js';
import { InpodManager } from './inpod/manager.js';
import { ZdsClient } from './inpod/zds-client.js';
import { NetnsSocketFactory } from './net/sockets.js';
import { WorkloadProxies, type Shared } from './proxy/workload-proxies.js';
import { LocalFileSource } from './sources/local-file.js';
import { ProxyState } from './state/index.js';
import { createLoggers, LEVELS } from './telemetry/log.js';
import { Metrics } from './telemetry/metrics.js';
import { XdsClient, defaultTokenPath } from './xds/client.js';
import { tlsChannel } from './net/grpc-tls.js';
import { ProxyThreads } from './workers/host.js';

export class Ztunnel {
  readonly state = new ProxyState();
  readonly metrics = new Metrics();
  readonly log: Logger;
  private readonly accessLog: Logger;
  private certs?: CertificateManager;
  private ca?: CertificateProvider;
  private source?: LocalFileSource;
  private xds?: XdsClient;
  private admin?: AdminServers;
  /** Dedicated mode. */
  private proxies?: WorkloadProxies;
  /** Shared mode. */
  private inpod?: InpodManager;
  private zds?: ZdsClient;
  /** Proxy threads beyond the main thread (ZTUNNEL_WORKER_THREADS > 1). */
  private threads?: ProxyThreads;
  /** Why the ztunnel stopped, when it was not asked to (the process should exit with an error). */
  failure?: Error;
  private started = false;
  private stopping?: Promise<void>;
  private markStopped!: () => void;
  /** Resolves when a drain has finished. */
  readonly stopped = new Promise<void>((r) => (this.markStopped = r));

  /** `log`: a logger of the caller's (the access log becomes its child); by default ztunnel's own, on stdout. */
  constructor(private readonly cfg: Config, log?: Logger) {
    const own = log ? { log, accessLog: log.child({ scope: 'access' }) } : createLoggers(cfg.logLevel, { node: cfg.nodeName || undefined });
    this.log = own.log;
    this.accessLog = own.accessLog;
  }

  private ready(): boolean {
    if (!this.started || this.stopping) return false;
    if (this.xds && !this.xds.ready()) return false;
    return this.inpod ? this.inpod.ready() : true;
  }

  async start(): Promise<void> {
    const cfg = this.cfg;
    if (!cfg.localXdsPath && !cfg.xdsAddress) throw new Error('no configuration source: set XDS_ADDRESS (host:port of the control plane) or LOCAL_XDS_PATH (a local YAML file)');
    if (cfg.localXdsPath && cfg.xdsAddress) throw new Error('XDS_ADDRESS and LOCAL_XDS_PATH are both set: choose one configuration source');
    // Fail on CA configuration before anything starts.
    const ca = await this.certificateProvider();

    if (cfg.localXdsPath) {
      this.source = new LocalFileSource(cfg.localXdsPath, { trustDomain: cfg.trustDomain, clusterId: cfg.clusterId }, this.state, this.log);
      this.source.start();
    } else {
      let tls: ReturnType<typeof tlsChannel> | undefined;
      if (cfg.xdsTls) {
        let roots: string;
        try {
          roots = readFileSync(cfg.xdsRootCertPath, 'utf8');
        } catch (e) {
          throw new Error(`XDS_ROOT_CA ${cfg.xdsRootCertPath}: cannot read the root certificate for xDS over TLS: ${(e as Error).message}`);
        }
        tls = tlsChannel([roots], cfg.xdsAddress!, cfg.xdsServerName);
      }
      this.xds = new XdsClient(
        {
          address: cfg.xdsAddress!,
          credentials: tls?.credentials,
          channelOptions: tls?.options,
          node: { ip: cfg.instanceIp, podName: cfg.podName, podNamespace: cfg.podNamespace, nodeName: cfg.nodeName, clusterId: cfg.clusterId },
          tokenPath: cfg.xdsAuthTokenPath ?? defaultTokenPath(),
          onDemand: cfg.xdsOnDemand,
          defaults: { trustDomain: cfg.trustDomain, clusterId: cfg.clusterId },
        },
        this.state,
        this.log.child({ scope: 'xds' }),
      );
      if (cfg.xdsOnDemand) this.state.resolver = this.xds;
      this.xds.start();
    }
    this.ca = ca;
    this.certs = new CertificateManager(ca, cfg.certTtlSeconds, this.log);
    const shared: Shared = { cfg, state: this.state, certs: this.certs, metrics: this.metrics, log: this.log, accessLog: this.accessLog };
    if (cfg.workerThreads > 1) {
      this.threads = new ProxyThreads(cfg.workerThreads - 1, { cfg, state: this.state, certs: this.certs, log: this.log }, (err) => {
        this.failure = err;
        this.log.fatal({ err: err.message }, 'a proxy thread failed; stopping');
        void this.stop('proxy thread failed');
      });
      await this.threads.start();
    }

    this.admin = new AdminServers(
      {
        configDump: () => this.configDump(),
        quit: () => void this.stop('quitquitquit'),
        setLogLevel: (level) => {
          if (!LEVELS.includes(level)) return false;
          this.log.level = level;
          this.accessLog.level = level;
          this.threads?.setLogLevel(level);
          return true;
        },
        ready: () => this.ready(),
        metrics: async () => {
          const registry = this.threads ? await this.threads.metrics(this.metrics.registry) : this.metrics.registry;
          return { contentType: registry.contentType, body: await registry.metrics() };
        },
      },
      this.log,
    );
    await this.admin.start(cfg.bindAddress, cfg.ports);

    if (cfg.proxyMode === 'dedicated') {
      // Threads share the ports through SO_REUSEPORT; a lone main thread keeps them exclusive (a second ztunnel fails).
      this.proxies = new WorkloadProxies(shared, cfg.proxyWorkloadInfo!, new NetnsSocketFactory(undefined, !!this.threads), false);
      await this.proxies.start();
      await this.threads?.addPod('dedicated', cfg.proxyWorkloadInfo!, undefined, false);
      this.log.info({ mode: 'dedicated', identity: formatIdentity(this.proxies.identity), ports: cfg.ports, threads: cfg.workerThreads }, 'ztunnel ready');
    } else {
      this.inpod = new InpodManager(shared, this.certs, this.threads);
      this.zds = new ZdsClient(cfg.inpodUds, this.inpod, this.log);
      this.zds.start();
      this.log.info({ mode: 'shared', inpodUds: cfg.inpodUds, ports: cfg.ports, threads: cfg.workerThreads }, 'ztunnel started; waiting for the pod snapshot');
    }
    this.started = true;
  }

  /** LOCAL_CA_CERT + LOCAL_CA_KEY: the local CA; else CA_ADDRESS (default the xDS address): the remote CA; else an error. */
  private async certificateProvider(): Promise<CertificateProvider> {
    const cfg = this.cfg;
    if (cfg.localCaCert || cfg.localCaKey) {
      if (!cfg.localCaCert || !cfg.localCaKey) throw new Error('LOCAL_CA_CERT and LOCAL_CA_KEY must be set together (local CA), or neither (remote CA at CA_ADDRESS)');
      this.log.info({ cert: cfg.localCaCert }, 'certificates from the local CA');
      return LocalCa.open(cfg.localCaCert, cfg.localCaKey, cfg.trustDomain);
    }
    if (!cfg.caAddress)
      throw new Error('no certificate authority: set CA_ADDRESS (or XDS_ADDRESS) for the remote CA, or LOCAL_CA_CERT and LOCAL_CA_KEY for the local CA');
    const tokenPath = cfg.caAuthTokenPath ?? defaultTokenPath();
    const client = new CaClient(
      {
        address: cfg.caAddress,
        plaintext: cfg.caPlaintext,
        rootCertPath: cfg.caRootCertPath,
        serverName: cfg.caServerName,
        tokenPath,
        clusterId: cfg.clusterId,
        headers: cfg.caHeaders,
      },
      this.log.child({ scope: 'ca' }),
    );
    this.log.info({ address: cfg.caAddress, plaintext: cfg.caPlaintext, root: cfg.caRootCertPath, serverName: cfg.caServerName, tokenPath }, 'certificates from the remote CA');
    return client;
  }

  configDump(): unknown {
    return {
      ...dumpState(this.state),
      certificates: this.certs?.dump() ?? [],
      ...(this.inpod ? { pods: this.inpod.dump() } : {}),
      config: { workerThreads: this.cfg.workerThreads, xdsAddress: this.cfg.xdsAddress, caAddress: this.cfg.localCaCert ? undefined : this.cfg.caAddress, xdsOnDemand: this.cfg.xdsOnDemand, proxyMode: this.cfg.proxyMode, nodeName: this.cfg.nodeName, trustDomain: this.cfg.trustDomain, clusterId: this.cfg.clusterId, network: this.cfg.network },
    };
  }

  /** Drain: stop accepting, GOAWAY, wait for open connections up to the deadline, then close the rest. */
  stop(reason: string): Promise<void> {
    this.stopping ??= (async () => {
      const deadlineMs = this.cfg.terminationDeadlineMs;
      const threadsOpen = this.threads && !this.failure ? await this.threads.openConnections().catch(() => 0) : 0;
      const open = (this.proxies?.tracker.size ?? this.inpod?.openConnections ?? 0) + threadsOpen;
      this.log.info({ reason, open, deadlineMs }, 'draining');
      this.zds?.close();
      await Promise.all([this.proxies?.drain(deadlineMs) ?? this.inpod?.drainAll(deadlineMs), this.threads?.drain(deadlineMs)]);
      this.source?.close();
      this.xds?.close();
      this.certs?.close();
      this.ca?.close?.();
      this.admin?.close();
      this.log.info('ztunnel stopped');
      this.markStopped();
    })();
    return this.stopping;
  }
}
