// The control plane for lab clusters: the embedded API server and the controller, in this process, with relays so
// that each node's ztunnel reaches the controller's xDS at 127.0.0.1:15010 inside its own netns.
import { CoreV1Api, type KubernetesObject, type V1Container, type V1Pod } from '@kubernetes/client-node';
import net from 'node:net';
import { pino } from 'pino';
import { start as startApiServer, type ApiServer, type KubeObject } from '../../waypoint-controller/apiserver/index.js';
import { Controller } from '../../waypoint-controller/controller/controller.js';
import { listenIn } from './apps.js';
import type { ClusterPod } from './cluster.js';
import type { Netns } from './netns.js';

export const LAB_XDS_ENV = { LOCAL_XDS_PATH: '', XDS_ADDRESS: '127.0.0.1:15010' };

export class LabControlPlane {
  api?: ApiServer;
  controller?: Controller;
  core?: CoreV1Api;
  private readonly relays: net.Server[] = [];

  /** Start the API server (seeded with `objects`) and the controller. */
  async start(objects: KubernetesObject[] = []): Promise<void> {
    this.api = await startApiServer({ port: 0, seedObjects: objects as KubeObject[] });
    this.core = this.api.kubeConfig().makeApiClient(CoreV1Api);
    this.controller = new Controller({
      kubeConfig: this.api.kubeConfig(), xdsAddress: '127.0.0.1:0', monitoringAddress: '127.0.0.1:0', clusterId: 'Kubernetes',
      trustDomain: 'cluster.local', network: '', domainSuffix: 'cluster.local', rootNamespace: 'istio-system', log: pino({ level: 'silent' }),
    });
    await this.controller.start();
  }

  /** Make 127.0.0.1:15010 inside `ns` lead to the controller's xDS port. */
  async relay(ns: Netns): Promise<void> {
    const port = this.controller!.xdsPort;
    this.relays.push(
      await listenIn(ns, '127.0.0.1', 15010, (s) => {
        const up = net.connect(port, '127.0.0.1');
        up.on('error', () => s.destroy());
        s.on('error', () => up.destroy());
        s.pipe(up).pipe(s);
      }),
    );
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
