// Pod and namespace lookups through @kubernetes/client-node, loaded lazily (only ADD for a Kubernetes pod needs it).
import type { PodFacts } from './enrollment.js';

export interface KubeLookup {
  /** The pod's labels/annotations/hostNetwork and its namespace's labels. Rejects on any API failure. */
  podAndNamespace(namespace: string, name: string, timeoutMs: number): Promise<{ pod: PodFacts; namespaceLabels: Record<string, string> }>;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function describe(e: unknown): string {
  const err = e as { code?: number; body?: unknown; message?: string };
  if (typeof err?.code === 'number') {
    let msg = '';
    try {
      const b = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
      msg = (b as { message?: string })?.message ?? '';
    } catch { /* not JSON */ }
    return `HTTP ${err.code}${msg ? `: ${msg}` : ''}`;
  }
  return err?.message ?? String(e);
}

export async function kubeLookup(kubeconfigPath: string): Promise<KubeLookup> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  try {
    kc.loadFromFile(kubeconfigPath);
  } catch (e) {
    throw new Error(`cannot load kubeconfig ${kubeconfigPath}: ${(e as Error).message}`);
  }
  const api = kc.makeApiClient(k8s.CoreV1Api);
  return {
    async podAndNamespace(namespace, name, timeoutMs) {
      const [pod, ns] = await Promise.all([
        withTimeout(api.readNamespacedPod({ name, namespace }), timeoutMs, `get pod ${namespace}/${name}`).catch((e) => {
          throw new Error(`get pod ${namespace}/${name}: ${describe(e)}`);
        }),
        withTimeout(api.readNamespace({ name: namespace }), timeoutMs, `get namespace ${namespace}`).catch((e) => {
          throw new Error(`get namespace ${namespace}: ${describe(e)}`);
        }),
      ]);
      return {
        pod: { labels: pod.metadata?.labels, annotations: pod.metadata?.annotations, hostNetwork: pod.spec?.hostNetwork },
        namespaceLabels: ns.metadata?.labels ?? {},
      };
    },
  };
}
