// Discovery documents: /api, /api/v1, /apis, /apis/<group>, /apis/<group>/<version>, /version.
import type { ResourceRegistry } from './resources.js';
import type { ResourceType } from './types.js';

/** A served endpoint that is not a stored kind (e.g. tokenreviews, serviceaccounts/token). */
export interface ExtraResource {
  group: string;
  version: string;
  /** Listed right after this plural of the same group/version (subresources), else at the end. */
  after?: string;
  resource: Record<string, unknown>;
}

/** Discovery entries of the token endpoints (tokens.ts). */
export const TOKEN_RESOURCES: readonly ExtraResource[] = [
  {
    group: '', version: 'v1', after: 'serviceaccounts',
    resource: { name: 'serviceaccounts/token', singularName: '', namespaced: true, group: 'authentication.k8s.io', version: 'v1', kind: 'TokenRequest', verbs: ['create'] },
  },
  {
    group: 'authentication.k8s.io', version: 'v1',
    resource: { name: 'tokenreviews', singularName: 'tokenreview', namespaced: false, kind: 'TokenReview', verbs: ['create'] },
  },
];

/** Groups (with versions) served by the registry or by extra endpoints, '' = core, in order. */
function allGroups(registry: ResourceRegistry, extras: readonly ExtraResource[]): Map<string, string[]> {
  const out = registry.groups();
  for (const x of extras) {
    const vs = out.get(x.group) ?? [];
    if (!vs.includes(x.version)) vs.push(x.version);
    out.set(x.group, vs);
  }
  return out;
}

const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

function resourceEntries(rt: ResourceType): object[] {
  const main: Record<string, unknown> = {
    name: rt.plural, singularName: rt.singular, namespaced: rt.namespaced, kind: rt.kind, verbs: VERBS,
  };
  if (rt.shortNames) main.shortNames = rt.shortNames;
  const out: object[] = [main];
  if (rt.hasStatus) out.push({ name: `${rt.plural}/status`, singularName: '', namespaced: rt.namespaced, kind: rt.kind, verbs: ['get', 'patch', 'update'] });
  return out;
}

export function apiVersions(serverAddress: string): object {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] };
}

export function resourceList(registry: ResourceRegistry, group: string, version: string, extras: readonly ExtraResource[] = []): object | undefined {
  const types = registry.inGroupVersion(group, version);
  const mine = extras.filter((x) => x.group === group && x.version === version);
  if (types.length === 0 && mine.length === 0) return undefined;
  const resources: object[] = [];
  for (const rt of types) {
    resources.push(...resourceEntries(rt));
    resources.push(...mine.filter((x) => x.after === rt.plural).map((x) => x.resource));
  }
  resources.push(...mine.filter((x) => !types.some((rt) => rt.plural === x.after)).map((x) => x.resource));
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group ? `${group}/${version}` : version, resources };
}

function groupDoc(group: string, versions: string[]): object {
  const gvs = versions.map((v) => ({ groupVersion: `${group}/${v}`, version: v }));
  return { kind: 'APIGroup', apiVersion: 'v1', name: group, versions: gvs, preferredVersion: gvs[0] };
}

export function apiGroupList(registry: ResourceRegistry, extras: readonly ExtraResource[] = []): object {
  const groups = [...allGroups(registry, extras)].filter(([g]) => g !== '').map(([g, vs]) => groupDoc(g, vs));
  return { kind: 'APIGroupList', apiVersion: 'v1', groups };
}

export function apiGroup(registry: ResourceRegistry, group: string, extras: readonly ExtraResource[] = []): object | undefined {
  const vs = allGroups(registry, extras).get(group);
  return group && vs ? groupDoc(group, vs) : undefined;
}

export function versionInfo(): object {
  return {
    major: '1', minor: '33', gitVersion: 'v1.33.0-ambit', gitCommit: '', gitTreeState: 'clean', buildDate: '1970-01-01T00:00:00Z',
    goVersion: 'n/a', compiler: 'ambit', platform: `${process.platform}/${process.arch}`,
  };
}
