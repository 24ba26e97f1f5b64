// The LOCAL_XDS_PATH source: loads the file at start (errors are fatal) and re-reads it on change (errors keep the last good state).
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';
import type { ProxyState } from '../state/index.js';
import { parseLocalConfig, type LocalDefaults } from './local-config.js';

export class LocalFileSource {
  private watcher?: FSWatcher;
  private timer?: NodeJS.Timeout;
  private lastText?: string;

  constructor(
    private readonly path: string,
    private readonly defaults: LocalDefaults,
    private readonly state: ProxyState,
    private readonly log: Logger,
  ) {}

  /** Load once; throws with the file name and the offending field. */
  start(): void {
    const text = this.read();
    try {
      this.state.replace(parseLocalConfig(text, this.defaults));
    } catch (e) {
      throw new Error(`local config ${this.path}: ${(e as Error).message}`);
    }
    this.lastText = text;
    this.log.info({ path: this.path, workloads: this.state.workloads.size, services: this.state.services.size, policies: this.state.policies.size }, 'local config loaded');
    // Watch the directory: editors and `kubectl cp` replace the file rather than write it in place.
    this.watcher = watch(dirname(this.path), (_ev, name) => {
      if (name && name !== basename(this.path)) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.reload(), 50);
    });
  }

  reload(): void {
    let text: string;
    try {
      text = this.read();
    } catch (e) {
      this.log.error({ path: this.path, err: (e as Error).message }, 'local config unreadable; keeping the last good state');
      return;
    }
    if (text === this.lastText) return;
    try {
      this.state.replace(parseLocalConfig(text, this.defaults));
      this.lastText = text;
      this.log.info({ path: this.path, workloads: this.state.workloads.size, services: this.state.services.size, policies: this.state.policies.size }, 'local config reloaded');
    } catch (e) {
      this.log.error({ path: this.path, err: (e as Error).message }, 'local config invalid; keeping the last good state');
    }
  }

  close(): void {
    clearTimeout(this.timer);
    this.watcher?.close();
  }

  private read(): string {
    try {
      return readFileSync(this.path, 'utf8');
    } catch (e) {
      throw new Error(`cannot read local config ${this.path}: ${(e as Error).message}`);
    }
  }
}
