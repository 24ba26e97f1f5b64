// CLI around the installer: `ambit-cni-install --bin <plugin> [--bin-dir D]... [--conf-dir D] [--plugin-config JSON]
//   [--watch] | --uninstall [--upgrade]`. With --watch it keeps the plugin in place until SIGTERM/SIGINT, then
// uninstalls (an upgrade when AMBIT_CNI_UPGRADE=true or --upgrade is given).
import { parseArgs } from 'node:util';
import { CniInstaller } from './installer.js';

const { values } = parseArgs({
  options: {
    bin: { type: 'string' },
    'bin-dir': { type: 'string', multiple: true },
    'conf-dir': { type: 'string' },
    'plugin-config': { type: 'string' },
    watch: { type: 'boolean' },
    uninstall: { type: 'boolean' },
    upgrade: { type: 'boolean' },
  },
});

const log = {
  info: (m: string) => process.stderr.write(JSON.stringify({ level: 'info', msg: m }) + '\n'),
  warn: (m: string) => process.stderr.write(JSON.stringify({ level: 'warn', msg: m }) + '\n'),
};

const installer = new CniInstaller({
  binSource: values.bin ?? '',
  ...(values['bin-dir'] ? { binDirs: values['bin-dir'] } : {}),
  ...(values['conf-dir'] ? { confDir: values['conf-dir'] } : {}),
  ...(values['plugin-config'] ? { pluginConfig: JSON.parse(values['plugin-config']) as Record<string, unknown> } : {}),
  log,
});
const upgrade = values.upgrade === true || process.env.AMBIT_CNI_UPGRADE === 'true';

if (values.uninstall) {
  const r = await installer.uninstall({ upgrade });
  process.stdout.write(JSON.stringify(r) + '\n');
} else {
  if (!values.bin) {
    process.stderr.write('--bin <path of the plugin executable> is required\n');
    process.exit(2);
  }
  if (values.watch) {
    const s = installer.start();
    process.stdout.write(JSON.stringify(s) + '\n');
    const keepAlive = setInterval(() => {}, 1 << 30);
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      process.once(sig, () => {
        clearInterval(keepAlive);
        void installer.uninstall({ upgrade }).then(() => process.exit(0));
      });
    }
  } else {
    process.stdout.write(JSON.stringify(installer.install()) + '\n');
  }
}
