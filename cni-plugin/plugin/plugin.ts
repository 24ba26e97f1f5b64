// The CNI plugin as a pure function: (environment, stdin text, dependencies) -> (stdout text, exit code).
// Behaves as Istio's istio-cni does in ambient mode: a chained plugin that passes prevResult through and, for a pod
// in the ambient mesh, tells the node agent about it (POST /cmdadd), failing the ADD when the agent cannot take it.
import { ipNet, type CniPluginAddEvent, type IpConfig } from '../protocol.js';
import { AgentRejectedError, AgentUnreachableError, sendAddEvent } from './agent-client.js';
import { decodeConfig, parseConfig, type PluginConfig } from './config.js';
import { decideEnrollment } from './enrollment.js';
import { kubeLookup, type KubeLookup } from './kube.js';
import { silentLogger, type Logger } from './log.js';
import {
  CniError, compareVersions, convertResult, CURRENT_VERSION, errorJson, ErrorCode, isSupportedVersion, parseCniArgs, parseEnv,
  resultIps, versionJson, type CniEnv,
} from './spec.js';

export interface PluginDeps {
  /** A Kubernetes client for the kubeconfig at this path. */
  kube(kubeconfigPath: string): Promise<KubeLookup>;
  sendAddEvent(socketPath: string, event: CniPluginAddEvent, timeoutMs: number): Promise<void>;
  log: Logger;
  sleep(ms: number): Promise<void>;
}

export interface PluginOutput {
  stdout: string;
  exitCode: number;
}

export const defaultDeps = (log: Logger = silentLogger): PluginDeps => ({
  kube: kubeLookup,
  sendAddEvent,
  log,
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
});

/** The cniVersion to stamp on an error: the config's when we support it, else ours. */
function errorVersion(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown })?.cniVersion;
    return isSupportedVersion(v) ? v : CURRENT_VERSION;
  } catch {
    return CURRENT_VERSION;
  }
}

export async function runPlugin(env: Record<string, string | undefined>, stdin: string, deps: PluginDeps): Promise<PluginOutput> {
  try {
    const cni = parseEnv(env);
    if (cni.command === 'VERSION') return { stdout: versionJson(), exitCode: 0 };
    const conf = parseConfig(decodeConfig(stdin));
    deps.log.setLevel(conf.logLevel);
    switch (cni.command) {
      case 'ADD':
        return { stdout: await cmdAdd(cni, conf, deps), exitCode: 0 };
      case 'CHECK':
        if (compareVersions(conf.cniVersion, '0.4.0') < 0) {
          throw new CniError(ErrorCode.IncompatibleVersion, 'config version does not allow CHECK', `config is "${conf.cniVersion}"`);
        }
        if (conf.prevResult) resultIps(conf.prevResult);
        return { stdout: '', exitCode: 0 };
      // DEL: the node agent learns of deleted pods from the API server; nothing to undo here.
      // GC/STATUS (CNI 1.1): we hold no per-attachment state and need nothing to be ready.
      case 'DEL':
      case 'GC':
      case 'STATUS':
        return { stdout: '', exitCode: 0 };
    }
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(ErrorCode.Internal, `ambit-cni: internal error: ${(e as Error)?.message ?? String(e)}`);
    deps.log.log('error', err.message, { code: err.code, details: err.details, command: env.CNI_COMMAND, containerId: env.CNI_CONTAINERID });
    return { stdout: errorJson(err, errorVersion(stdin)), exitCode: 1 };
  }
  return { stdout: '', exitCode: 0 };
}

/** prevResult as the next plugin expects it (the config's version), or an empty result when we are first. */
function passThrough(conf: PluginConfig): string {
  const out = conf.prevResult ? convertResult(conf.prevResult, conf.cniVersion) : { cniVersion: conf.cniVersion, dns: {} };
  return JSON.stringify(out) + '\n';
}

async function cmdAdd(cni: CniEnv, conf: PluginConfig, deps: PluginDeps): Promise<string> {
  const { log } = deps;
  const ips = conf.prevResult ? resultIps(convertResult(conf.prevResult, '1.0.0')) : [];
  const args = parseCniArgs(cni.args);
  const podName = args.get('K8S_POD_NAME') ?? '';
  const podNamespace = args.get('K8S_POD_NAMESPACE') ?? '';
  const pod = `${podNamespace}/${podName}`;
  const skip = (reason: string) => {
    log.log('info', `not enrolling ${pod}: ${reason}`, { containerId: cni.containerId });
    return passThrough(conf);
  };
  if (!podName || !podNamespace) return skip('not a Kubernetes pod (no K8S_POD_NAME/K8S_POD_NAMESPACE)');
  if (!conf.ambientEnabled) return skip('ambient disabled in the plugin config');
  if (conf.excludeNamespaces.includes(podNamespace)) return skip(`namespace ${podNamespace} is excluded`);
  if (conf.podNamespace === podNamespace && podName.startsWith(conf.agentPodPrefix)) return skip('the node agent pod itself');

  let facts: Awaited<ReturnType<KubeLookup['podAndNamespace']>> | undefined;
  let lastErr = '';
  for (let attempt = 1; attempt <= conf.kubeAttempts && !facts; attempt++) {
    try {
      const kube = await deps.kube(conf.kubeconfig);
      facts = await kube.podAndNamespace(podNamespace, podName, conf.kubeTimeoutMs);
    } catch (e) {
      lastErr = (e as Error)?.message ?? String(e);
      log.log('warn', `lookup of ${pod} failed (attempt ${attempt}/${conf.kubeAttempts}): ${lastErr}`);
      if (attempt < conf.kubeAttempts) await deps.sleep(Math.min(200 * attempt, 1000));
    }
  }
  if (!facts) {
    throw new CniError(ErrorCode.TryAgainLater,
      `ambit-cni: cannot decide whether pod ${pod} belongs in the ambient mesh: Kubernetes API lookup failed: ${lastErr}`, `kubeconfig ${conf.kubeconfig}`);
  }
  const decision = decideEnrollment(facts.pod, facts.namespaceLabels);
  if (!decision.enroll) return skip(decision.reason);

  const event: CniPluginAddEvent = {
    Netns: cni.netns,
    PodName: podName,
    PodNamespace: podNamespace,
    // Shaped as Go encodes Istio's IPConfig: a nil *int is null, a nil net.IP is "".
    IPs: ips.map((ip): IpConfig => ({ Interface: ip.interface ?? null, Address: ipNet(ip.address), Gateway: ip.gateway ?? '' })),
  };
  try {
    await deps.sendAddEvent(conf.eventSocket, event, conf.eventTimeoutMs);
  } catch (e) {
    const why = (e as Error)?.message ?? String(e);
    if (e instanceof AgentRejectedError) {
      throw new CniError(ErrorCode.Internal, `ambit-cni: the node agent rejected pod ${pod} (${decision.reason}): ${why}`, `socket ${conf.eventSocket}`);
    }
    const code = e instanceof AgentUnreachableError ? ErrorCode.TryAgainLater : ErrorCode.Internal;
    throw new CniError(code,
      `ambit-cni: pod ${pod} is in the ambient mesh (${decision.reason}) but the node agent cannot be reached at ${conf.eventSocket}: ${why}; refusing to start the pod outside the mesh`,
      `socket ${conf.eventSocket}`);
  }
  log.log('info', `enrolled ${pod}: ${decision.reason}`, { containerId: cni.containerId, netns: cni.netns, ips: ips.map((i) => i.address) });
  return passThrough(conf);
}
