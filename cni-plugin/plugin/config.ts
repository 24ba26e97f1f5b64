// The network configuration our plugin reads from stdin: the CNI common fields plus Istio's istio-cni fields
// (so a conflist written for Istio's plugin works with ours) and our own few.
import { join } from 'node:path';
import { CNI_EVENT_SOCKET } from '../protocol.js';
import { CniError, ErrorCode, isSupportedVersion, SUPPORTED_VERSIONS, validNetworkName } from './spec.js';

export const PLUGIN_TYPE = 'ambit-cni';
export const DEFAULT_AGENT_RUN_DIR = '/var/run/istio-cni';
export const DEFAULT_EXCLUDE_NAMESPACES = ['kube-system'];
/** Istio's name for the kubeconfig the installer writes into the agent run dir. */
export const KUBECONFIG_NAME = 'istio-cni-kubeconfig';

export interface PluginConfig {
  cniVersion: string;
  name: string;
  type: string;
  /** As received; undefined when not chained after another plugin. */
  prevResult?: Record<string, unknown>;
  /** Path of the kubeconfig used for pod/namespace lookups. */
  kubeconfig: string;
  /** Unix socket of the node agent's plugin event server. */
  eventSocket: string;
  excludeNamespaces: string[];
  ambientEnabled: boolean;
  /** Namespace of the node agent; its own pods (`<agentPodPrefix>*`) are never enrolled. */
  podNamespace?: string;
  agentPodPrefix: string;
  logLevel: string;
  /** Per-request timeout towards the node agent (Istio: 5 s). */
  eventTimeoutMs: number;
  /** Per-request timeout towards the Kubernetes API. */
  kubeTimeoutMs: number;
  /** Attempts at the pod/namespace lookup before failing with "try again later". */
  kubeAttempts: number;
}

function bad(msg: string, details = ''): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, msg, details);
}

function optString(o: Record<string, unknown>, key: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw bad(`network config field "${key}" must be a string`);
  return v;
}

function optNumber(o: Record<string, unknown>, key: string, def: number, min: number, max: number): number {
  const v = o[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw bad(`network config field "${key}" must be a number in [${min}, ${max}]`);
  return v;
}

/** Decodes stdin: 6 for text that is not a JSON object, 7 for a bad field, 1 for an unsupported cniVersion. */
export function decodeConfig(stdin: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (e) {
    throw new CniError(ErrorCode.DecodingFailure, `error unmarshalling network config: ${(e as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CniError(ErrorCode.DecodingFailure, 'error unmarshalling network config: not a JSON object');
  }
  return raw as Record<string, unknown>;
}

/** Checks the fields every command except VERSION needs (libcni skel's order: decode, name, then version). */
export function validateCommon(o: Record<string, unknown>): void {
  if (o.cniVersion !== undefined && typeof o.cniVersion !== 'string') {
    throw new CniError(ErrorCode.DecodingFailure, 'error unmarshalling network config: cniVersion must be a string');
  }
  const name = o.name;
  if (name === undefined || name === null || name === '') throw bad('missing network name');
  if (typeof name !== 'string' || !validNetworkName(name)) throw bad('invalid network name', String(name));
}

export function checkVersion(o: Record<string, unknown>): string {
  // A config without cniVersion is a 0.1.0 config, which we do not implement.
  const v = typeof o.cniVersion === 'string' && o.cniVersion !== '' ? o.cniVersion : '0.1.0';
  if (!isSupportedVersion(v)) {
    throw new CniError(ErrorCode.IncompatibleVersion, 'incompatible CNI versions', `config is "${v}", plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`);
  }
  return v;
}

export function parseConfig(o: Record<string, unknown>): PluginConfig {
  validateCommon(o);
  const cniVersion = checkVersion(o);
  const prev = o.prevResult;
  if (prev !== undefined && prev !== null && (typeof prev !== 'object' || Array.isArray(prev))) {
    throw new CniError(ErrorCode.DecodingFailure, 'could not parse prevResult: not a JSON object');
  }
  const excl = o.exclude_namespaces;
  let excludeNamespaces = DEFAULT_EXCLUDE_NAMESPACES;
  if (excl !== undefined && excl !== null) {
    if (!Array.isArray(excl) || excl.some((x) => typeof x !== 'string')) throw bad('network config field "exclude_namespaces" must be a list of strings');
    excludeNamespaces = excl as string[];
  }
  const ambient = o.ambient_enabled;
  if (ambient !== undefined && ambient !== null && typeof ambient !== 'boolean') throw bad('network config field "ambient_enabled" must be a boolean');
  const runDir = optString(o, 'cni_agent_run_dir') || DEFAULT_AGENT_RUN_DIR;
  const k8s = o.kubernetes;
  let kubeconfig = optString(o, 'kubeconfig');
  if (!kubeconfig && k8s && typeof k8s === 'object' && !Array.isArray(k8s)) kubeconfig = optString(k8s as Record<string, unknown>, 'kubeconfig');
  const eventSocket = optString(o, 'cni_event_address') || (o.cni_agent_run_dir ? join(runDir, 'pluginevent.sock') : CNI_EVENT_SOCKET);
  const podNamespace = optString(o, 'pod_namespace');
  return {
    cniVersion,
    name: o.name as string,
    type: optString(o, 'type') ?? '',
    ...(prev ? { prevResult: prev as Record<string, unknown> } : {}),
    kubeconfig: kubeconfig || join(runDir, KUBECONFIG_NAME),
    eventSocket,
    excludeNamespaces,
    ambientEnabled: ambient !== false,
    ...(podNamespace ? { podNamespace } : {}),
    agentPodPrefix: optString(o, 'agent_pod_prefix') || 'istio-cni-node-',
    logLevel: optString(o, 'plugin_log_level') || 'info',
    eventTimeoutMs: optNumber(o, 'cni_event_timeout_ms', 5000, 1, 60_000),
    kubeTimeoutMs: optNumber(o, 'kube_timeout_ms', 5000, 1, 60_000),
    kubeAttempts: optNumber(o, 'kube_attempts', 3, 1, 30),
  };
}
