// Istio's Kubernetes conventions for ambient enrollment and canonical names.
import type { V1Namespace, V1ObjectMeta, V1Pod } from '@kubernetes/client-node';

export const DATAPLANE_MODE = 'istio.io/dataplane-mode';

/** Ambient if the pod or its namespace says so; a pod label `none` opts out; host-network pods never are. */
export function isEnrolled(pod: V1Pod, ns: V1Namespace | undefined): boolean {
  if (pod.spec?.hostNetwork) return false;
  const own = pod.metadata?.labels?.[DATAPLANE_MODE];
  if (own === 'none') return false;
  if (own === 'ambient') return true;
  return ns?.metadata?.labels?.[DATAPLANE_MODE] === 'ambient';
}

export function canonicalName(meta: V1ObjectMeta | undefined, fallback: string): string {
  const l = meta?.labels ?? {};
  return l['service.istio.io/canonical-name'] ?? l['app.kubernetes.io/name'] ?? l.app ?? fallback;
}

export function canonicalRevision(meta: V1ObjectMeta | undefined): string {
  const l = meta?.labels ?? {};
  return l['service.istio.io/canonical-revision'] ?? l['app.kubernetes.io/version'] ?? l.version ?? 'latest';
}

/** The workload a pod belongs to, from its owner: a ReplicaSet's Deployment (hash stripped), a Job's CronJob, ... */
export function owningWorkload(pod: V1Pod): { type: 'DEPLOYMENT' | 'CRONJOB' | 'POD' | 'JOB'; name: string; kind: string } {
  const name = pod.metadata?.name ?? '';
  const owner = pod.metadata?.ownerReferences?.find((o) => o.controller) ?? pod.metadata?.ownerReferences?.[0];
  if (!owner) return { type: 'POD', name, kind: 'pod' };
  if (owner.kind === 'ReplicaSet') {
    const hash = pod.metadata?.labels?.['pod-template-hash'];
    const deployment = hash && owner.name.endsWith(`-${hash}`) ? owner.name.slice(0, -hash.length - 1) : owner.name.replace(/-[a-z0-9]{5,10}$/, '');
    return { type: 'DEPLOYMENT', name: deployment, kind: 'deployment' };
  }
  if (owner.kind === 'Job') {
    const cron = /^(.*)-\d+$/.exec(owner.name);
    return cron ? { type: 'CRONJOB', name: cron[1]!, kind: 'cronjob' } : { type: 'JOB', name: owner.name, kind: 'job' };
  }
  return { type: 'POD', name: owner.name, kind: owner.kind.toLowerCase() };
}

/** Equality-based label selector match (an empty or missing selector selects nothing here). */
export function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}
