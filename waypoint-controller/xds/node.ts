// Identity of an xDS client, from the node in its first request.
// ztunnel's node id: `ztunnel~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`; metadata NAME, NAMESPACE,
// INSTANCE_IPS, NODE_NAME (strings).
import { fromStruct, type JsonValue } from '../../protos/index.js';
import type { XdsNode } from '../../protos/xds.js';

export interface ClientNode {
  id: string;
  cluster: string;
  /** Proxy type from the id (`ztunnel`, `sidecar`, ...), '' if the id has another shape. */
  proxyType: string;
  ip: string;
  podName: string;
  podNamespace: string;
  domain: string;
  /** NODE_NAME from the metadata (the Kubernetes node the client runs on). */
  nodeName: string;
  metadata: { [k: string]: JsonValue };
}

export function parseNode(node: XdsNode | undefined): ClientNode {
  const id = node?.id ?? '';
  let metadata: { [k: string]: JsonValue } = {};
  try {
    if (node?.metadata) metadata = fromStruct(node.metadata);
  } catch {
    metadata = {};
  }
  const parts = id.split('~');
  let proxyType = '';
  let ip = '';
  let podName = '';
  let podNamespace = '';
  let domain = '';
  if (parts.length === 4) {
    [proxyType, ip] = [parts[0]!, parts[1]!];
    const podPart = parts[2]!;
    const dot = podPart.lastIndexOf('.');
    podName = dot >= 0 ? podPart.slice(0, dot) : podPart;
    podNamespace = dot >= 0 ? podPart.slice(dot + 1) : '';
    domain = parts[3]!;
  }
  const str = (v: JsonValue | undefined) => (typeof v === 'string' ? v : '');
  if (!podName) podName = str(metadata.NAME);
  if (!podNamespace) podNamespace = str(metadata.NAMESPACE);
  if (!ip) ip = str(metadata.INSTANCE_IPS).split(',')[0] ?? '';
  return { id, cluster: node?.cluster ?? '', proxyType, ip, podName, podNamespace, domain, nodeName: str(metadata.NODE_NAME), metadata };
}
