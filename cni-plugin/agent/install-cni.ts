// The node agent installs the CNI plugin at start, as Istio's istio-cni does: the plugin's kubeconfig in the agent's
// run dir (the agent's own credentials), the executable in the CNI bin dir, and our entry at the end of the node's
// conflist, kept there while the agent runs.
import type { KubeConfig } from '@kubernetes/client-node';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { CniInstaller } from '../install/index.js';
import { KUBECONFIG_NAME } from '../plugin/config.js';

export interface CniInstallOptions {
  kubeConfig: KubeConfig;
  /** The plugin executable (the single executable built by `npm run build:cni`). */
  binSource: string;
  binDirs: string[];
  confDir: string;
  /** Where the plugin's kubeconfig goes (Istio: /var/run/istio-cni). */
  runDir: string;
  eventAddress: string;
  excludeNamespaces: string[];
  log: Logger;
}

/** Write the kubeconfig the plugin uses for its pod/namespace lookups (mode 0600, atomically). */
export function writePluginKubeconfig(kc: KubeConfig, runDir: string): string {
  mkdirSync(runDir, { recursive: true });
  const path = join(runDir, KUBECONFIG_NAME);
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, kc.exportConfig(), { mode: 0o600 });
  renameSync(tmp, path);
  return path;
}

export async function startCniInstall(o: CniInstallOptions): Promise<CniInstaller> {
  const kubeconfig = writePluginKubeconfig(o.kubeConfig, o.runDir);
  for (const d of o.binDirs) mkdirSync(d, { recursive: true });
  const installer = new CniInstaller({
    binSource: o.binSource,
    binDirs: o.binDirs,
    confDir: o.confDir,
    pluginConfig: { kubeconfig, cni_agent_run_dir: o.runDir, cni_event_address: o.eventAddress, exclude_namespaces: o.excludeNamespaces },
    log: { info: (m) => o.log.info(m), warn: (m) => o.log.warn(m) },
  });
  await installer.start();
  return installer;
}
