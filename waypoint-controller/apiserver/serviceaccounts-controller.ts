// Built-in service-account controller: every active Namespace has a `default` ServiceAccount,
// created when the namespace appears and recreated when deleted (as kube-controller-manager does).
import { ApiError } from './errors.js';
import type { Operations } from './operations.js';
import type { ResourceRegistry } from './resources.js';
import type { Store } from './store.js';
import type { ResourceType, StoreEvent } from './types.js';

export const DEFAULT_SERVICE_ACCOUNT = 'default';

export class ServiceAccountsController {
  private readonly pending = new Set<string>();
  private unsubscribe: (() => void) | undefined;
  private readonly nsType: ResourceType;
  private readonly saType: ResourceType;

  constructor(private readonly store: Store, private readonly ops: Operations, registry: ResourceRegistry, private readonly log?: (msg: string) => void) {
    const need = (k: string): ResourceType => {
      const rt = registry.forKind('v1', k);
      if (!rt) throw new Error(`service-account controller needs v1 ${k}`);
      return rt;
    };
    this.nsType = need('Namespace');
    this.saType = need('ServiceAccount');
  }

  /** Subscribe to changes and reconcile every existing Namespace once (synchronously). */
  start(): void {
    this.unsubscribe = this.store.subscribe((e) => this.onEvent(e));
    for (const n of this.store.list(this.nsType)) this.pending.add(n.metadata.name!);
    this.flush();
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  private onEvent(e: StoreEvent): void {
    if (e.resource === this.nsType && e.type === 'ADDED') this.pending.add(e.object.metadata.name!);
    else if (e.resource === this.saType && e.type === 'DELETED' && e.object.metadata.name === DEFAULT_SERVICE_ACCOUNT) this.pending.add(e.object.metadata.namespace!);
    else return;
    // Not from inside the event: watchers must see this event before the ones our writes cause.
    // A microtask still runs before an API response that caused the event reaches its client.
    queueMicrotask(() => this.flush());
  }

  /** Create the missing `default` ServiceAccounts now. */
  flush(): void {
    const names = [...this.pending];
    this.pending.clear();
    for (const ns of names) {
      const namespace = this.store.get(this.nsType, undefined, ns);
      if (!namespace || namespace.metadata.deletionTimestamp) continue;
      if (this.store.get(this.saType, ns, DEFAULT_SERVICE_ACCOUNT)) continue;
      try {
        this.ops.create(this.saType, ns, { metadata: { name: DEFAULT_SERVICE_ACCOUNT, namespace: ns } });
      } catch (e) {
        if (!(e instanceof ApiError && e.code === 409)) this.log?.(`service-account controller: ${ns}: ${(e as Error).message}`);
      }
    }
  }
}
