// The node agent's start-up install of the CNI plugin: kubeconfig for the plugin, executable, conflist entry.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import test from 'ava';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { start as startApiServer } from '../waypoint-controller/apiserver/index.js';
import { startCniInstall } from '../cni-plugin/agent/install-cni.js';

test('the agent writes the plugin kubeconfig, copies the plugin and chains it into the node\'s conflist', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-agent-install-'));
  const api = await startApiServer({ port: 0 });
  try {
    const [bin, conf, run] = ['bin', 'net.d', 'run'].map((d) => join(dir, d)) as [string, string, string];
    const source = join(dir, 'ambit-cni-build');
    writeFileSync(source, '#!/bin/sh\necho plugin\n');
    chmodSync(source, 0o755);
    mkdirSync(conf, { recursive: true });
    writeFileSync(join(conf, '10-bridge.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'lab', plugins: [{ type: 'bridge', bridge: 'cni0' }] }));
    const installer = await startCniInstall({
      kubeConfig: api.kubeConfig(), binSource: source, binDirs: [bin], confDir: conf, runDir: run,
      eventAddress: join(run, 'pluginevent.sock'), excludeNamespaces: ['kube-system'], log: pino({ level: 'silent' }),
    });
    try {
      const list = JSON.parse(readFileSync(join(conf, '10-bridge.conflist'), 'utf8')) as { plugins: Record<string, unknown>[] };
      const ours = list.plugins.at(-1)!;
      t.is(ours.type, 'ambit-cni');
      t.is(ours.cni_event_address, join(run, 'pluginevent.sock'));
      t.deepEqual(ours.exclude_namespaces, ['kube-system']);
      t.true(existsSync(join(bin, 'ambit-cni')));
      // The plugin's kubeconfig is private and really reaches the API server.
      const kubeconfig = ours.kubeconfig as string;
      t.is(statSync(kubeconfig).mode & 0o777, 0o600);
      const kc = new KubeConfig();
      kc.loadFromFile(kubeconfig);
      const nss = await kc.makeApiClient(CoreV1Api).listNamespace();
      t.true(nss.items.some((n) => n.metadata?.name === 'default'));
    } finally {
      await installer.uninstall();
    }
    const after = JSON.parse(readFileSync(join(conf, '10-bridge.conflist'), 'utf8')) as { plugins: { type: string }[] };
    t.deepEqual(after.plugins.map((p) => p.type), ['bridge'], 'uninstall takes our entry out again');
  } finally {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
