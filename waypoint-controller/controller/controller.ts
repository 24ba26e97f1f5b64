// The control plane core: Kubernetes (through informers) -> translation -> the xDS resource store -> ztunnels.
import type { KubeConfig } from '@kubernetes/client-node';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { ResourceStore, XdsServer } from '../xds/index.js';
import { newCache } from './cache.js';
import { Informers } from './informers.js';
import { startMonitoring } from './monitoring.js';
import { Reconciler, type ControllerContext } from './reconciler.js';

export interface ControllerOptions extends ControllerContext {
  kubeConfig: KubeConfig;
  /** host:port for plaintext xDS (Istio's 15010). */
  xdsAddress: string;
  /** host:port for metrics and debug endpoints (Istio's 15014); none when absent. */
  monitoringAddress?: string;
  log: Logger;
}

export class Controller {
  readonly store = new ResourceStore();
  readonly cache = newCache();
  readonly xds: XdsServer;
  private readonly informers: Informers;
  private monitoring?: http.Server;
  private ready = false;
  xdsPort = 0;
  monitoringPort = 0;

  constructor(private readonly opts: ControllerOptions) {
    const reconciler = new Reconciler(this.cache, this.store, opts);
    this.informers = new Informers(opts.kubeConfig, this.cache, reconciler, opts.log);
    this.xds = new XdsServer({ store: this.store, log: opts.log });
  }

  /** Sync from Kubernetes first, so the first ztunnel to connect gets a complete view. */
  async start(): Promise<void> {
    await this.informers.start();
    this.xdsPort = await this.xds.listen(this.opts.xdsAddress);
    this.ready = true;
    if (this.opts.monitoringAddress) {
      const [host, port] = splitHostPort(this.opts.monitoringAddress);
      this.monitoring = await startMonitoring({ registry: this.xds.registry, debugState: () => this.xds.debugState(), ready: () => this.ready }, host, port);
      this.monitoringPort = (this.monitoring.address() as AddressInfo).port;
    }
    this.opts.log.info({ xds: this.opts.xdsAddress, port: this.xdsPort, resources: this.xds.debugState().resources }, 'controller ready');
  }

  async stop(): Promise<void> {
    this.ready = false;
    this.monitoring?.close();
    await this.informers.stop();
    await this.xds.close(1000);
  }
}

function splitHostPort(a: string): [string, number] {
  const i = a.lastIndexOf(':');
  return [a.slice(0, i).replace(/^\[|\]$/g, ''), Number(a.slice(i + 1))];
}
