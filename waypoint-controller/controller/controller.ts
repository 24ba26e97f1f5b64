// The control plane core: Kubernetes (through informers) -> translation -> the xDS resource store -> ztunnels,
// and the mesh CA. xDS and the CA share the TLS port (Istio's 15012); plaintext xDS (15010) is opt-in for debugging.
import * as grpc from '@grpc/grpc-js';
import { AuthenticationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { addCaService, authenticate, CertIssuer, issueServingCertificate, kubeTokenReviewer, loadCa, type CaServiceDeps, type Caller, type PodRef } from '../ca/index.js';
import { ResourceStore, WaypointStores, XdsServer } from '../xds/index.js';
import { localPortOf } from '../xds/server.js';
import { newCache } from './cache.js';
import { Informers } from './informers.js';
import { startMonitoring } from './monitoring.js';
import { Reconciler, type ControllerContext } from './reconciler.js';
import { WaypointController } from './waypoints.js';
import { waypointBootstrap } from '../waypoint/envoy/bootstrap.js';
import { GATEWAY_NAME_LABEL } from '../waypoint/gateway.js';
import { ROOT_CERT_DIR, ROOT_CERT_KEY, TOKEN_DIR } from '../waypoint/provision.js';

const SERVING_NAME = 'istiod.istio-system.svc';

export interface ControllerOptions extends ControllerContext {
  kubeConfig: KubeConfig;
  /** host:port for TLS xDS and the CA (Istio's 15012). */
  tlsAddress?: string;
  /** host:port for plaintext xDS without authentication (Istio's 15010), for debugging; none when absent. */
  xdsAddress?: string;
  /** host:port for metrics and debug endpoints (Istio's 15014); none when absent. */
  monitoringAddress?: string;
  /** Where the CA Secret lives. Default istio-system. */
  namespace?: string;
  /** Names in the controller's serving certificate. Default istiod.istio-system.svc. */
  servingDnsNames?: string[];
  servingIps?: string[];
  /** Longest workload certificate the CA issues. Default 24 h. */
  maxCertTtlSeconds?: number;
  /** Envoy image of waypoint Deployments. */
  waypointImage?: string;
  /** host:port waypoint Envoys dial for xDS (TLS, our serving certificate's first name checked). Default istiod.istio-system.svc:15012. */
  waypointXdsAddress?: string;
  log: Logger;
}

export class Controller {
  readonly store = new ResourceStore();
  readonly waypointStores = new WaypointStores();
  readonly cache = newCache();
  readonly xds: XdsServer;
  private readonly informers: Informers;
  private readonly reconciler: Reconciler;
  readonly waypoints: WaypointController;
  private readonly caDeps: CaServiceDeps;
  private monitoring?: http.Server;
  private ready = false;
  xdsPort = 0;
  tlsPort = 0;
  monitoringPort = 0;
  rootPem = '';

  constructor(private readonly opts: ControllerOptions) {
    this.waypoints = new WaypointController({
      kubeConfig: opts.kubeConfig, cache: this.cache, ctx: opts, stores: this.waypointStores, image: opts.waypointImage,
      bootstrap: waypointBootstrapFor(opts),
      log: opts.log.child({ component: 'waypoints' }),
    });
    this.reconciler = new Reconciler(this.cache, this.store, opts, this.waypoints);
    this.informers = new Informers(opts.kubeConfig, this.cache, this.reconciler, opts.log);
    const podsOnNode = (node: string): PodRef[] =>
      [...this.cache.pods.values()]
        .filter((p) => p.spec?.nodeName === node)
        .map((p) => ({ namespace: p.metadata?.namespace ?? '', serviceAccount: p.spec?.serviceAccountName || 'default' }));
    const nodeOfPod = (namespace: string, name: string, uid: string | undefined) => {
      const p = this.cache.pods.get(`${namespace}/${name}`);
      return p && (!uid || p.metadata?.uid === uid) ? p.spec?.nodeName : undefined;
    };
    this.caDeps = {
      issuer: undefined as unknown as CertIssuer, // set in start(), once the root is loaded
      trustDomain: opts.trustDomain,
      clusterId: opts.clusterId,
      reviewToken: kubeTokenReviewer(opts.kubeConfig.makeApiClient(AuthenticationV1Api)),
      podsOnNode,
      nodeOfPod,
      isSecure: (call) => localPortOf(call) === this.tlsPort,
      log: opts.log.child({ component: 'ca' }),
    };
    this.xds = new XdsServer({
      store: this.store,
      log: opts.log,
      waypoints: { stores: this.waypointStores, waypointOf: (node, principal) => this.waypointOf(node.podNamespace, node.podName, principal as Caller | undefined) },
      // On the TLS port every xDS stream authenticates like a CA call (bearer token through TokenReview, cluster id).
      authenticate: async ({ metadata, localPort }) => {
        if (localPort !== this.tlsPort) return undefined; // the opt-in plaintext debugging port
        try {
          return { principal: await authenticate(this.caDeps, metadata) };
        } catch (e) {
          return (e as Error).message;
        }
      },
    });
  }

  /**
   * `<ns>/<gateway>` of the waypoint a pod belongs to (its gateway-name label), if that waypoint exists and the
   * stream's token is that pod's service account (and, when bound to a pod, that pod): the waypoint's config carries
   * its private key. Never on the unauthenticated debugging port.
   */
  private waypointOf(namespace: string, name: string, caller: Caller | undefined): string | undefined {
    const pod = this.cache.pods.get(`${namespace}/${name}`);
    const gw = pod?.metadata?.labels?.[GATEWAY_NAME_LABEL];
    if (!caller || !pod || !gw) return undefined;
    if (caller.namespace !== namespace || caller.serviceAccount !== (pod.spec?.serviceAccountName || 'default')) return undefined;
    if (caller.podName && (caller.podName !== name || (caller.podUid && caller.podUid !== pod.metadata?.uid))) return undefined;
    const key = `${namespace}/${gw}`;
    return this.reconciler.waypoints.has(key) ? key : undefined;
  }

  /** The mesh CA's issuer (after start()). */
  get issuer(): CertIssuer {
    return this.caDeps.issuer;
  }

  /** Sync from Kubernetes first, so the first ztunnel to connect gets a complete view. */
  async start(): Promise<void> {
    const { opts } = this;
    await this.informers.start();
    const core = opts.kubeConfig.makeApiClient(CoreV1Api);
    const namespace = opts.namespace ?? 'istio-system';
    // The CA's Secret lives in our namespace; on a fresh (embedded) API server that namespace may not exist yet.
    if (!this.cache.namespaces.has(namespace)) await core.createNamespace({ body: { metadata: { name: namespace } } }).catch(() => {});
    const ca = await loadCa(core, {
      namespace,
      trustDomain: opts.trustDomain,
      log: (m) => opts.log.info(m),
    });
    this.rootPem = ca.rootPem;
    this.caDeps.issuer = new CertIssuer(ca, { maxTtlSeconds: opts.maxCertTtlSeconds ?? 86_400 });
    addCaService(this.xds, this.caDeps);
    if (opts.tlsAddress) {
      const serving = await issueServingCertificate(ca, {
        dnsNames: opts.servingDnsNames ?? [SERVING_NAME],
        ipAddresses: opts.servingIps,
        identity: `spiffe://${opts.trustDomain}/ns/${opts.namespace ?? 'istio-system'}/sa/waypoint-controller`,
      });
      const creds = grpc.ServerCredentials.createSsl(
        Buffer.from(serving.rootPem),
        [{ private_key: Buffer.from(serving.privateKeyPem), cert_chain: Buffer.from(serving.certChainPem) }],
        false,
      );
      this.tlsPort = await this.xds.listen(opts.tlsAddress, creds);
    }
    if (opts.xdsAddress) this.xdsPort = await this.xds.listen(opts.xdsAddress);
    await this.waypoints.start(this.reconciler, this.caDeps.issuer);
    this.ready = true;
    if (opts.monitoringAddress) {
      const [host, port] = splitHostPort(opts.monitoringAddress);
      this.monitoring = await startMonitoring({ registry: this.xds.registry, debugState: () => this.xds.debugState(), ready: () => this.ready }, host, port);
      this.monitoringPort = (this.monitoring.address() as AddressInfo).port;
    }
    opts.log.info({ tls: opts.tlsAddress, tlsPort: this.tlsPort, plaintext: opts.xdsAddress, root: ca.source, resources: this.xds.debugState().resources }, 'controller ready');
  }

  async stop(): Promise<void> {
    this.ready = false;
    this.monitoring?.close();
    this.waypoints.stop();
    await this.informers.stop();
    await this.xds.close(1000);
  }
}

/** The bootstrap every waypoint's ConfigMap carries: xDS from us over TLS to the mesh root, with the pod's token. */
function waypointBootstrapFor(opts: ControllerOptions): object {
  const [xdsHost, xdsPort] = splitHostPort(opts.waypointXdsAddress ?? `${SERVING_NAME}:15012`);
  return waypointBootstrap({
    xdsHost, xdsPort, xdsServerName: opts.servingDnsNames?.[0] ?? SERVING_NAME, clusterId: opts.clusterId,
    rootCertPath: `${ROOT_CERT_DIR}/${ROOT_CERT_KEY}`, tokenPath: `${TOKEN_DIR}/istio-token`,
  });
}

function splitHostPort(a: string): [string, number] {
  const i = a.lastIndexOf(':');
  return [a.slice(0, i).replace(/^\[|\]$/g, ''), Number(a.slice(i + 1))];
}
