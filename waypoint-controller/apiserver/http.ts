// HTTP routing for the Kubernetes REST API: path parsing, verbs, query parameters, bodies, Status errors.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseYaml } from 'yaml';
import { apiGroup, apiGroupList, apiVersions, resourceList, TOKEN_RESOURCES, versionInfo, type ExtraResource } from './discovery.js';
import { ApiError, badRequest, gone, methodNotAllowed, pathNotFound, unauthorized } from './errors.js';
import type { Operations, Subresource, WriteOptions } from './operations.js';
import type { ResourceRegistry } from './resources.js';
import { objectFilter, parseFieldSelector, parseLabelSelector } from './selectors.js';
import type { Store } from './store.js';
import type { KubeObject, ResourceType } from './types.js';
import { apiVersionOf } from './types.js';
import { serveWatch, type WatchHandle } from './watch.js';
import { jwks, JWT_ALG } from './jwt.js';
import { AUTHN_GROUP, type TokenService } from './tokens.js';

export interface HttpOptions {
  token?: string;
  bookmarkIntervalMs: number;
  maxBodyBytes?: number;
  serverAddress: () => string;
  /** Serve TokenRequest, TokenReview and the issuer's OIDC discovery/JWKS with this. */
  tokens?: TokenService;
  log?: (msg: string) => void;
}

export interface Route {
  group: string;
  version: string;
  rt: ResourceType;
  namespace?: string;
  name?: string;
  sub: Subresource;
  watchPath: boolean;
}

/** Map a resource path to its type, namespace, name and subresource (undefined: not a resource path). */
export function parseResourcePath(registry: ResourceRegistry, pathname: string): Route | undefined {
  const segs = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  let group: string;
  let version: string;
  let rest: string[];
  if (segs[0] === 'api' && segs.length >= 3) { group = ''; version = segs[1]!; rest = segs.slice(2); }
  else if (segs[0] === 'apis' && segs.length >= 4) { group = segs[1]!; version = segs[2]!; rest = segs.slice(3); }
  else return undefined;
  let watchPath = false;
  if (rest[0] === 'watch') { watchPath = true; rest = rest.slice(1); }
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3 && registry.byResource(group, version, rest[2]!)?.namespaced) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const rt = rest[0] ? registry.byResource(group, version, rest[0]) : undefined;
  if (!rt || rest.length > 3) return undefined;
  if (namespace !== undefined && !rt.namespaced) return undefined;
  const sub = rest[2];
  if (sub !== undefined && (sub !== 'status' || !rt.hasStatus)) return undefined;
  const route: Route = { group, version, rt, sub: sub as Subresource, watchPath };
  if (namespace !== undefined) route.namespace = namespace;
  if (rest[1] !== undefined) route.name = rest[1];
  return route;
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage, max: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    const b = c as Buffer;
    size += b.length;
    if (size > max) throw new ApiError(413, 'RequestEntityTooLarge', `request entity too large (limit ${max} bytes)`);
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseBody(text: string, contentType: string | undefined): unknown {
  if (!text.trim()) return undefined;
  try {
    if (contentType && /yaml/.test(contentType)) return parseYaml(text) as unknown;
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw badRequest(`error decoding request body: ${(e as Error).message}`);
  }
}

const flag = (q: URLSearchParams, k: string): boolean => ['true', '1'].includes(q.get(k) ?? '');

function numberParam(q: URLSearchParams, k: string): number | undefined {
  const v = q.get(k);
  if (v === null || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw badRequest(`invalid value for ${k}: ${v}`);
  return n;
}

function resourceVersionParam(q: URLSearchParams): string | undefined {
  const v = q.get('resourceVersion') ?? undefined;
  if (v !== undefined && v !== '' && !/^\d+$/.test(v)) {
    throw new ApiError(400, 'BadRequest', `resourceVersion: Invalid value: "${v}": must be a non-negative integer`);
  }
  return v;
}

export class ApiHandler {
  readonly watches = new Set<WatchHandle>();

  private readonly extras: readonly ExtraResource[];

  constructor(private readonly ops: Operations, private readonly store: Store, private readonly registry: ResourceRegistry, private readonly opts: HttpOptions) {
    this.extras = opts.tokens ? TOKEN_RESOURCES : [];
  }

  handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.dispatch(req, res).catch((e: unknown) => {
      const err = e instanceof ApiError ? e : new ApiError(500, 'InternalError', `Internal error occurred: ${(e as Error)?.message ?? String(e)}`);
      if (err.code >= 500) this.opts.log?.(`${req.method} ${req.url}: ${(e as Error)?.stack ?? String(e)}`);
      if (res.headersSent) { res.destroy(); return; }
      sendJson(res, err.code, err.toStatus());
    });
  };

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const method = (req.method ?? 'GET').toUpperCase();
    if (['/healthz', '/livez', '/readyz'].includes(path)) {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('ok');
      return;
    }
    if (this.opts.token !== undefined && req.headers.authorization !== `Bearer ${this.opts.token}`) throw unauthorized();

    const discovery = this.discovery(path);
    if (discovery !== undefined) {
      if (method !== 'GET') throw methodNotAllowed(`the server does not allow this method on the requested resource`);
      sendJson(res, 200, discovery);
      return;
    }
    if (this.opts.tokens && await this.tokenEndpoint(this.opts.tokens, path, method, req, res)) return;
    const route = parseResourcePath(this.registry, path);
    if (!route) throw pathNotFound(url.pathname);
    await this.resource(route, method, url.searchParams, req, res);
  }

  private discovery(path: string): object | undefined {
    if (path === '/version') return versionInfo();
    if (path === '/api') return apiVersions(this.opts.serverAddress());
    if (path === '/apis') return apiGroupList(this.registry, this.extras);
    const segs = path.split('/').filter(Boolean);
    if (segs[0] === 'api' && segs.length === 2) return resourceList(this.registry, '', segs[1]!, this.extras) ?? (() => { throw pathNotFound(path); })();
    if (segs[0] === 'apis' && segs.length === 2) return apiGroup(this.registry, segs[1]!, this.extras) ?? (() => { throw pathNotFound(path); })();
    if (segs[0] === 'apis' && segs.length === 3) return resourceList(this.registry, segs[1]!, segs[2]!, this.extras) ?? (() => { throw pathNotFound(path); })();
    const tokens = this.opts.tokens;
    if (tokens && path === '/.well-known/openid-configuration') {
      return {
        issuer: tokens.issuer, jwks_uri: `http://${this.opts.serverAddress()}/openid/v1/jwks`,
        response_types_supported: ['id_token'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: [JWT_ALG],
      };
    }
    if (tokens && path === '/openid/v1/jwks') return jwks(tokens.opts.key);
    return undefined;
  }

  /** serviceaccounts/{name}/token and tokenreviews; false when `path` is neither. */
  private async tokenEndpoint(tokens: TokenService, path: string, method: string, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const segs = path.split('/').filter(Boolean).map(decodeURIComponent);
    const isTokenRequest = segs.length === 7 && segs[0] === 'api' && segs[1] === 'v1' && segs[2] === 'namespaces' && segs[4] === 'serviceaccounts' && segs[6] === 'token';
    const isTokenReview = segs.length === 4 && segs[0] === 'apis' && segs[1] === AUTHN_GROUP && segs[2] === 'v1' && segs[3] === 'tokenreviews';
    if (!isTokenRequest && !isTokenReview) return false;
    if (method !== 'POST') throw methodNotAllowed('the server does not allow this method on the requested resource');
    const body = parseBody(await readBody(req, this.opts.maxBodyBytes ?? 3 * 1024 * 1024), req.headers['content-type']);
    sendJson(res, 201, isTokenRequest ? tokens.tokenRequest(segs[3]!, segs[5]!, body) : tokens.tokenReview(body));
    return true;
  }

  private async resource(route: Route, method: string, q: URLSearchParams, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { rt, namespace, name, sub } = route;
    const dryRun = q.getAll('dryRun');
    if (dryRun.some((d) => d !== 'All')) throw badRequest(`dryRun: Unsupported value: "${dryRun.join(',')}": supported values: "All"`);
    const wopts: WriteOptions = { dryRun: dryRun.length > 0 };
    const fm = q.get('fieldManager');
    if (fm) wopts.fieldManager = fm;
    const body = async (): Promise<string> => readBody(req, this.opts.maxBodyBytes ?? 3 * 1024 * 1024);

    if (name === undefined) {
      if (method === 'GET' && (route.watchPath || flag(q, 'watch'))) return this.watch(route, q, res);
      if (method === 'GET') { sendJson(res, 200, this.list(rt, namespace, q)); return; }
      if (method === 'POST') {
        if (rt.namespaced && namespace === undefined) throw methodNotAllowed(`POST is not supported on ${rt.plural} across all namespaces`);
        const obj = this.ops.create(rt, namespace, parseBody(await body(), req.headers['content-type']), wopts);
        sendJson(res, 201, obj);
        return;
      }
      if (method === 'DELETE') {
        const filter = objectFilter(parseLabelSelector(q.get('labelSelector')), parseFieldSelector(q.get('fieldSelector'), rt));
        const options = parseBody(await body(), req.headers['content-type']);
        const items = this.store.list(rt, namespace).filter(filter).map((o) => this.ops.delete(rt, namespace ?? o.metadata.namespace, o.metadata.name!, options, wopts));
        sendJson(res, 200, { kind: rt.listKind, apiVersion: apiVersionOf(rt), metadata: { resourceVersion: String(this.store.resourceVersion) }, items });
        return;
      }
      throw methodNotAllowed(`the server does not allow this method on the requested resource`);
    }
    if (route.watchPath) {
      if (method !== 'GET') throw methodNotAllowed('the server does not allow this method on the requested resource');
      q.set('fieldSelector', [q.get('fieldSelector'), `metadata.name=${name}`].filter(Boolean).join(','));
      return this.watch(route, q, res);
    }
    switch (method) {
      case 'GET':
        sendJson(res, 200, this.ops.get(rt, namespace, name));
        return;
      case 'PUT':
        sendJson(res, 200, this.ops.update(rt, namespace, name, parseBody(await body(), req.headers['content-type']), sub, wopts));
        return;
      case 'PATCH': {
        const existed = this.store.get(rt, namespace, name) !== undefined;
        const obj = this.ops.patch(rt, namespace, name, req.headers['content-type'] ?? '', await body(), sub, { ...wopts, force: flag(q, 'force') });
        sendJson(res, existed ? 200 : 201, obj);
        return;
      }
      case 'DELETE':
        if (sub) throw methodNotAllowed('the server does not allow this method on the requested resource');
        sendJson(res, 200, this.ops.delete(rt, namespace, name, parseBody(await body(), req.headers['content-type']), wopts));
        return;
      default:
        throw methodNotAllowed('the server does not allow this method on the requested resource');
    }
  }

  private list(rt: ResourceType, namespace: string | undefined, q: URLSearchParams): object {
    const filter = objectFilter(parseLabelSelector(q.get('labelSelector')), parseFieldSelector(q.get('fieldSelector'), rt));
    const rv = resourceVersionParam(q);
    const current = this.store.resourceVersion;
    const match = q.get('resourceVersionMatch');
    if (match && !['Exact', 'NotOlderThan'].includes(match)) throw badRequest(`resourceVersionMatch: Unsupported value: "${match}"`);
    if (match && !rv) throw badRequest('resourceVersionMatch is forbidden unless resourceVersion is provided');
    if (rv && rv !== '0' && Number(rv) > current) {
      throw new ApiError(504, 'Timeout', `Too large resource version: ${rv}, current: ${current}`, { causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }] });
    }
    if (match === 'Exact' && Number(rv) !== current) throw gone(`too old resource version: ${rv} (${current})`);
    let items = this.store.list(rt, namespace).filter(filter);
    const limit = numberParam(q, 'limit');
    const cont = q.get('continue');
    if (cont) {
      let start: string;
      try { start = (JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as { start: string }).start; } catch { throw badRequest('continue: Invalid value: invalid continue token'); }
      items = items.filter((o) => `${o.metadata.namespace ?? ''}/${o.metadata.name}` > start);
    }
    const metadata: Record<string, unknown> = { resourceVersion: String(current) };
    if (limit && items.length > limit) {
      const last = items[limit - 1]!;
      metadata.continue = Buffer.from(JSON.stringify({ start: `${last.metadata.namespace ?? ''}/${last.metadata.name}` })).toString('base64url');
      metadata.remainingItemCount = items.length - limit;
      items = items.slice(0, limit);
    }
    return { kind: rt.listKind, apiVersion: apiVersionOf(rt), metadata, items: items.map((o: KubeObject) => o) };
  }

  private watch(route: Route, q: URLSearchParams, res: ServerResponse): void {
    const filter = objectFilter(parseLabelSelector(q.get('labelSelector')), parseFieldSelector(q.get('fieldSelector'), route.rt));
    const rv = resourceVersionParam(q);
    let ended = false;
    let handle: WatchHandle | undefined;
    handle = serveWatch(this.store, res, {
      rt: route.rt, namespace: route.namespace, filter, resourceVersion: rv,
      allowBookmarks: flag(q, 'allowWatchBookmarks'), sendInitialEvents: flag(q, 'sendInitialEvents'),
      timeoutSeconds: numberParam(q, 'timeoutSeconds'), bookmarkIntervalMs: this.opts.bookmarkIntervalMs,
    }, () => { ended = true; if (handle) this.watches.delete(handle); });
    if (!ended) this.watches.add(handle);
  }
}
