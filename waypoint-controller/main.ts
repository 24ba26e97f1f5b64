#!/usr/bin/env node
// waypoint-controller entry point: the control plane. Against a real cluster (--kubeconfig) or, by default, an
// embedded Kubernetes API server seeded from a folder of YAML.
import { KubeConfig } from '@kubernetes/client-node';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { start as startApiServer, type ApiServer } from './apiserver/index.js';
import { Controller } from './controller/controller.js';
import { DEFAULT_ENVOY_IMAGE } from './waypoint/provision.js';

const HELP = `ambit waypoint-controller: the control plane (workload xDS and the CA for ztunnels, Envoy waypoints).

Usage: node dist/waypoint-controller/main.js [options]

  --kubeconfig FILE     use a real cluster (default: run an embedded API server)
  --seed DIR            embedded API server: load every YAML file in DIR at start
  --state-dir DIR       embedded API server: keep state across restarts (default: memory only)
  --api-address H:P     embedded API server listen address (default 127.0.0.1:0, printed at start)
  --tls-address H:P     delta xDS and the CA over TLS, callers authenticated by token (default 0.0.0.0:15012)
  --xds-address H:P     also plaintext xDS without authentication, for debugging (Istio's 15010; default off)
  --monitoring-address H:P  /metrics, /debug/connections, /ready (default 0.0.0.0:15014)
  --waypoint-image IMAGE    Envoy image of waypoint Deployments (default ${DEFAULT_ENVOY_IMAGE})
  --waypoint-xds-address H:P  where waypoint Envoys reach us (default istiod.istio-system.svc:15012)
  -h, --help

Environment: CLUSTER_ID (default Kubernetes), TRUST_DOMAIN (cluster.local), NETWORK (""),
  ISTIO_ROOT_NAMESPACE / POD_NAMESPACE (root namespace for mesh-wide policies, default istio-system),
  DOMAIN_SUFFIX (cluster.local), LOG_LEVEL (info).
The CA keeps its root in the Secret ambit-ca in the controller's namespace (created on first start; a Secret
cacerts there plugs in an intermediate). Every Gateway of class istio-waypoint gets a waypoint (README: Waypoints).
`;

const { values } = parseArgs({
  options: {
    kubeconfig: { type: 'string' },
    seed: { type: 'string' },
    'state-dir': { type: 'string' },
    'api-address': { type: 'string', default: '127.0.0.1:0' },
    'tls-address': { type: 'string', default: '0.0.0.0:15012' },
    'xds-address': { type: 'string' },
    'monitoring-address': { type: 'string', default: '0.0.0.0:15014' },
    'waypoint-image': { type: 'string' },
    'waypoint-xds-address': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
  strict: true,
});
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

const env = process.env;
const log = pino({ level: env.LOG_LEVEL || 'info', base: { component: 'waypoint-controller' } });
let api: ApiServer | undefined;
let kubeConfig: KubeConfig;
try {
  if (values.kubeconfig) {
    kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(values.kubeconfig);
  } else {
    const [host, port] = values['api-address']!.split(':');
    api = await startApiServer({
      host, port: Number(port ?? 0), seedDir: values.seed, stateDir: values['state-dir'], log: (m) => log.debug(m),
      defaultNamespaces: ['default', 'kube-system', 'kube-public', 'kube-node-lease', env.POD_NAMESPACE || 'istio-system'],
    });
    kubeConfig = api.kubeConfig();
    log.info({ url: api.url }, 'embedded Kubernetes API server listening');
  }
  const controller = new Controller({
    kubeConfig,
    tlsAddress: values['tls-address'],
    xdsAddress: values['xds-address'],
    namespace: env.POD_NAMESPACE || 'istio-system',
    monitoringAddress: values['monitoring-address'],
    clusterId: env.CLUSTER_ID || 'Kubernetes',
    trustDomain: env.TRUST_DOMAIN || 'cluster.local',
    network: env.NETWORK ?? '',
    domainSuffix: env.DOMAIN_SUFFIX || 'cluster.local',
    rootNamespace: env.ISTIO_ROOT_NAMESPACE || env.POD_NAMESPACE || 'istio-system',
    waypointImage: values['waypoint-image'],
    waypointXdsAddress: values['waypoint-xds-address'],
    log,
  });
  await controller.start();
  const stop = () =>
    void controller
      .stop()
      .then(() => api?.close())
      .finally(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} catch (e) {
  process.stderr.write(`waypoint-controller: ${(e as Error).message}\n`);
  await api?.close();
  process.exit(1);
}
