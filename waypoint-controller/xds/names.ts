// Resource names and aliases as istiod gives them (pilot/pkg/model/service.go: AddressInfo.ResourceName,
// AddressInfo.Aliases; WorkloadAuthorization.ResourceName):
//   workload  -> its uid (`<cluster>//v1/Pod/<ns>/<name>`), aliases `<workload.network>/<ip>` per address
//   service   -> `<namespace>/<hostname>`, aliases `<address.network>/<ip>` per address
//   policy    -> `<namespace>/<name>`
import type { Address, Authorization, Service, Workload } from '../../protos/index.js';
import { bytesToIp } from '../../ztunnel/net/ip.js';

export const workloadResourceName = (w: Pick<Workload, 'uid'>): string => w.uid;
export const serviceResourceName = (s: Pick<Service, 'namespace' | 'hostname'>): string => `${s.namespace}/${s.hostname}`;
export const policyResourceName = (p: Pick<Authorization, 'namespace' | 'name'>): string => `${p.namespace}/${p.name}`;

export function workloadAliases(w: Pick<Workload, 'network' | 'addresses'>): string[] {
  return (w.addresses ?? []).map((a) => `${w.network ?? ''}/${bytesToIp(a)}`);
}

export function serviceAliases(s: Pick<Service, 'addresses'>): string[] {
  return (s.addresses ?? []).map((a) => `${a.network ?? ''}/${bytesToIp(a.address)}`);
}

/** Groups of an Address resource in the store: a workload is a member of its services (`<ns>/<hostname>`). */
export function addressGroups(a: Address): string[] {
  return Object.keys(a.workload?.services ?? {});
}

/** Name and aliases of an Address resource (workload or service). */
export function addressNameAndAliases(a: Address): { name: string; aliases: string[] } {
  if (a.workload) return { name: workloadResourceName(a.workload), aliases: workloadAliases(a.workload) };
  if (a.service) return { name: serviceResourceName(a.service), aliases: serviceAliases(a.service) };
  throw new Error('Address has neither a workload nor a service');
}
