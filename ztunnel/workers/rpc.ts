// Calls between the main thread and a proxy thread over their message channel: each side serves an API of one-argument
// methods, `call` waits for the other side's result (an error comes back as its message), `notify` does not.
import type { MessagePort, Worker } from 'node:worker_threads';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Api = Record<string, (arg: any) => unknown>;

type Message =
  | { kind: 'call'; id: number; method: string; arg: unknown }
  | { kind: 'notify'; method: string; arg: unknown }
  | { kind: 'reply'; id: number; ok: true; value: unknown }
  | { kind: 'reply'; id: number; ok: false; error: string };

type Port = Pick<MessagePort | Worker, 'postMessage'> & { on(event: 'message', l: (m: Message) => void): unknown };

export class Rpc<Local extends Api, Remote extends Api> {
  private seq = 0;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();

  constructor(
    private readonly port: Port,
    private readonly local: Local,
    private readonly opts: {
      /** Runs before anything is posted (the host sends queued state changes first, keeping them in order). */
      beforeSend?: () => void;
      /** A notification failed here: nobody waits for its result, so it is reported to this instead. */
      onNotifyError?: (method: string, err: Error) => void;
    } = {},
  ) {
    port.on('message', (m) => this.receive(m));
  }

  call<K extends keyof Remote & string>(method: K, arg: Parameters<Remote[K]>[0]): Promise<Awaited<ReturnType<Remote[K]>>> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.post({ kind: 'call', id, method, arg });
    });
  }

  notify<K extends keyof Remote & string>(method: K, arg: Parameters<Remote[K]>[0]): void {
    this.post({ kind: 'notify', method, arg });
  }

  /** The other side is gone: fail what is still waiting for it. */
  failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  private post(m: Message): void {
    this.opts.beforeSend?.();
    this.port.postMessage(m);
  }

  private receive(m: Message): void {
    if (m.kind === 'reply') {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.ok) p?.resolve(m.value);
      else p?.reject(new Error(m.error));
      return;
    }
    const run = async () => this.local[m.method]!(m.arg);
    const result = run();
    if (m.kind === 'notify') return void result.catch((err: Error) => this.opts.onNotifyError?.(m.method, err));
    result.then(
      (value) => this.post({ kind: 'reply', id: m.id, ok: true, value }),
      (err: Error) => this.post({ kind: 'reply', id: m.id, ok: false, error: err?.message ?? String(err) }),
    );
  }
}
