// The installer the node agent runs at start: puts the plugin executable into the CNI bin dirs and our plugin at the
// end of the node's CNI chain, keeps both in place while files around them change, and takes them out on uninstall
// (but not during an upgrade, so new pods keep waiting for the next agent instead of starting outside the mesh).
import { watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { CNI_EVENT_SOCKET } from '../protocol.js';
import { DEFAULT_EXCLUDE_NAMESPACES, PLUGIN_TYPE } from '../plugin/config.js';
import { copyBinary, removeBinary } from './binaries.js';
import { configFilenames, ensurePluginInFile, removePluginFromDir } from './cniconfig.js';

export interface InstallerLogger {
  info(msg: string): void;
  warn(msg: string): void;
}

export interface InstallerOptions {
  /** The plugin executable to install. */
  binSource: string;
  /** CNI bin dirs to copy it to (default ['/opt/cni/bin']). */
  binDirs?: string[];
  /** File name in the bin dirs, which is also the plugin `type` (default 'ambit-cni'). */
  binName?: string;
  /** CNI network config dir (default '/etc/cni/net.d'). */
  confDir?: string;
  /** Fields of our chain entry besides name/type (kubeconfig, cni_event_address, exclude_namespaces, ...). */
  pluginConfig?: Record<string, unknown>;
  /** Quiet time after a file event before reconciling (default 100 ms). */
  debounceMs?: number;
  /** Longest a burst of events can postpone a reconcile (default 1 s). */
  maxDelayMs?: number;
  /** Safety re-check even without events (default 30 s; 0 = off). */
  resyncMs?: number;
  log?: InstallerLogger;
}

export interface InstallState {
  /** The config list holding our plugin, undefined while the conf dir has no network yet. */
  confFile?: string;
  /** Whether the last reconcile found (or made) everything in place. */
  ready: boolean;
  /** Files written by the last reconcile. */
  written: string[];
}

const noLog: InstallerLogger = { info() {}, warn() {} };

export class CniInstaller {
  readonly binDirs: string[];
  readonly binName: string;
  readonly confDir: string;
  readonly entry: Record<string, unknown>;
  private readonly log: InstallerLogger;
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private firstEventAt = 0;
  private running: Promise<void> | undefined;
  private again = false;
  private state: InstallState = { ready: false, written: [] };
  private listeners: Array<(s: InstallState) => void> = [];

  constructor(private readonly opts: InstallerOptions) {
    this.binDirs = opts.binDirs ?? ['/opt/cni/bin'];
    this.binName = opts.binName ?? PLUGIN_TYPE;
    this.confDir = opts.confDir ?? '/etc/cni/net.d';
    this.log = opts.log ?? noLog;
    this.entry = {
      name: this.binName,
      type: this.binName,
      cni_event_address: CNI_EVENT_SOCKET,
      exclude_namespaces: DEFAULT_EXCLUDE_NAMESPACES,
      ...opts.pluginConfig,
    };
    this.entry.type = this.binName;
  }

  get status(): InstallState {
    return { ...this.state, written: [...this.state.written] };
  }

  /** Called after every reconcile (tests and readiness). */
  onReconcile(fn: (s: InstallState) => void): () => void {
    this.listeners.push(fn);
    return () => { this.listeners = this.listeners.filter((f) => f !== fn); };
  }

  /** One idempotent pass: binary in place, our entry last in the first network config. */
  install(): InstallState {
    return this.reconcile(false);
  }

  private reconcile(quick: boolean): InstallState {
    const written = copyBinary(this.opts.binSource, this.binDirs, this.binName, quick);
    const names = configFilenames(this.confDir);
    let confFile: string | undefined;
    if (names.length === 0) {
      this.log.warn(`no CNI network config in ${this.confDir} yet; waiting for one`);
    } else {
      const r = ensurePluginInFile(join(this.confDir, names[0]!), this.entry, this.binName);
      confFile = r.path;
      if (r.changed) {
        written.push(r.path);
        this.log.info(`inserted ${this.binName} at the end of ${r.path}`);
      }
    }
    for (const w of written) if (!w.startsWith(this.confDir)) this.log.info(`copied ${this.opts.binSource} to ${w}`);
    this.state = { ...(confFile ? { confFile } : {}), ready: confFile !== undefined, written };
    for (const l of this.listeners) l(this.status);
    return this.status;
  }

  /** install(), then keep things in place: re-check after changes in the conf dir or bin dirs. */
  start(): InstallState {
    const s = this.install();
    if (this.watchers.length) return s;
    for (const dir of [this.confDir, ...this.binDirs]) {
      const w = watch(dir, { persistent: false }, () => this.schedule());
      w.on('error', (e) => this.log.warn(`watching ${dir} failed: ${e.message}`));
      this.watchers.push(w);
    }
    const resync = this.opts.resyncMs ?? 30_000;
    if (resync > 0) {
      this.resyncTimer = setInterval(() => this.schedule(), resync);
      this.resyncTimer.unref();
    }
    return s;
  }

  private schedule(): void {
    const debounce = this.opts.debounceMs ?? 100;
    const maxDelay = this.opts.maxDelayMs ?? 1000;
    const now = Date.now();
    if (!this.timer) this.firstEventAt = now;
    else clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(debounce, this.firstEventAt + maxDelay - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runReconcile();
    }, wait);
    this.timer.unref();
  }

  private async runReconcile(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          this.reconcile(true);
        } catch (e) {
          this.state = { ...this.state, ready: false };
          this.log.warn(`reconciling the CNI install failed: ${(e as Error).message}`);
        }
      } while (this.again && this.watchers.length);
    })().finally(() => { this.running = undefined; });
    return this.running;
  }

  /** Stops watching; leaves files as they are. */
  async stop(): Promise<void> {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    clearTimeout(this.timer);
    this.timer = undefined;
    clearInterval(this.resyncTimer);
    await this.running;
  }

  /**
   * Stops watching and, unless this is an upgrade, removes our entry from every config list and the binary.
   * During an upgrade both stay, so pods created meanwhile fail closed until the new agent is up.
   */
  async uninstall(opts: { upgrade?: boolean } = {}): Promise<{ confFiles: string[]; binaries: string[] }> {
    await this.stop();
    if (opts.upgrade) {
      this.log.info('upgrade: leaving the CNI plugin and its config in place');
      return { confFiles: [], binaries: [] };
    }
    const confFiles = removePluginFromDir(this.confDir, this.binName);
    const binaries = removeBinary(this.binDirs, this.binName);
    for (const f of confFiles) this.log.info(`removed ${this.binName} from ${f}`);
    this.state = { ready: false, written: [] };
    return { confFiles, binaries };
  }
}
