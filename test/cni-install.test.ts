// The CNI installer on temp dirs: binary copy, insertion into the node's first network config, conversion of a lone
// .conf, staying in place across rewrites, uninstall and upgrade.
import test from 'ava';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniInstaller, insertPlugin, removePlugin, configFilenames } from '../cni-plugin/install/index.js';

const dirs: string[] = [];
const installers: CniInstaller[] = [];
test.after.always(async () => {
  for (const i of installers) await i.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Env { root: string; bin: string; binDir: string; confDir: string; make(opts?: Partial<ConstructorParameters<typeof CniInstaller>[0]>): CniInstaller }

function env(): Env {
  const root = mkdtempSync(join(tmpdir(), 'ambit-cni-install-'));
  dirs.push(root);
  const bin = join(root, 'ambit-cni-build');
  writeFileSync(bin, '#!/bin/sh\necho plugin\n', { mode: 0o644 });
  const binDir = join(root, 'opt-cni-bin');
  const confDir = join(root, 'net.d');
  mkdirSync(binDir);
  mkdirSync(confDir);
  return {
    root, bin, binDir, confDir,
    make: (opts = {}) => {
      const i = new CniInstaller({
        binSource: bin, binDirs: [binDir], confDir, debounceMs: 20, resyncMs: 0,
        pluginConfig: { kubeconfig: '/var/run/istio-cni/istio-cni-kubeconfig', cni_event_address: '/var/run/istio-cni/pluginevent.sock' },
        ...opts,
      });
      installers.push(i);
      return i;
    },
  };
}

const BRIDGE_LIST = {
  cniVersion: '1.0.0',
  name: 'lab',
  plugins: [
    { type: 'bridge', bridge: 'cni0', isGateway: true, ipMasq: true, ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24' }]], routes: [{ dst: '0.0.0.0/0' }] } },
    { type: 'portmap', capabilities: { portMappings: true } },
  ],
};
const BRIDGE_CONF = { cniVersion: '0.3.1', name: 'lab', type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', subnet: '10.244.1.0/24' } };

const read = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as { name: string; cniVersion: string; plugins: Array<Record<string, unknown>> };
const types = (p: string) => read(p).plugins.map((x) => x.type);

async function waitFor(what: string, fn: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('inserts at the end of the first conflist (lexical order, invalid files skipped) and copies the binary', (t) => {
  const e = env();
  writeFileSync(join(e.confDir, '00-broken.conflist'), '{not json');
  writeFileSync(join(e.confDir, '05-empty.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'x', plugins: [] }));
  writeFileSync(join(e.confDir, '10-lab.conflist'), JSON.stringify(BRIDGE_LIST));
  writeFileSync(join(e.confDir, '20-other.conflist'), JSON.stringify({ ...BRIDGE_LIST, name: 'other' }));
  writeFileSync(join(e.confDir, 'README'), 'not a config');
  t.deepEqual(configFilenames(e.confDir), ['10-lab.conflist', '20-other.conflist']);

  const s = e.make().install();
  const list = join(e.confDir, '10-lab.conflist');
  t.is(s.confFile, list);
  t.true(s.ready);
  const got = read(list);
  t.is(got.cniVersion, '1.0.0');
  t.is(got.name, 'lab');
  t.deepEqual(got.plugins.slice(0, 2), BRIDGE_LIST.plugins);
  t.deepEqual(got.plugins[2], {
    name: 'ambit-cni', type: 'ambit-cni', cni_event_address: '/var/run/istio-cni/pluginevent.sock',
    exclude_namespaces: ['kube-system'], kubeconfig: '/var/run/istio-cni/istio-cni-kubeconfig',
  });
  t.deepEqual(read(join(e.confDir, '20-other.conflist')), { ...BRIDGE_LIST, name: 'other' }, 'other files untouched');
  const installed = join(e.binDir, 'ambit-cni');
  t.is(readFileSync(installed, 'utf8'), readFileSync(e.bin, 'utf8'));
  t.is(statSync(installed).mode & 0o777, 0o755);
  t.deepEqual(readdirSync(e.binDir), ['ambit-cni'], 'no temp files left');
});

test('a lone .conf becomes a .conflist as Istio names it', (t) => {
  const e = env();
  writeFileSync(join(e.confDir, '10-lab.conf'), JSON.stringify(BRIDGE_CONF), { mode: 0o600 });
  const s = e.make().install();
  const list = join(e.confDir, '10-lab.conflist');
  t.is(s.confFile, list);
  t.false(existsSync(join(e.confDir, '10-lab.conf')));
  const { cniVersion: _v, ...bridge } = BRIDGE_CONF;
  const got = read(list);
  t.is(got.name, 'k8s-pod-network');
  t.is(got.cniVersion, '0.3.1');
  t.deepEqual(got.plugins[0], bridge);
  t.is(got.plugins[1]!.type, 'ambit-cni');
  t.is(statSync(list).mode & 0o777, 0o600, 'keeps the file mode');
});

test('idempotent: a second install writes nothing', (t) => {
  const e = env();
  writeFileSync(join(e.confDir, '10-lab.conflist'), JSON.stringify(BRIDGE_LIST));
  const i = e.make();
  t.true(i.install().written.length === 2);
  const list = join(e.confDir, '10-lab.conflist');
  const before = { text: readFileSync(list, 'utf8'), ino: statSync(list).ino, binIno: statSync(join(e.binDir, 'ambit-cni')).ino };
  const again = e.make().install();
  t.deepEqual(again.written, []);
  t.is(readFileSync(list, 'utf8'), before.text);
  t.is(statSync(list).ino, before.ino, 'file not replaced');
  t.is(statSync(join(e.binDir, 'ambit-cni')).ino, before.binIno, 'binary not replaced');
  t.deepEqual(types(list), ['bridge', 'portmap', 'ambit-cni']);
  // A stale copy of our entry in the middle is moved to the end, once.
  writeFileSync(list, JSON.stringify({ ...BRIDGE_LIST, plugins: [BRIDGE_LIST.plugins[0], { type: 'ambit-cni', name: 'old' }, BRIDGE_LIST.plugins[1]] }));
  e.make().install();
  t.deepEqual(types(list), ['bridge', 'portmap', 'ambit-cni']);
  t.is(read(list).plugins[2]!.name, 'ambit-cni');
});

test('survives rewrites: the watcher puts the entry and the binary back', async (t) => {
  const e = env();
  const list = join(e.confDir, '10-lab.conflist');
  writeFileSync(list, JSON.stringify(BRIDGE_LIST));
  const i = e.make();
  i.start();
  t.deepEqual(types(list), ['bridge', 'portmap', 'ambit-cni']);

  // The primary CNI rewrites its file atomically (rename over it), without us.
  writeFileSync(join(e.confDir, '.tmp'), JSON.stringify(BRIDGE_LIST));
  renameSync(join(e.confDir, '.tmp'), list);
  await waitFor('re-insert after an atomic rewrite', () => types(list).at(-1) === 'ambit-cni');
  // ... or in place.
  writeFileSync(list, JSON.stringify(BRIDGE_LIST));
  await waitFor('re-insert after an in-place rewrite', () => { try { return types(list).at(-1) === 'ambit-cni'; } catch { return false; } });
  t.deepEqual(types(list), ['bridge', 'portmap', 'ambit-cni']);
  // ... or replaces its .conflist with a .conf of a new name earlier in the order.
  writeFileSync(join(e.confDir, '05-new.conf'), JSON.stringify(BRIDGE_CONF));
  await waitFor('conversion of the new first config', () => existsSync(join(e.confDir, '05-new.conflist')) && !existsSync(join(e.confDir, '05-new.conf')));
  t.deepEqual(types(join(e.confDir, '05-new.conflist')), ['bridge', 'ambit-cni']);
  // Someone deletes our binary.
  rmSync(join(e.binDir, 'ambit-cni'));
  await waitFor('binary copied back', () => existsSync(join(e.binDir, 'ambit-cni')));
  t.is(i.status.confFile, join(e.confDir, '05-new.conflist'));

  // Our own writes do not loop: after things settle, nothing more is written.
  let writes = 0;
  const off = i.onReconcile((s) => { writes += s.written.length; });
  await new Promise((r) => setTimeout(r, 300));
  off();
  t.is(writes, 0);
});

test('waits for a network config that is not there yet', async (t) => {
  const e = env();
  const i = e.make();
  const s = i.start();
  t.false(s.ready);
  t.is(s.confFile, undefined);
  t.true(existsSync(join(e.binDir, 'ambit-cni')));
  writeFileSync(join(e.confDir, '10-lab.conflist'), JSON.stringify(BRIDGE_LIST));
  await waitFor('insertion once the config appears', () => { try { return types(join(e.confDir, '10-lab.conflist')).at(-1) === 'ambit-cni'; } catch { return false; } });
  await waitFor('ready', () => i.status.ready);
  t.pass();
});

test('uninstall removes the entry and the binary and stops watching', async (t) => {
  const e = env();
  const list = join(e.confDir, '10-lab.conflist');
  writeFileSync(list, JSON.stringify(BRIDGE_LIST));
  const i = e.make();
  i.start();
  const r = await i.uninstall();
  t.deepEqual(r.confFiles, [list]);
  t.deepEqual(r.binaries, [join(e.binDir, 'ambit-cni')]);
  t.deepEqual(read(list), BRIDGE_LIST);
  t.false(existsSync(join(e.binDir, 'ambit-cni')));
  // Not watching any more: a rewrite stays as written.
  writeFileSync(list, JSON.stringify({ ...BRIDGE_LIST, name: 'rewritten' }));
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(types(list), ['bridge', 'portmap']);
  // Uninstalling again is harmless.
  t.deepEqual(await e.make().uninstall(), { confFiles: [], binaries: [] });
});

test('uninstall during an upgrade keeps the plugin in place', async (t) => {
  const e = env();
  const list = join(e.confDir, '10-lab.conflist');
  writeFileSync(list, JSON.stringify(BRIDGE_LIST));
  const i = e.make();
  i.start();
  const before = readFileSync(list, 'utf8');
  t.deepEqual(await i.uninstall({ upgrade: true }), { confFiles: [], binaries: [] });
  t.is(readFileSync(list, 'utf8'), before);
  t.true(existsSync(join(e.binDir, 'ambit-cni')));
  // The next agent's install finds everything in place.
  t.deepEqual(e.make().install().written, []);
});

test('insertPlugin/removePlugin on text', (t) => {
  const ours = { cniVersion: '0.3.1', name: 'ambit-cni', type: 'ambit-cni' };
  const single = insertPlugin(JSON.stringify(BRIDGE_CONF), ours);
  t.true(single.endsWith('\n'));
  t.deepEqual(JSON.parse(single), {
    name: 'k8s-pod-network', cniVersion: '0.3.1',
    plugins: [{ name: 'lab', type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', subnet: '10.244.1.0/24' } }, { name: 'ambit-cni', type: 'ambit-cni' }],
  });
  const twice = insertPlugin(single, ours);
  t.is(twice, single);
  t.deepEqual(JSON.parse(removePlugin(twice)!).plugins.map((p: { type: string }) => p.type), ['bridge']);
  t.is(removePlugin(JSON.stringify(BRIDGE_LIST)), undefined);
  t.throws(() => insertPlugin('{"name":"x"}', ours), { message: /neither "type" nor a "plugins" list/ });
});
