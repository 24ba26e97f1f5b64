// Entry point: start()/close() of the embedded API server, and a KubeConfig for it.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { EndpointsController } from './endpoints-controller.js';
import { ApiError } from './errors.js';
import { ApiHandler } from './http.js';
import { Operations } from './operations.js';
import { StateDir } from './persistence.js';
import { DEFAULT_RESOURCES, ResourceRegistry } from './resources.js';
import { readManifestDir } from './seed.js';
import { Store } from './store.js';
import type { KubeObject, ResourceType } from './types.js';

export interface ApiServerOptions {
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Port; 0 (default) picks a free one. */
  port?: number;
  /** Require `Authorization: Bearer <token>` on every API request (health endpoints excepted). */
  token?: string;
  /** Folder of Kubernetes YAML (multi-document, `kind: List`, recursive) loaded into a fresh state
   *  (skipped when stateDir holds a saved state). Seeded objects keep their status. */
  seedDir?: string;
  /** Objects created at start if absent (after seedDir). */
  seedObjects?: KubeObject[];
  /** Keep state here (write-through JSON, reloaded on start). Default: in memory only. */
  stateDir?: string;
  /** Change events kept for watch resume; older resourceVersions get 410 Gone. Default 1000. */
  historySize?: number;
  /** Interval of BOOKMARK events on watches with allowWatchBookmarks. Default 60 s. */
  bookmarkIntervalMs?: number;
  /** Range ClusterIPs are allocated from. Default 10.96.0.0/16. */
  serviceCidr?: string;
  /** Run the built-in EndpointSlice controller. Default true. */
  endpointsController?: boolean;
  /** Served kinds; default DEFAULT_RESOURCES. */
  resources?: readonly ResourceType[];
  /** Namespaces that always exist. Default default, kube-system, kube-public, kube-node-lease. */
  defaultNamespaces?: string[];
  log?: (msg: string) => void;
}

/** A KubeConfig for a plain-HTTP API server at `url` (no auth, or a static bearer token). */
export function kubeConfigFor(url: string, token?: string, namespace?: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'ambit', server: url, skipTLSVerify: true }],
    users: [token !== undefined ? { name: 'ambit', token } : { name: 'ambit' }],
    contexts: [{ name: 'ambit', cluster: 'ambit', user: 'ambit', ...(namespace ? { namespace } : {}) }],
    currentContext: 'ambit',
  });
  return kc;
}

export interface ApiServer {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  readonly store: Store;
  readonly ops: Operations;
  readonly registry: ResourceRegistry;
  /** A KubeConfig pointing at this server (with the token, if one is configured). */
  kubeConfig(namespace?: string): KubeConfig;
  /** End every open watch stream now (clients see the connection close), e.g. to test reconnects. */
  dropWatches(): void;
  /** End watches, stop the controller, close the listener. */
  close(): Promise<void>;
}

function seed(ops: Operations, registry: ResourceRegistry, objects: KubeObject[]): void {
  const ordered = [...objects.filter((o) => o.kind === 'Namespace'), ...objects.filter((o) => o.kind !== 'Namespace')];
  for (const o of ordered) {
    const rt = registry.forKind(o.apiVersion, o.kind);
    const what = `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name ?? ''}`;
    if (!rt) throw new Error(`seed: ${what}: kind ${o.apiVersion}/${o.kind} is not served`);
    const ns = rt.namespaced ? o.metadata.namespace ?? 'default' : undefined;
    if (o.metadata.name && rtExists(ops, rt, ns, o.metadata.name)) continue;
    try {
      ops.create(rt, ns, o, { seed: true });
    } catch (e) {
      throw new Error(`seed: ${what}: ${(e as Error).message}`);
    }
  }
}

function rtExists(ops: Operations, rt: ResourceType, ns: string | undefined, name: string): boolean {
  try { ops.get(rt, ns, name); return true; } catch (e) { if (e instanceof ApiError && e.code === 404) return false; throw e; }
}

export async function start(options: ApiServerOptions = {}): Promise<ApiServer> {
  const registry = new ResourceRegistry(options.resources ?? DEFAULT_RESOURCES);
  const persistence = options.stateDir ? new StateDir(options.stateDir) : undefined;
  const loaded = persistence?.load(registry);
  const store = new Store({ historySize: options.historySize ?? 1000, initialResourceVersion: loaded?.resourceVersion ?? 0, persistence });
  for (const [rt, o] of loaded?.objects ?? []) store.load(rt, o);
  const ops = new Operations(store, registry, { serviceCidr: options.serviceCidr });

  const nsType = registry.forKind('v1', 'Namespace');
  if (nsType) {
    for (const name of options.defaultNamespaces ?? ['default', 'kube-system', 'kube-public', 'kube-node-lease']) {
      if (!store.get(nsType, undefined, name)) ops.create(nsType, undefined, { metadata: { name } });
    }
  }
  // Seeds initialise a fresh state; a state kept in stateDir is authoritative (deleted objects stay deleted).
  if (!loaded || loaded.objects.length === 0) {
    seed(ops, registry, [...(options.seedDir ? readManifestDir(options.seedDir) : []), ...(options.seedObjects ?? [])]);
  }

  const controller = options.endpointsController === false ? undefined : new EndpointsController(store, ops, registry, options.log);
  controller?.start();

  const host = options.host ?? '127.0.0.1';
  let url = '';
  const handler = new ApiHandler(ops, store, registry, {
    token: options.token, bookmarkIntervalMs: options.bookmarkIntervalMs ?? 60_000, serverAddress: () => url.replace(/^http:\/\//, ''), log: options.log,
  });
  const server: Server = createServer(handler.handle);
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => { server.off('error', reject); resolve(); });
  });
  const port = (server.address() as AddressInfo).port;
  url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

  let closed: Promise<void> | undefined;
  return {
    url, port, store, ops, registry,
    kubeConfig: (namespace?: string) => kubeConfigFor(url, options.token, namespace),
    dropWatches: () => { for (const w of [...handler.watches]) w.close(); },
    close: () => {
      closed ??= (async () => {
        controller?.stop();
        for (const w of [...handler.watches]) w.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      })();
      return closed;
    },
  };
}
