// A workload as the state keeps it from xDS, at a fraction of a plain object's size. The replicas of a deployment differ
// in little more than their uid, name, addresses and node; everything else (namespace, identity, labels, protocol,
// services, policies...) is the same, so it lives in one shared, frozen profile that each replica refers to. The
// workload reads those fields through getters: one more property load, with no allocation.
import type { GatewayAddress, HealthStatus, InboundProtocol, PortMap, Workload } from './types.js';

/**
 * The fields of a workload its deployment's replicas have in common. Shared between workloads: never mutated.
 * An empty canonicalName or workloadName stands for the workload's own name (the default when xDS leaves it empty).
 */
export type WorkloadProfile = Omit<Workload, 'uid' | 'name' | 'workloadIps' | 'node'>;

/** A Workload whose own fields are uid, name, addresses and node, and the rest its (shared) profile's. */
export class ProfiledWorkload implements Workload {
  constructor(
    readonly uid: string,
    readonly name: string,
    readonly workloadIps: string[],
    readonly node: string,
    readonly profile: WorkloadProfile,
  ) {}

  get namespace(): string {
    return this.profile.namespace;
  }
  get serviceAccount(): string {
    return this.profile.serviceAccount;
  }
  get trustDomain(): string {
    return this.profile.trustDomain;
  }
  get network(): string {
    return this.profile.network;
  }
  get protocol(): InboundProtocol {
    return this.profile.protocol;
  }
  get hostname(): string {
    return this.profile.hostname;
  }
  get canonicalName(): string {
    return this.profile.canonicalName || this.name;
  }
  get canonicalRevision(): string {
    return this.profile.canonicalRevision;
  }
  get workloadName(): string {
    return this.profile.workloadName || this.name;
  }
  get workloadType(): string {
    return this.profile.workloadType;
  }
  get clusterId(): string {
    return this.profile.clusterId;
  }
  get status(): HealthStatus {
    return this.profile.status;
  }
  get authorizationPolicies(): readonly string[] {
    return this.profile.authorizationPolicies;
  }
  get services(): ReadonlyMap<string, PortMap> {
    return this.profile.services;
  }
  get waypoint(): GatewayAddress | undefined {
    return this.profile.waypoint;
  }
}
