// The standard dedicated-mode topology the end-to-end tests share, and helpers to read ztunnel output.
import type { ClusterSpec } from './cluster.js';
import type { HostSpec } from './dedicated.js';

export const IP = {
  client: '10.200.0.11',
  server1: '10.200.0.21',
  server2: '10.200.0.22',
  plain: '10.200.0.31',
  unknown: '10.200.0.32',
  tester: '10.200.0.99',
  echoVip: '10.96.0.10',
  whoVip: '10.96.0.20',
  plainVip: '10.96.0.30',
} as const;

export const ID = {
  client: 'spiffe://cluster.local/ns/default/sa/sleep',
  server: 'spiffe://cluster.local/ns/default/sa/echo',
} as const;

export const ECHO_HOST = 'echo.default.svc.cluster.local';
export const WHO_HOST = 'who.default.svc.cluster.local';

export const HOSTS: HostSpec[] = [
  { name: 'client', ips: [IP.client], mesh: { namespace: 'default', serviceAccount: 'sleep' } },
  { name: 'server1', ips: [IP.server1], mesh: { namespace: 'default', serviceAccount: 'echo' } },
  { name: 'server2', ips: [IP.server2], mesh: { namespace: 'default', serviceAccount: 'echo' } },
  { name: 'plain', ips: [IP.plain, IP.unknown] },
  { name: 'tester', ips: [IP.tester] },
];

export interface MeshOptions {
  server2Status?: 'Healthy' | 'Unhealthy';
  policies?: unknown[];
  extraWorkloads?: unknown[];
}

/**
 * echo: VIP port 80 -> named target (the workloads map 80 -> 8080); who: VIP port 80 -> numeric target 7070;
 * plain: a TCP (non-mesh) workload behind a VIP.
 */
export function meshConfig(o: MeshOptions = {}): unknown {
  const server = (name: string, ip: string, status = 'Healthy') => ({
    name, namespace: 'default', serviceAccount: 'echo', workloadIps: [ip], protocol: 'HBONE', status,
    canonicalName: 'echo', canonicalRevision: 'v1',
    services: { [`default/${ECHO_HOST}`]: { 80: 8080 }, [`default/${WHO_HOST}`]: {} },
  });
  return {
    workloads: [
      { name: 'client', namespace: 'default', serviceAccount: 'sleep', workloadIps: [IP.client], protocol: 'HBONE', canonicalName: 'sleep' },
      server('server1', IP.server1),
      server('server2', IP.server2, o.server2Status),
      { name: 'plain', namespace: 'legacy', serviceAccount: 'default', workloadIps: [IP.plain], protocol: 'TCP', services: { 'legacy/plain.legacy.svc.cluster.local': { 80: 9090 } } },
      ...(o.extraWorkloads ?? []),
    ],
    services: [
      { name: 'echo', namespace: 'default', hostname: ECHO_HOST, vips: [`/${IP.echoVip}`], ports: { 80: 0 } },
      { name: 'who', namespace: 'default', hostname: WHO_HOST, vips: [`/${IP.whoVip}`], ports: { 80: 7070 } },
      { name: 'plain', namespace: 'legacy', hostname: 'plain.legacy.svc.cluster.local', vips: [`/${IP.plainVip}`], ports: { 80: 0 } },
    ],
    policies: o.policies ?? [],
  };
}

/** Sum of a Prometheus counter over the series whose labels include all of `match`. */
export function counter(text: string, name: string, match: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const labels = line.slice(name.length + 1, line.lastIndexOf('}'));
    if (Object.entries(match).every(([k, v]) => labels.includes(`${k}="${v}"`))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** The in-pod tests' cluster: node1 has a client, one echo replica and a pod outside the mesh; node2 the other echo
 *  replica and a plain (non-mesh) server. Services echo and who select both replicas; plain selects the plain server. */
export const INPOD_VIP = { echo: '10.96.0.10', who: '10.96.0.20', plain: '10.96.0.30' } as const;

export const INPOD_CLUSTER: ClusterSpec = {
  nodes: [
    {
      name: 'node1',
      pods: [
        { name: 'client', serviceAccount: 'sleep', enrolled: true },
        { name: 'server-a', serviceAccount: 'echo', enrolled: true },
        { name: 'outsider', serviceAccount: 'outsider' },
      ],
    },
    {
      name: 'node2',
      pods: [
        { name: 'server-b', serviceAccount: 'echo', enrolled: true },
        { name: 'plain-server', namespace: 'legacy', serviceAccount: 'plain' },
      ],
    },
  ],
  services: [
    { name: 'echo', vip: INPOD_VIP.echo, ports: { 80: 8080 }, selectorPods: ['server-a', 'server-b'] },
    { name: 'who', vip: INPOD_VIP.who, ports: { 80: 7070 }, selectorPods: ['server-a', 'server-b'] },
    { name: 'plain', namespace: 'legacy', vip: INPOD_VIP.plain, ports: { 80: 9090 }, selectorPods: ['plain-server'] },
  ],
};
