// List+watch the kinds the controller translates and keep the cache and the resources up to date.
// The client's informers relist and re-watch on errors; a relist replays adds/updates/deletes, so the cache
// converges without duplicates (it is keyed by namespace/name).
import {
  CoreV1Api, CustomObjectsApi, makeInformer, type Informer, type KubeConfig, type KubernetesListObject, type KubernetesObject,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { objectKey, type Cached, type Kind } from './cache.js';
import type { Reconciler } from './reconciler.js';

const RESTART_DELAY_MS = 1000;

export class Informers {
  private readonly informers: Informer<KubernetesObject>[] = [];
  private stopped = false;

  constructor(
    private readonly kc: KubeConfig,
    private readonly cache: Cached,
    private readonly reconciler: Reconciler,
    private readonly log: Logger,
  ) {}

  /** Start every informer; resolves after each has done its first list. */
  async start(): Promise<void> {
    const core = this.kc.makeApiClient(CoreV1Api);
    const list = <T>(p: Promise<T>) => p as unknown as Promise<KubernetesListObject<KubernetesObject>>;
    const custom = (group: string, version: string, plural: string) => () =>
      list(this.kc.makeApiClient(CustomObjectsApi).listClusterCustomObject({ group, version, plural }));
    await Promise.all([
      this.watch('namespaces', '/api/v1/namespaces', () => list(core.listNamespace())),
      this.watch('nodes', '/api/v1/nodes', () => list(core.listNode())),
      this.watch('pods', '/api/v1/pods', () => list(core.listPodForAllNamespaces())),
      this.watch('services', '/api/v1/services', () => list(core.listServiceForAllNamespaces())),
      this.watch('policies', '/apis/security.istio.io/v1/authorizationpolicies', custom('security.istio.io', 'v1', 'authorizationpolicies')),
      this.watch('gateways', '/apis/gateway.networking.k8s.io/v1/gateways', custom('gateway.networking.k8s.io', 'v1', 'gateways')),
      this.watch('gatewayclasses', '/apis/gateway.networking.k8s.io/v1/gatewayclasses', custom('gateway.networking.k8s.io', 'v1', 'gatewayclasses')),
      this.watch('httproutes', '/apis/gateway.networking.k8s.io/v1/httproutes', custom('gateway.networking.k8s.io', 'v1', 'httproutes')),
    ]);
    this.reconciler.syncAll();
  }

  private async watch(kind: Kind, path: string, listFn: () => Promise<KubernetesListObject<KubernetesObject>>): Promise<void> {
    const inf = makeInformer(this.kc, path, listFn);
    const map = this.cache[kind] as Map<string, KubernetesObject>;
    const put = (o: KubernetesObject) => {
      const key = objectKey(o);
      map.set(key, o);
      this.reconciler.changed(kind, key);
    };
    inf.on('add', put);
    inf.on('update', put);
    inf.on('delete', (o) => {
      const key = objectKey(o);
      map.delete(key);
      this.reconciler.changed(kind, key);
    });
    inf.on('error', (err) => {
      if (this.stopped) return;
      this.log.warn({ kind, err: String((err as Error)?.message ?? err) }, 'watch failed; restarting');
      setTimeout(() => void inf.start().catch(() => {}), RESTART_DELAY_MS).unref();
    });
    this.informers.push(inf);
    await inf.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.informers.map((i) => i.stop().catch(() => {})));
  }
}
