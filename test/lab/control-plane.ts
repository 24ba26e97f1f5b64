// The control plane for lab clusters: the embedded API server and the controller, in this process, with relays so
// that each node's ztunnel reaches the controller at 127.0.0.1:15010 (plaintext xDS) and 127.0.0.1:15012 (TLS xDS
// and the CA) inside its own netns, as it would reach istiod.
import { CoreV1Api, type KubernetesObject, type V1Container, type V1Pod } from '@kubernetes/client-node';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { start as startApiServer, type ApiServer, type KubeObject } from '../../waypoint-controller/apiserver/index.js';
import { Controller } from '../../waypoint-controller/controller/controller.js';
import { listenIn } from './apps.js';
import type { ClusterPod } from './cluster.js';
import type { Netns } from './netns.js';

/** Plaintext xDS from the lab's (shared) local CA: the setup of the tests that predate the controller's CA. */
export const LAB_XDS_ENV = { LOCAL_XDS_PATH: '', XDS_ADDRESS: '127.0.0.1:15010' };

const SERVING_NAME = 'istiod.istio-system.svc';

export class LabControlPlane {
  api?: ApiServer;
  controller?: Controller;
  core?: CoreV1Api;
  private readonly relays: net.Server[] = [];

  constructor(private readonly log: Logger = pino({ level: 'silent' })) {}

  /** Start the API server (seeded with `objects`, plus istio-system and the ztunnel service account) and the controller. */
  private maxCertTtlSeconds?: number;

  async start(objects: KubernetesObject[] = [], opts: { maxCertTtlSeconds?: number } = {}): Promise<void> {
    this.maxCertTtlSeconds = opts.maxCertTtlSeconds;
    const base = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } },
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'ztunnel', namespace: 'istio-system' } },
    ];
    this.api = await startApiServer({ port: 0, seedObjects: [...base, ...objects] as KubeObject[] });
    this.core = this.api.kubeConfig().makeApiClient(CoreV1Api);
    this.controller = this.newController('127.0.0.1:0', '127.0.0.1:0');
    await this.controller.start();
  }

  private newController(xdsAddress: string, tlsAddress: string): Controller {
    return new Controller({
      kubeConfig: this.api!.kubeConfig(), xdsAddress, tlsAddress, monitoringAddress: '127.0.0.1:0',
      clusterId: 'Kubernetes', trustDomain: 'cluster.local', network: '', domainSuffix: 'cluster.local', rootNamespace: 'istio-system',
      servingDnsNames: [SERVING_NAME], maxCertTtlSeconds: this.maxCertTtlSeconds, log: this.log,
      // Waypoint pods reach us through a relay on their own loopback, as ztunnels do.
      waypointXdsAddress: '127.0.0.1:15012',
    });
  }

  /** Stop the controller and start a new one on the same ports (the relays keep pointing there). */
  async restartController(): Promise<void> {
    const { xdsPort, tlsPort } = this.controller!;
    await this.controller!.stop();
    this.controller = this.newController(`127.0.0.1:${xdsPort}`, `127.0.0.1:${tlsPort}`);
    await this.controller.start();
  }

  /** Make 127.0.0.1:15010 and :15012 inside `ns` lead to the controller's plaintext and TLS ports. */
  async relay(ns: Netns): Promise<void> {
    for (const [local, port] of [[15010, this.controller!.xdsPort], [15012, this.controller!.tlsPort]] as const) {
      this.relays.push(
        await listenIn(ns, '127.0.0.1', local, (s) => {
          const up = net.connect(port, '127.0.0.1');
          up.on('error', () => s.destroy());
          s.on('error', () => up.destroy());
          s.pipe(up).pipe(s);
        }),
      );
    }
  }

  /**
   * What a ztunnel DaemonSet pod gets: a pod object on its node, a bound service-account token (audience istio-ca)
   * and the mesh root. Returns the environment for a ztunnel using TLS xDS and the controller's CA.
   */
  async ztunnelEnv(node: string, dir: string): Promise<Record<string, string>> {
    const name = `ztunnel-${node}`;
    await this.core!.createNamespacedPod({
      namespace: 'istio-system',
      body: { metadata: { name, labels: { app: 'ztunnel' } }, spec: { nodeName: node, serviceAccountName: 'ztunnel', containers: [{ name: 'istio-proxy', image: 'ambit' }] } },
    });
    const token = join(dir, `${name}.token`);
    this.api!.writeToken(token, { namespace: 'istio-system', serviceAccount: 'ztunnel', audiences: ['istio-ca'], pod: name });
    const root = join(dir, 'mesh-root.pem');
    writeFileSync(root, this.controller!.rootPem);
    return {
      LOCAL_XDS_PATH: '', LOCAL_CA_CERT: '', LOCAL_CA_KEY: '',
      XDS_ADDRESS: 'https://127.0.0.1:15012', ALT_XDS_HOSTNAME: SERVING_NAME, ALT_CA_HOSTNAME: SERVING_NAME,
      XDS_ROOT_CA: root, CA_ROOT_CA: root, AUTH_TOKEN: token, POD_NAME: name, POD_NAMESPACE: 'istio-system',
    };
  }

  /** What the kubelet would do: create the pod object for a lab pod, then report its IP and readiness. */
  async runPod(p: ClusterPod, labels: Record<string, string>, extra: Partial<V1Pod['metadata']> = {}, containers?: V1Container[]): Promise<void> {
    const core = this.core!;
    const body: V1Pod = {
      metadata: { name: p.name, namespace: p.namespace, labels, ...extra },
      spec: { nodeName: p.node, serviceAccountName: p.serviceAccount, containers: containers ?? [{ name: 'app', image: 'lab' }] },
    };
    await core.createNamespacedPod({ namespace: p.namespace, body });
    const current = await core.readNamespacedPod({ name: p.name, namespace: p.namespace });
    current.status = { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }], conditions: [{ type: 'Ready', status: 'True' }] };
    await core.replaceNamespacedPodStatus({ name: p.name, namespace: p.namespace, body: current });
  }

  async stop(): Promise<void> {
    for (const r of this.relays) r.close();
    await this.controller?.stop();
    await this.api?.close();
  }
}
