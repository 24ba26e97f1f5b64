// TokenRequest / TokenReview and the default ServiceAccount of the embedded API server, with the real
// @kubernetes/client-node client.
import test from 'ava';
import { createPublicKey, verify, type JsonWebKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiException, AuthenticationV1Api, CoreV1Api, type AuthenticationV1TokenRequest, type V1TokenReviewStatus } from '@kubernetes/client-node';
import { decodeJwt, DEFAULT_ISSUER, start, type ApiServer, type ApiServerOptions, type ServiceAccountClaims } from '../waypoint-controller/apiserver/index.js';

const servers: ApiServer[] = [];
const dirs: string[] = [];

test.after.always(async () => {
  await Promise.all(servers.map((s) => s.close()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'ambit-tokens-'));
  dirs.push(d);
  return d;
}

interface Env {
  api: ApiServer;
  core: CoreV1Api;
  authn: AuthenticationV1Api;
  /** Move the server's token clock. */
  advance(seconds: number): void;
}

async function env(opts: ApiServerOptions = {}): Promise<Env> {
  let clock = Date.now();
  const api = await start({ now: () => clock, ...opts });
  servers.push(api);
  const kc = api.kubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: 'shop' } } });
  await core.createNode({ body: { metadata: { name: 'node1' } } });
  await core.createNamespacedServiceAccount({ namespace: 'shop', body: { metadata: { name: 'echo' } } });
  await core.createNamespacedPod({
    namespace: 'shop',
    body: { metadata: { name: 'echo-1' }, spec: { nodeName: 'node1', serviceAccountName: 'echo', containers: [{ name: 'app', image: 'app' }] } },
  });
  return { api, core, authn: kc.makeApiClient(AuthenticationV1Api), advance: (s) => { clock += s * 1000; } };
}

async function statusOf(p: Promise<unknown>): Promise<{ code: number; reason: string; message: string; kind: string }> {
  try {
    await p;
  } catch (e) {
    if (!(e instanceof ApiException)) throw e;
    return (typeof e.body === 'string' ? JSON.parse(e.body) : e.body) as { code: number; reason: string; message: string; kind: string };
  }
  throw new Error('expected the call to fail');
}

const tokenRequest = (audiences: string[], pod?: string, extra: Partial<AuthenticationV1TokenRequest['spec']> = {}): AuthenticationV1TokenRequest => ({
  apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest',
  spec: { audiences, ...(pod ? { boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod } } : {}), ...extra },
});

async function issue(e: Env, audiences = ['istio-ca'], pod: string | undefined = 'echo-1', sa = 'echo', extra: Partial<AuthenticationV1TokenRequest['spec']> = {}): Promise<string> {
  const tr = await e.core.createNamespacedServiceAccountToken({ name: sa, namespace: 'shop', body: tokenRequest(audiences, pod, extra) });
  return tr.status!.token!;
}

async function review(e: Env, token: string, audiences?: string[]): Promise<V1TokenReviewStatus> {
  const r = await e.authn.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, ...(audiences ? { audiences } : {}) } } });
  t0(r.kind === 'TokenReview');
  return r.status!;
}
function t0(ok: boolean): void { if (!ok) throw new Error('unexpected TokenReview response'); }

const claimsOf = (token: string): ServiceAccountClaims => decodeJwt(token)!.claims as unknown as ServiceAccountClaims;

// ---------------------------------------------------------------- default ServiceAccount, discovery

test('every namespace has a default ServiceAccount, recreated when deleted', async (t) => {
  const e = await env();
  for (const ns of ['default', 'kube-system', 'shop']) {
    const sa = await e.core.readNamespacedServiceAccount({ name: 'default', namespace: ns });
    t.truthy(sa.metadata?.uid, ns);
  }
  await e.core.createNamespace({ body: { metadata: { name: 'fresh' } } });
  const sa = await e.core.readNamespacedServiceAccount({ name: 'default', namespace: 'fresh' });
  t.is(sa.metadata?.namespace, 'fresh');
  await e.core.deleteNamespacedServiceAccount({ name: 'default', namespace: 'fresh' });
  const again = await e.core.readNamespacedServiceAccount({ name: 'default', namespace: 'fresh' });
  t.not(again.metadata?.uid, sa.metadata?.uid);
  await e.core.deleteNamespace({ name: 'fresh' });
  t.is((await statusOf(e.core.readNamespacedServiceAccount({ name: 'default', namespace: 'fresh' }))).code, 404);
  // A pod with no serviceAccountName runs as `default`, which can be bound.
  await e.core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name: 'plain' }, spec: { containers: [{ name: 'app', image: 'app' }] } } });
  const token = await issue(e, ['x'], 'plain', 'default');
  t.is(claimsOf(token).sub, 'system:serviceaccount:shop:default');
});

test('discovery lists serviceaccounts/token and authentication.k8s.io/v1 tokenreviews', async (t) => {
  const e = await env();
  const get = async (p: string): Promise<any> => (await fetch(`${e.api.url}${p}`)).json();
  const core = await get('/api/v1');
  const names = core.resources.map((r: { name: string }) => r.name);
  t.is(names.indexOf('serviceaccounts/token'), names.indexOf('serviceaccounts') + 1);
  t.like(core.resources.find((r: { name: string }) => r.name === 'serviceaccounts/token'), { group: 'authentication.k8s.io', version: 'v1', kind: 'TokenRequest', verbs: ['create'], namespaced: true });
  const groups = await get('/apis');
  t.true(groups.groups.some((g: { name: string }) => g.name === 'authentication.k8s.io'));
  t.like(await get('/apis/authentication.k8s.io'), { kind: 'APIGroup', preferredVersion: { groupVersion: 'authentication.k8s.io/v1' } });
  const authn = await get('/apis/authentication.k8s.io/v1');
  t.deepEqual(authn.resources, [{ name: 'tokenreviews', singularName: 'tokenreview', namespaced: false, kind: 'TokenReview', verbs: ['create'] }]);
  const oidc = await get('/.well-known/openid-configuration');
  t.is(oidc.issuer, DEFAULT_ISSUER);
  const jwks = await get('/openid/v1/jwks');
  t.is(jwks.keys[0].alg, 'ES256');
  // Only create is served.
  const r = await fetch(`${e.api.url}/apis/authentication.k8s.io/v1/tokenreviews`);
  t.is(r.status, 405);
  t.is((await fetch(`${e.api.url}/api/v1/namespaces/shop/serviceaccounts/echo/token`)).status, 405);
});

// ---------------------------------------------------------------- TokenRequest

test('TokenRequest returns a signed token bound to the pod and its node', async (t) => {
  const e = await env();
  const tr = await e.core.createNamespacedServiceAccountToken({ name: 'echo', namespace: 'shop', body: tokenRequest(['istio-ca', 'other'], 'echo-1', { expirationSeconds: 7200 }) });
  t.is(tr.kind, 'TokenRequest');
  t.deepEqual(tr.spec?.audiences, ['istio-ca', 'other']);
  const token = tr.status!.token!;
  const { header, claims } = decodeJwt(token)!;
  const c = claims as unknown as ServiceAccountClaims;
  const sa = await e.core.readNamespacedServiceAccount({ name: 'echo', namespace: 'shop' });
  const pod = await e.core.readNamespacedPod({ name: 'echo-1', namespace: 'shop' });
  const node = await e.core.readNode({ name: 'node1' });
  t.is(header.alg, 'ES256');
  t.is(c.iss, DEFAULT_ISSUER);
  t.deepEqual(c.aud, ['istio-ca', 'other']);
  t.is(c.sub, 'system:serviceaccount:shop:echo');
  t.is(c.exp - c.iat, 7200);
  t.is(c.nbf, c.iat);
  t.truthy(c.jti);
  t.deepEqual(c['kubernetes.io'], {
    namespace: 'shop', serviceaccount: { name: 'echo', uid: sa.metadata!.uid! },
    pod: { name: 'echo-1', uid: pod.metadata!.uid! }, node: { name: 'node1', uid: node.metadata!.uid! },
  });
  t.is(new Date(tr.status!.expirationTimestamp!).getTime(), c.exp * 1000);

  // The signature checks out against the published JWKS with plain node:crypto.
  const jwks = (await (await fetch(`${e.api.url}/openid/v1/jwks`)).json()) as { keys: Array<Record<string, string>> };
  t.is(jwks.keys[0]!.kid, String(header.kid));
  const key = createPublicKey({ key: jwks.keys[0]! as JsonWebKey, format: 'jwk' });
  const [h, p, s] = token.split('.') as [string, string, string];
  t.true(verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url')));

  // Default audience is the issuer, default lifetime one hour; an unbound token has no pod.
  const plain = await e.core.createNamespacedServiceAccountToken({ name: 'echo', namespace: 'shop', body: { spec: { audiences: [] } } });
  const pc = claimsOf(plain.status!.token!);
  t.deepEqual(pc.aud, [DEFAULT_ISSUER]);
  t.is(pc.exp - pc.iat, 3600);
  t.deepEqual(pc['kubernetes.io'], { namespace: 'shop', serviceaccount: { name: 'echo', uid: sa.metadata!.uid! } });
});

test('a pod on a node without a Node object gets the node name only', async (t) => {
  const e = await env();
  await e.core.createNamespacedPod({
    namespace: 'shop',
    body: { metadata: { name: 'echo-2' }, spec: { nodeName: 'ghost-node', serviceAccountName: 'echo', containers: [{ name: 'app', image: 'app' }] } },
  });
  const token = await issue(e, ['istio-ca'], 'echo-2');
  t.deepEqual(claimsOf(token)['kubernetes.io'].node, { name: 'ghost-node' });
  const st = await review(e, token, ['istio-ca']);
  t.true(st.authenticated);
  t.deepEqual(st.user?.extra?.['authentication.kubernetes.io/node-name'], ['ghost-node']);
  t.is(st.user?.extra?.['authentication.kubernetes.io/node-uid'], undefined);
});

test('TokenRequest refusals: missing SA, missing pod, pod of another SA, stale uid, short lifetime, bad kind', async (t) => {
  const e = await env();
  const missing = await statusOf(issue(e, ['a'], undefined, 'nobody'));
  t.like(missing, { kind: 'Status', code: 404, reason: 'NotFound', message: 'serviceaccounts "nobody" not found' });
  t.like(await statusOf(issue(e, ['a'], 'no-such-pod')), { code: 404, reason: 'NotFound', message: 'pods "no-such-pod" not found' });
  await e.core.createNamespacedServiceAccount({ namespace: 'shop', body: { metadata: { name: 'sleep' } } });
  const mismatch = await statusOf(issue(e, ['a'], 'echo-1', 'sleep'));
  t.is(mismatch.code, 400);
  t.is(mismatch.reason, 'BadRequest');
  t.regex(mismatch.message, /cannot bind token for serviceaccount "sleep" to pod running with different serviceaccount name/);
  const stale = await statusOf(e.core.createNamespacedServiceAccountToken({
    name: 'echo', namespace: 'shop', body: { spec: { audiences: ['a'], boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'echo-1', uid: 'not-the-uid' } } },
  }));
  t.like(stale, { code: 409, reason: 'Conflict' });
  const short = await statusOf(issue(e, ['a'], 'echo-1', 'echo', { expirationSeconds: 60 }));
  t.like(short, { code: 422, reason: 'Invalid' });
  t.regex(short.message, /may not specify a duration less than 10 minutes/);
  const kind = await statusOf(e.core.createNamespacedServiceAccountToken({
    name: 'echo', namespace: 'shop', body: { spec: { audiences: ['a'], boundObjectRef: { kind: 'Deployment', apiVersion: 'apps/v1', name: 'x' } } },
  }));
  t.like(kind, { code: 400, reason: 'BadRequest', message: 'cannot bind token to object of type apps/v1, Kind=Deployment' });
  t.like(await statusOf(e.core.createNamespacedServiceAccountToken({ name: 'echo', namespace: 'nowhere', body: { spec: { audiences: ['a'] } } })), { code: 404 });
});

// ---------------------------------------------------------------- TokenReview

test('TokenReview authenticates a bound token for its audience', async (t) => {
  const e = await env();
  const token = await issue(e, ['istio-ca', 'other']);
  const sa = await e.core.readNamespacedServiceAccount({ name: 'echo', namespace: 'shop' });
  const pod = await e.core.readNamespacedPod({ name: 'echo-1', namespace: 'shop' });
  const node = await e.core.readNode({ name: 'node1' });
  const st = await review(e, token, ['istio-ca', 'unrelated']);
  t.true(st.authenticated);
  t.falsy(st.error);
  t.deepEqual(st.audiences, ['istio-ca']);
  t.is(st.user?.username, 'system:serviceaccount:shop:echo');
  t.is(st.user?.uid, sa.metadata!.uid);
  t.deepEqual(st.user?.groups, ['system:serviceaccounts', 'system:serviceaccounts:shop', 'system:authenticated']);
  t.like(st.user?.extra, {
    'authentication.kubernetes.io/pod-name': ['echo-1'],
    'authentication.kubernetes.io/pod-uid': [pod.metadata!.uid!],
    'authentication.kubernetes.io/node-name': ['node1'],
    'authentication.kubernetes.io/node-uid': [node.metadata!.uid!],
    'authentication.kubernetes.io/credential-id': [`JTI=${claimsOf(token).jti}`],
  });
  // Without audiences the API server's own (the issuer) apply.
  t.false((await review(e, token)).authenticated);
  t.true((await review(e, await issue(e, []))).authenticated);
});

test('TokenReview refuses the wrong audience', async (t) => {
  const e = await env();
  const st = await review(e, await issue(e, ['istio-ca']), ['someone-else']);
  t.false(st.authenticated);
  t.is(st.error, '[invalid bearer token, token audiences ["istio-ca"] is invalid for the target audiences ["someone-else"]]');
  t.is(st.user?.username, undefined);
});

test('TokenReview refuses tampered tokens and tokens of another signer', async (t) => {
  const e = await env();
  const token = await issue(e);
  const [h, p, s] = token.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
  claims.sub = 'system:serviceaccount:shop:admin';
  claims['kubernetes.io'].serviceaccount.name = 'admin';
  const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
  const st = await review(e, forged, ['istio-ca']);
  t.false(st.authenticated);
  t.regex(st.error ?? '', /invalid bearer token/);
  // A flipped signature byte, garbage, and a token from another server's key.
  const sig = Buffer.from(s, 'base64url');
  sig[5] ^= 1;
  t.false((await review(e, `${h}.${p}.${sig.toString('base64url')}`, ['istio-ca'])).authenticated);
  t.false((await review(e, 'not-a-jwt', ['istio-ca'])).authenticated);
  const other = await env();
  t.false((await review(e, await issue(other), ['istio-ca'])).authenticated);
  // An empty token is a bad request.
  t.like(await statusOf(e.authn.createTokenReview({ body: { spec: { token: '' } } })), { code: 400 });
});

test('TokenReview refuses expired tokens (server clock, 60 s leeway)', async (t) => {
  const e = await env();
  const token = await issue(e, ['istio-ca'], 'echo-1', 'echo', { expirationSeconds: 600 });
  e.advance(600 + 30);
  t.true((await review(e, token, ['istio-ca'])).authenticated);
  e.advance(60);
  const st = await review(e, token, ['istio-ca']);
  t.false(st.authenticated);
  t.is(st.error, '[invalid bearer token, service account token has expired]');
});

test('short lifetimes with minTokenExpirationSeconds, and the max clamp', async (t) => {
  const e = await env({ minTokenExpirationSeconds: 1, maxTokenExpirationSeconds: 1800 });
  const tr = await e.core.createNamespacedServiceAccountToken({ name: 'echo', namespace: 'shop', body: tokenRequest(['a'], 'echo-1', { expirationSeconds: 5 }) });
  const c = claimsOf(tr.status!.token!);
  t.is(c.exp - c.iat, 5);
  const long = claimsOf(await issue(e, ['a'], 'echo-1', 'echo', { expirationSeconds: 86400 }));
  t.is(long.exp - long.iat, 1800);
  e.advance(66);
  t.false((await review(e, tr.status!.token!, ['a'])).authenticated);
});

test('TokenReview refuses a token whose pod or service account is gone or replaced', async (t) => {
  const e = await env();
  const token = await issue(e);
  t.true((await review(e, token, ['istio-ca'])).authenticated);
  await e.core.deleteNamespacedPod({ name: 'echo-1', namespace: 'shop' });
  const gone = await review(e, token, ['istio-ca']);
  t.false(gone.authenticated);
  t.is(gone.error, '[invalid bearer token, service account token has been invalidated]');
  // Same name, new uid.
  await e.core.createNamespacedPod({
    namespace: 'shop',
    body: { metadata: { name: 'echo-1' }, spec: { nodeName: 'node1', serviceAccountName: 'echo', containers: [{ name: 'app', image: 'app' }] } },
  });
  const replaced = await review(e, token, ['istio-ca']);
  t.false(replaced.authenticated);
  t.regex(replaced.error ?? '', /pod UID \(.+\) does not match claim/);
  // A fresh token for the new pod works until the service account is replaced.
  const fresh = await issue(e);
  t.true((await review(e, fresh, ['istio-ca'])).authenticated);
  await e.core.deleteNamespacedServiceAccount({ name: 'echo', namespace: 'shop' });
  t.false((await review(e, fresh, ['istio-ca'])).authenticated);
  await e.core.createNamespacedServiceAccount({ namespace: 'shop', body: { metadata: { name: 'echo' } } });
  const sa = await review(e, fresh, ['istio-ca']);
  t.false(sa.authenticated);
  t.regex(sa.error ?? '', /service account UID \(.+\) does not match claim/);
});

// ---------------------------------------------------------------- from code

test('mintToken / writeToken / reviewToken, and the signing key survives a restart with stateDir', async (t) => {
  const dir = tmp();
  const api = await start({ stateDir: dir });
  servers.push(api);
  const core = api.kubeConfig().makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: 'shop' } } });
  await core.createNamespacedServiceAccount({ namespace: 'shop', body: { metadata: { name: 'echo' } } });
  await core.createNamespacedPod({ namespace: 'shop', body: { metadata: { name: 'echo-1' }, spec: { nodeName: 'node1', serviceAccountName: 'echo', containers: [{ name: 'a', image: 'a' }] } } });
  const path = join(dir, 'tokens', 'echo-1', 'istio-token');
  const minted = api.writeToken(path, { namespace: 'shop', serviceAccount: 'echo', audiences: ['istio-ca'], pod: 'echo-1' });
  t.is(readFileSync(path, 'utf8'), minted.token);
  t.is(statSync(path).mode & 0o777, 0o600);
  t.deepEqual(minted.claims['kubernetes.io'].pod?.name, 'echo-1');
  t.true(api.reviewToken(minted.token, ['istio-ca']).authenticated);
  // The `default` SA of a namespace created from code is usable at once.
  api.ops.create(api.registry.forKind('v1', 'Namespace')!, undefined, { metadata: { name: 'coded' } });
  t.is(api.mintToken({ namespace: 'coded', serviceAccount: 'default' }).claims.sub, 'system:serviceaccount:coded:default');
  t.throws(() => api.mintToken({ namespace: 'shop', serviceAccount: 'nobody' }), { message: 'serviceaccounts "nobody" not found' });
  await api.close();

  const again = await start({ stateDir: dir });
  servers.push(again);
  t.true(again.reviewToken(minted.token, ['istio-ca']).authenticated);
});
