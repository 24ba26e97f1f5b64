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
//   CNI_BIN_SOURCE            the plugin executable to install (npm run build:cni); unset: do not install the plugin
//   CNI_BIN_DIR / CNI_NET_DIR where it goes; default /opt/cni/bin and /etc/cni/net.d
//   CNI_AGENT_RUN_DIR         where the plugin's kubeconfig goes; default /var/run/istio-cni
//   AMBIENT_UPGRADE           true: on shutdown leave the plugin installed (an upgrade follows)
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { CNI_EVENT_SOCKET } from '../protocol.js';
import { DEFAULT_ZDS_SOCKET, NodeAgent } from './agent.js';
import { AgentMetrics } from './metrics.js';
import { detectIptablesVariant, type IptablesVariant } from './netns.js';
import { startCniInstall } from './install-cni.js';
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
  // Install the plugin only once the agent can answer it, so no pod is sent to a socket nobody serves.
  const installer = env.CNI_BIN_SOURCE
    ? await startCniInstall({
        kubeConfig: kc, binSource: env.CNI_BIN_SOURCE, binDirs: [env.CNI_BIN_DIR || '/opt/cni/bin'], confDir: env.CNI_NET_DIR || '/etc/cni/net.d',
        runDir: env.CNI_AGENT_RUN_DIR || '/var/run/istio-cni', eventAddress: cniSocket || CNI_EVENT_SOCKET,
        excludeNamespaces: (env.AMBIENT_EXCLUDE_NAMESPACES ?? 'kube-system').split(',').map((s) => s.trim()).filter(Boolean), log,
      })
    : undefined;
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down (in-pod rules stay for the next agent)');
    await installer?.uninstall({ upgrade: env.AMBIENT_UPGRADE === 'true' });
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
