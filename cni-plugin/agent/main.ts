// Entry point of the node agent (runs as a DaemonSet pod with host networking, next to ztunnel).
//
// Environment (names follow Istio's istio-cni where it has the setting):
//   NODE_NAME                 the node (required; from the downward API)
//   KUBECONFIG                kubeconfig file; default: in-cluster service account, else ~/.kube/config
//   ZTUNNEL_UDS               ZDS socket; default /var/run/ztunnel/ztunnel.sock
//   CNI_EVENT_ADDRESS         plugin event socket; default /var/run/istio-cni/pluginevent.sock ('' disables)
//   AMBIENT_EXCLUDE_NAMESPACES comma-separated; default kube-system
//   POD_NAMESPACE             where ztunnel/istio-cni run; default istio-system
//   AMBIENT_DNS_CAPTURE       true: also capture DNS to ztunnel's 15053
//   IPTABLES_VARIANT          nft | legacy | auto (default auto: what the host uses)
//   OPS_PORT / OPS_HOST       /healthz, /readyz, /metrics; default 8000 on 0.0.0.0
//   LOG_LEVEL                 pino level; default info
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { CNI_EVENT_SOCKET } from '../protocol.js';
import { DEFAULT_ZDS_SOCKET, NodeAgent } from './agent.js';
import { AgentMetrics } from './metrics.js';
import { detectIptablesVariant, type IptablesVariant } from './netns.js';
import { startCniEventServer, startOpsServer } from './servers.js';

async function main(): Promise<void> {
  const env = process.env;
  const log = pino({ name: 'ambit-node-agent', level: env.LOG_LEVEL ?? 'info' });
  const nodeName = env.NODE_NAME;
  if (!nodeName) throw new Error('NODE_NAME is required');
  const kc = new KubeConfig();
  if (env.KUBECONFIG) kc.loadFromFile(env.KUBECONFIG);
  else kc.loadFromDefault();
  const wanted = (env.IPTABLES_VARIANT ?? 'auto').toLowerCase();
  const variant: IptablesVariant = wanted === 'nft' || wanted === 'legacy' ? wanted : detectIptablesVariant();
  const agent = new NodeAgent({
    kubeConfig: kc,
    nodeName,
    zdsSocket: env.ZTUNNEL_UDS || DEFAULT_ZDS_SOCKET,
    excludeNamespaces: (env.AMBIENT_EXCLUDE_NAMESPACES ?? 'kube-system').split(',').map((s) => s.trim()).filter(Boolean),
    systemNamespace: env.POD_NAMESPACE || 'istio-system',
    inpod: { dns: env.AMBIENT_DNS_CAPTURE === 'true' },
    iptablesVariant: variant,
    logger: log,
    metrics: new AgentMetrics({ defaultMetrics: true }),
  });
  const ops = await startOpsServer(agent, Number(env.OPS_PORT ?? 8000), env.OPS_HOST ?? '0.0.0.0');
  log.info({ port: ops.port, iptables: variant }, 'ops server listening');
  await agent.start();
  const cniSocket = env.CNI_EVENT_ADDRESS ?? CNI_EVENT_SOCKET;
  const cni = cniSocket ? await startCniEventServer(agent, cniSocket) : undefined;
  if (cni) log.info({ socket: cniSocket }, 'CNI event server listening');
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down (in-pod rules stay for the next agent)');
    cni?.close();
    await agent.stop();
    ops.server.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((e: unknown) => {
  process.stderr.write(`node agent failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
