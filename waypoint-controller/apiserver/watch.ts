// Serving one watch: replay from a resourceVersion (or synthetic ADDED for current objects), then
// live events as JSON lines; selector transitions become ADDED/DELETED; bookmarks; timeout; 410 Gone.
import type { ServerResponse } from 'node:http';
import { gone } from './errors.js';
import type { Store } from './store.js';
import type { KubeObject, ResourceType, StoreEvent } from './types.js';
import { apiVersionOf } from './types.js';

export interface WatchRequest {
  rt: ResourceType;
  namespace: string | undefined;
  filter: (o: KubeObject) => boolean;
  /** '' / undefined / '0': start with ADDED for all current objects. */
  resourceVersion: string | undefined;
  allowBookmarks: boolean;
  sendInitialEvents: boolean;
  timeoutSeconds: number | undefined;
  bookmarkIntervalMs: number;
}

export interface WatchHandle { close(): void }

type WireType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

/** What a watcher with this filter sees of one store event (undefined: nothing). */
export function translate(e: StoreEvent, req: Pick<WatchRequest, 'rt' | 'namespace' | 'filter'>): WireType | undefined {
  if (e.resource !== req.rt) return undefined;
  if (req.namespace !== undefined && req.rt.namespaced && e.object.metadata.namespace !== req.namespace) return undefined;
  const now = req.filter(e.object);
  if (e.type !== 'MODIFIED') return now ? e.type : undefined;
  const before = e.previous ? req.filter(e.previous) : false;
  if (now && before) return 'MODIFIED';
  if (now) return 'ADDED';
  if (before) return 'DELETED';
  return undefined;
}

/** Start streaming; the caller validated the request (resourceVersion is numeric or empty). */
export function serveWatch(store: Store, res: ServerResponse, req: WatchRequest, onEnd: () => void): WatchHandle {
  let ended = false;
  const timers: NodeJS.Timeout[] = [];
  let unsubscribe = (): void => {};
  const send = (type: WireType, object: unknown): void => {
    if (!ended) res.write(`${JSON.stringify({ type, object })}\n`);
  };
  const end = (): void => {
    if (ended) return;
    ended = true;
    unsubscribe();
    for (const t of timers) clearTimeout(t);
    res.end();
    onEnd();
  };
  const bookmark = (annotations?: Record<string, string>): void => send('BOOKMARK', {
    kind: req.rt.kind, apiVersion: apiVersionOf(req.rt),
    metadata: { resourceVersion: String(store.resourceVersion), ...(annotations ? { annotations } : {}) },
  });

  res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
  res.flushHeaders();
  res.on('close', end);

  const rv = req.resourceVersion;
  if (!rv || rv === '0' || req.sendInitialEvents) {
    const current = store.list(req.rt, req.rt.namespaced ? req.namespace : undefined).filter(req.filter);
    for (const o of current) send('ADDED', o);
    if (req.sendInitialEvents && req.allowBookmarks) bookmark({ 'k8s.io/initial-events-end': 'true' });
  } else {
    const since = store.eventsSince(Number(rv));
    if (!since) {
      send('ERROR', gone(`too old resource version: ${rv} (${store.oldestResumable})`).toStatus());
      end();
      return { close: end };
    }
    for (const e of since) {
      const t = translate(e, req);
      if (t) send(t, e.object);
    }
  }
  unsubscribe = store.subscribe((e) => {
    const t = translate(e, req);
    if (t) send(t, e.object);
  });
  if (req.allowBookmarks) {
    const iv = setInterval(() => bookmark(), req.bookmarkIntervalMs);
    iv.unref();
    timers.push(iv);
  }
  if (req.timeoutSeconds !== undefined && req.timeoutSeconds > 0) {
    const t = setTimeout(end, req.timeoutSeconds * 1000);
    t.unref();
    timers.push(t);
  }
  return { close: end };
}
