// The control plane core: Kubernetes (through informers) -> translation -> the xDS resource store -> ztunnels.
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { ResourceStore, XdsServer } from '../xds/index.js';
import { newCache } from './cache.js';
import { Informers } from './informers.js';
import { Reconciler, type ControllerContext } from './reconciler.js';

export interface ControllerOptions extends ControllerContext {
  kubeConfig: KubeConfig;
  /** host:port for plaintext xDS (Istio's 15010). */
  xdsAddress: string;
  log: Logger;
}

export class Controller {
  readonly store = new ResourceStore();
  readonly cache = newCache();
  readonly xds: XdsServer;
  private readonly informers: Informers;
  xdsPort = 0;

  constructor(private readonly opts: ControllerOptions) {
    const reconciler = new Reconciler(this.cache, this.store, opts);
    this.informers = new Informers(opts.kubeConfig, this.cache, reconciler, opts.log);
    this.xds = new XdsServer({ store: this.store, log: opts.log });
  }

  /** Sync from Kubernetes first, so the first ztunnel to connect gets a complete view. */
  async start(): Promise<void> {
    await this.informers.start();
    this.xdsPort = await this.xds.listen(this.opts.xdsAddress);
    this.opts.log.info({ xds: this.opts.xdsAddress, port: this.xdsPort, resources: this.xds.debugState().resources }, 'controller ready');
  }

  async stop(): Promise<void> {
    await this.informers.stop();
    await this.xds.close(1000);
  }
}
