// The objects istiod creates for a waypoint Gateway (its `waypoint.yaml` template), rendered as a pure function:
// a ServiceAccount, a ConfigMap with the Envoy bootstrap we generate, a Deployment running upstream Envoy and a
// ClusterIP Service, all named after the Gateway, labelled as istiod labels them and owned by the Gateway (so
// deleting the Gateway deletes them). `spec.infrastructure` adds labels and annotations; a `parametersRef`
// ConfigMap overlays them (keys `deployment`, `service`, `serviceAccount`: YAML merged into the object).
import type { KubernetesObject, V1ConfigMap, V1Deployment, V1Service, V1ServiceAccount } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { waypointEnvoyArgs } from './envoy/bootstrap.js';
import {
  GATEWAY_CLASS_LABEL, GATEWAY_NAME_LABEL, HBONE_PORT, MANAGED_LABEL, MANAGED_VALUE, STATUS_PORT, WAYPOINT_CLASS, type Gateway,
} from './gateway.js';

export const DEFAULT_ENVOY_IMAGE = 'docker.io/envoyproxy/envoy:v1.40.0';
export const PROMETHEUS_PORT = 15090;
/** Where the pod finds what the bootstrap names (mount paths). */
export const BOOTSTRAP_DIR = '/var/run/ambit/bootstrap';
export const BOOTSTRAP_FILE = 'envoy.json';
export const ROOT_CERT_DIR = '/var/run/secrets/istio';
export const TOKEN_DIR = '/var/run/secrets/tokens';
export const ROOT_CONFIGMAP = 'istio-ca-root-cert';
export const ROOT_CERT_KEY = 'root-cert.pem';

export interface ProvisionOptions {
  image?: string;
  domainSuffix: string;
  /** The Envoy bootstrap (JSON-able) the ConfigMap carries. */
  bootstrap: object;
  /** Data of the `spec.infrastructure.parametersRef` ConfigMap, when there is one. */
  parameters?: Record<string, string>;
}

export const bootstrapConfigMapName = (gateway: string) => `${gateway}-envoy-bootstrap`;

/** What the overlay may not change: identity and wiring that the rest of the mesh relies on. */
const PROTECTED_LABELS = [GATEWAY_NAME_LABEL, GATEWAY_CLASS_LABEL, MANAGED_LABEL, 'istio.io/dataplane-mode'];

export function renderWaypoint(g: Gateway, opts: ProvisionOptions): KubernetesObject[] {
  const name = g.metadata?.name ?? '';
  const namespace = g.metadata?.namespace ?? '';
  const infra = g.spec?.infrastructure;
  const baseLabels = { [GATEWAY_NAME_LABEL]: name, [GATEWAY_CLASS_LABEL]: WAYPOINT_CLASS, [MANAGED_LABEL]: MANAGED_VALUE };
  const labels = { ...(infra?.labels ?? {}), ...baseLabels };
  const annotations = infra?.annotations ?? {};
  const metadata = (n: string) => ({
    name: n,
    namespace,
    labels,
    ...(Object.keys(annotations).length ? { annotations } : {}),
    ownerReferences: [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name, uid: g.metadata?.uid ?? '' }],
  });
  const sa: V1ServiceAccount = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: metadata(name) };
  const cm: V1ConfigMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: metadata(bootstrapConfigMapName(name)),
    data: { [BOOTSTRAP_FILE]: JSON.stringify(opts.bootstrap, null, 2) },
  };
  const podLabels = {
    ...labels,
    'sidecar.istio.io/inject': 'false',
    'istio.io/dataplane-mode': 'none',
    'service.istio.io/canonical-name': name,
    'service.istio.io/canonical-revision': 'latest',
  };
  const envFrom = (field: string) => ({ valueFrom: { fieldRef: { fieldPath: field } } });
  const deployment: V1Deployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: metadata(name),
    spec: {
      replicas: 1,
      selector: { matchLabels: { [GATEWAY_NAME_LABEL]: name } },
      template: {
        metadata: {
          labels: podLabels,
          annotations: {
            ...annotations,
            'prometheus.io/path': '/stats/prometheus',
            'prometheus.io/port': String(PROMETHEUS_PORT),
            'prometheus.io/scrape': 'true',
          },
        },
        spec: {
          serviceAccountName: name,
          terminationGracePeriodSeconds: 30,
          containers: [
            {
              name: 'istio-proxy',
              image: opts.image ?? DEFAULT_ENVOY_IMAGE,
              command: ['envoy'],
              args: waypointEnvoyArgs({ configPath: `${BOOTSTRAP_DIR}/${BOOTSTRAP_FILE}`, gateway: name, clusterDomain: opts.domainSuffix }),
              env: [
                { name: 'POD_NAME', ...envFrom('metadata.name') },
                { name: 'POD_NAMESPACE', ...envFrom('metadata.namespace') },
                { name: 'INSTANCE_IP', ...envFrom('status.podIP') },
                { name: 'SERVICE_ACCOUNT', ...envFrom('spec.serviceAccountName') },
              ],
              ports: [
                { name: 'hbone', containerPort: HBONE_PORT, protocol: 'TCP' },
                { name: 'status-port', containerPort: STATUS_PORT, protocol: 'TCP' },
                { name: 'http-envoy-prom', containerPort: PROMETHEUS_PORT, protocol: 'TCP' },
              ],
              readinessProbe: { httpGet: { path: '/healthz/ready', port: STATUS_PORT }, periodSeconds: 2, failureThreshold: 4 },
              startupProbe: { httpGet: { path: '/healthz/ready', port: STATUS_PORT }, periodSeconds: 1, failureThreshold: 60 },
              resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '2', memory: '1Gi' } },
              securityContext: {
                runAsUser: 1337,
                runAsGroup: 1337,
                runAsNonRoot: true,
                readOnlyRootFilesystem: true,
                allowPrivilegeEscalation: false,
                privileged: false,
                capabilities: { drop: ['ALL'] },
              },
              volumeMounts: [
                { name: 'envoy-bootstrap', mountPath: BOOTSTRAP_DIR, readOnly: true },
                { name: 'istiod-ca-cert', mountPath: ROOT_CERT_DIR, readOnly: true },
                { name: 'istio-token', mountPath: TOKEN_DIR, readOnly: true },
              ],
            },
          ],
          volumes: [
            { name: 'envoy-bootstrap', configMap: { name: bootstrapConfigMapName(name) } },
            { name: 'istiod-ca-cert', configMap: { name: ROOT_CONFIGMAP } },
            {
              name: 'istio-token',
              projected: { sources: [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }] },
            },
          ],
        },
      },
    },
  };
  const service: V1Service = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { ...metadata(name), annotations: { ...annotations, 'networking.istio.io/traffic-distribution': 'PreferClose' } },
    spec: {
      type: 'ClusterIP',
      ipFamilyPolicy: 'PreferDualStack',
      selector: { [GATEWAY_NAME_LABEL]: name },
      ports: [
        { name: 'status-port', port: STATUS_PORT, targetPort: STATUS_PORT, protocol: 'TCP', appProtocol: 'tcp' },
        ...(g.spec?.listeners ?? []).map((l) => ({
          name: l.name.replace(/[^a-z0-9-]/g, '-'),
          port: l.port,
          targetPort: l.port,
          protocol: 'TCP',
          appProtocol: l.protocol.toLowerCase(),
        })),
      ],
    },
  };
  const p = opts.parameters ?? {};
  const d = overlay(deployment, p.deployment);
  // Never captured, always selected by its Service: whatever the overlay says.
  d.spec = { ...d.spec!, selector: deployment.spec!.selector };
  d.spec.template.metadata = { ...d.spec.template.metadata, labels: { ...d.spec.template.metadata?.labels, ...pick(podLabels, PROTECTED_LABELS) } };
  return [overlay(sa, p.serviceAccount), cm, d, overlay(service, p.service)];
}

const pick = (o: Record<string, string>, keys: string[]) => Object.fromEntries(keys.filter((k) => k in o).map((k) => [k, o[k]!]));

/** Merges a YAML overlay into an object: maps deeply, lists of named items by name, other lists replaced. */
function overlay<T extends KubernetesObject>(base: T, yaml: string | undefined): T {
  if (!yaml) return base;
  const patch = parse(yaml) as unknown;
  if (!isMap(patch)) throw new Error(`overlay for ${base.kind} is not a YAML map`);
  const merged = merge(base, patch) as T;
  // The overlay may customise, not rewire: keep name, namespace, owners and the identifying labels.
  merged.metadata = { ...merged.metadata, name: base.metadata?.name, namespace: base.metadata?.namespace, ownerReferences: base.metadata?.ownerReferences };
  merged.metadata.labels = { ...merged.metadata.labels, ...pick(base.metadata?.labels ?? {}, PROTECTED_LABELS) };
  return merged;
}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function merge(base: unknown, patch: unknown): unknown {
  if (isMap(base) && isMap(patch)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(patch)) out[k] = v === null ? undefined : merge(base[k], v);
    return out;
  }
  if (Array.isArray(base) && Array.isArray(patch) && [...base, ...patch].every((x) => isMap(x) && typeof x.name === 'string')) {
    const out = base.map((b) => {
      const p = patch.find((x) => (x as { name: string }).name === (b as { name: string }).name);
      return p ? merge(b, p) : b;
    });
    for (const p of patch) if (!base.some((b) => (b as { name: string }).name === (p as { name: string }).name)) out.push(p);
    return out;
  }
  return patch;
}
