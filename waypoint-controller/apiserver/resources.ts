// The kinds this API server serves, and lookups over them.
import type { ResourceType } from './types.js';
import { apiVersionOf } from './types.js';

const core = (kind: string, plural: string, namespaced: boolean, hasStatus: boolean, extra: Partial<ResourceType> = {}): ResourceType => ({
  group: '', version: 'v1', kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase(), namespaced, hasStatus, nameRule: 'subdomain', ...extra,
});
const grouped = (group: string, version: string, kind: string, plural: string, namespaced: boolean, hasStatus: boolean, extra: Partial<ResourceType> = {}): ResourceType => ({
  ...core(kind, plural, namespaced, hasStatus, extra), group, version,
});

export const DEFAULT_RESOURCES: readonly ResourceType[] = [
  core('Namespace', 'namespaces', false, true, { shortNames: ['ns'], nameRule: 'label', fieldSelectors: ['status.phase'] }),
  core('Pod', 'pods', true, true, {
    shortNames: ['po'],
    fieldSelectors: ['spec.nodeName', 'spec.serviceAccountName', 'spec.restartPolicy', 'spec.schedulerName', 'status.phase', 'status.podIP', 'status.nominatedNodeName'],
  }),
  core('Service', 'services', true, true, { shortNames: ['svc'], nameRule: 'label1035', fieldSelectors: ['spec.clusterIP', 'spec.type'] }),
  core('Node', 'nodes', false, true, { shortNames: ['no'], fieldSelectors: ['spec.unschedulable'] }),
  core('ServiceAccount', 'serviceaccounts', true, false, { shortNames: ['sa'] }),
  core('Secret', 'secrets', true, false, { fieldSelectors: ['type'] }),
  core('ConfigMap', 'configmaps', true, false, { shortNames: ['cm'] }),
  grouped('discovery.k8s.io', 'v1', 'EndpointSlice', 'endpointslices', true, false, { fieldSelectors: ['addressType'] }),
  grouped('security.istio.io', 'v1', 'AuthorizationPolicy', 'authorizationpolicies', true, true, { shortNames: ['ap'] }),
  grouped('gateway.networking.k8s.io', 'v1', 'GatewayClass', 'gatewayclasses', false, true, { shortNames: ['gc'] }),
  grouped('gateway.networking.k8s.io', 'v1', 'Gateway', 'gateways', true, true, { shortNames: ['gtw'] }),
  grouped('gateway.networking.k8s.io', 'v1', 'HTTPRoute', 'httproutes', true, true),
  grouped('apps', 'v1', 'Deployment', 'deployments', true, true, { shortNames: ['deploy'] }),
];

/** Index over the served resource types. */
export class ResourceRegistry {
  readonly all: readonly ResourceType[];
  private readonly byPath = new Map<string, ResourceType>();
  private readonly byKind = new Map<string, ResourceType>();

  constructor(types: readonly ResourceType[] = DEFAULT_RESOURCES) {
    this.all = types;
    for (const rt of types) {
      this.byPath.set(`${apiVersionOf(rt)}/${rt.plural}`, rt);
      this.byKind.set(`${apiVersionOf(rt)}/${rt.kind}`, rt);
    }
  }

  /** Resource by group/version and plural, as found in a URL. */
  byResource(group: string, version: string, plural: string): ResourceType | undefined {
    return this.byPath.get(`${group ? `${group}/${version}` : version}/${plural}`);
  }

  /** Resource by apiVersion and kind, as found in an object. */
  forKind(apiVersion: string, kind: string): ResourceType | undefined {
    return this.byKind.get(`${apiVersion}/${kind}`);
  }

  /** Group/versions served, grouped by group ('' = core), in registration order. */
  groups(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const rt of this.all) {
      const versions = out.get(rt.group) ?? [];
      if (!versions.includes(rt.version)) versions.push(rt.version);
      out.set(rt.group, versions);
    }
    return out;
  }

  inGroupVersion(group: string, version: string): ResourceType[] {
    return this.all.filter((rt) => rt.group === group && rt.version === version);
  }
}

/** Well-known types, for code that needs a specific one. */
export const findDefault = (kind: string): ResourceType => {
  const rt = DEFAULT_RESOURCES.find((r) => r.kind === kind);
  if (!rt) throw new Error(`no resource type ${kind}`);
  return rt;
};
