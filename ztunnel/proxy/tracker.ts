// Open connections, so a policy change can re-check them and shutdown can drain them.
import { authorize, type ConnectionInfo } from '../rbac/authorize.js';
import type { ProxyState } from '../state/index.js';

export interface TrackedConnection {
  /** Set for inbound connections: what policy was checked against, for the workload with this uid. */
  readonly authz?: ConnectionInfo;
  readonly dstWorkloadUid?: string;
  close(reason: string): void;
}

export class ConnectionTracker {
  private readonly open = new Set<TrackedConnection>();
  private idleWaiters: (() => void)[] = [];

  get size(): number {
    return this.open.size;
  }

  add(c: TrackedConnection): void {
    this.open.add(c);
  }

  /** Returns false when `c` was not open (already removed), so a connection can end exactly once. */
  remove(c: TrackedConnection): boolean {
    if (!this.open.delete(c)) return false;
    if (this.open.size === 0) for (const w of this.idleWaiters.splice(0)) w();
    return true;
  }

  /** Close inbound connections that the current policies no longer allow. Returns how many were closed. */
  recheck(state: ProxyState): number {
    let closed = 0;
    for (const c of [...this.open]) {
      if (!c.authz || c.dstWorkloadUid === undefined) continue;
      const w = state.workloads.get(c.dstWorkloadUid);
      const decision = w ? authorize(state.policies.forWorkload(w), c.authz) : { allowed: false, reason: 'destination workload removed' };
      if (!decision.allowed) {
        c.close(`policy re-check: ${decision.reason}`);
        closed++;
      }
    }
    return closed;
  }

  /** Resolves true when every connection has ended, false when the deadline came first. */
  waitIdle(deadlineMs: number): Promise<boolean> {
    if (this.open.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), deadlineMs);
      this.idleWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  closeAll(reason: string): void {
    for (const c of [...this.open]) c.close(reason);
  }
}
