// Entry point: start()/close() of the embedded API server, and a KubeConfig for it.
import { createPrivateKey, type KeyObject } from 'node:crypto';
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
import { ServiceAccountsController } from './serviceaccounts-controller.js';
import { Store } from './store.js';
import { generateSigningKey, persistentSigningKey, signingKeyFrom, type SigningKey } from './jwt.js';
import {
  DEFAULT_ISSUER, MIN_EXPIRATION_SECONDS, TokenService, writeTokenFile, type MintedToken, type MintRequest, type TokenReviewStatus,
} from './tokens.js';
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
  /** Run the built-in service-account controller (a `default` ServiceAccount in every namespace). Default true. */
  serviceAccountsController?: boolean;
  /** Service-account token issuer (`iss`). Default https://kubernetes.default.svc.cluster.local. */
  issuer?: string;
  /** Audiences of tokens requested without any (and of reviews without any). Default [issuer]. */
  apiAudiences?: string[];
  /** ECDSA P-256 private key (PEM or KeyObject) that signs service-account tokens. Default: kept in
   *  `<stateDir>/service-account-key.pem`, or generated at start when there is no stateDir. */
  serviceAccountSigningKey?: string | KeyObject;
  /** Shortest TokenRequest allowed. Default 600 s, as Kubernetes. */
  minTokenExpirationSeconds?: number;
  /** Longer TokenRequests are shortened to this. Default: no limit. */
  maxTokenExpirationSeconds?: number;
  /** Clock for tokens (ms since the epoch): issue times and review checks. Default Date.now. */
  now?: () => number;
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
  /** Service-account token issuer and verifier (undefined when ServiceAccount is not served). */
  readonly tokens: TokenService | undefined;
  /** The `iss` of the tokens this server issues. */
  readonly issuer: string;
  /** Issue a service-account token as TokenRequest does (the ServiceAccount, and a bound pod, must
   *  exist; throws ApiError like the endpoint). */
  mintToken(req: MintRequest): MintedToken;
  /** Mint a token and write it to `path` (atomically, mode 0600), as the kubelet projects one. */
  writeToken(path: string, req: MintRequest): MintedToken;
  /** TokenReview from code. */
  reviewToken(token: string, audiences?: string[]): TokenReviewStatus;
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

function signingKey(options: ApiServerOptions): SigningKey {
  const k = options.serviceAccountSigningKey;
  if (k !== undefined) return signingKeyFrom(typeof k === 'string' ? createPrivateKey(k) : k);
  return options.stateDir ? persistentSigningKey(options.stateDir) : generateSigningKey();
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
  const hasServiceAccounts = registry.forKind('v1', 'ServiceAccount') !== undefined && registry.forKind('v1', 'Namespace') !== undefined;
  const saController = options.serviceAccountsController === false || !hasServiceAccounts ? undefined : new ServiceAccountsController(store, ops, registry, options.log);
  saController?.start();

  const issuer = options.issuer ?? DEFAULT_ISSUER;
  const tokens = registry.forKind('v1', 'ServiceAccount') ? new TokenService(store, registry, {
    key: signingKey(options), issuer, apiAudiences: options.apiAudiences?.length ? options.apiAudiences : [issuer],
    now: options.now ?? Date.now, minExpirationSeconds: options.minTokenExpirationSeconds ?? MIN_EXPIRATION_SECONDS,
    maxExpirationSeconds: options.maxTokenExpirationSeconds, sync: () => saController?.flush(),
  }) : undefined;
  const needTokens = (): TokenService => {
    if (!tokens) throw new Error('service-account tokens need v1 ServiceAccount to be served');
    return tokens;
  };

  const host = options.host ?? '127.0.0.1';
  let url = '';
  const handler = new ApiHandler(ops, store, registry, {
    token: options.token, bookmarkIntervalMs: options.bookmarkIntervalMs ?? 60_000, serverAddress: () => url.replace(/^http:\/\//, ''), tokens, log: options.log,
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
    url, port, store, ops, registry, tokens, issuer,
    kubeConfig: (namespace?: string) => kubeConfigFor(url, options.token, namespace),
    mintToken: (req) => needTokens().mint(req),
    writeToken: (path, req) => {
      const minted = needTokens().mint(req);
      writeTokenFile(path, minted.token);
      return minted;
    },
    reviewToken: (token, audiences) => needTokens().review(token, audiences),
    dropWatches: () => { for (const w of [...handler.watches]) w.close(); },
    close: () => {
      closed ??= (async () => {
        controller?.stop();
        saController?.stop();
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
