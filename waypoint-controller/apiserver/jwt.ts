// Compact JWS (ES256) with node:crypto: the service-account signing key (generated, or kept in
// stateDir), its key id (as Kubernetes derives it), signing, verification and the public JWKS.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const JWT_ALG = 'ES256';
export const SIGNING_KEY_FILE = 'service-account-key.pem';

export const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** base64url(SHA-256(DER SubjectPublicKeyInfo)), as kube-apiserver computes `kid`. */
  readonly kid: string;
}

export function signingKeyFrom(privateKey: KeyObject): SigningKey {
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('service-account signing key must be an ECDSA P-256 key');
  }
  const publicKey = createPublicKey(privateKey);
  const kid = b64url(createHash('sha256').update(publicKey.export({ format: 'der', type: 'spki' })).digest());
  return { privateKey, publicKey, kid };
}

export function generateSigningKey(): SigningKey {
  return signingKeyFrom(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
}

/** The key in `<stateDir>/service-account-key.pem` (PKCS#8), created on first use. */
export function persistentSigningKey(stateDir: string): SigningKey {
  const path = join(stateDir, SIGNING_KEY_FILE);
  if (existsSync(path)) return signingKeyFrom(createPrivateKey(readFileSync(path, 'utf8')));
  const key = generateSigningKey();
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, key.privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  renameSync(tmp, path);
  return key;
}

export function signJwt(key: SigningKey, claims: object): string {
  const header = b64url(JSON.stringify({ alg: JWT_ALG, kid: key.kid }));
  const payload = b64url(JSON.stringify(claims));
  const sig = sign('sha256', Buffer.from(`${header}.${payload}`), { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${header}.${payload}.${b64url(sig)}`;
}

/** Parse without verifying (undefined when not a JWS compact serialisation with JSON parts). */
export function decodeJwt(token: string): { header: Record<string, unknown>; claims: Record<string, unknown> } | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as unknown;
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown;
    if (typeof header !== 'object' || header === null || typeof claims !== 'object' || claims === null) return undefined;
    return { header: header as Record<string, unknown>, claims: claims as Record<string, unknown> };
  } catch {
    return undefined;
  }
}

/** The claims of a token signed by `key`, or an error message. Time-based claims are not checked here. */
export function verifyJwt(key: SigningKey, token: string): { claims: Record<string, unknown> } | { error: string } {
  const decoded = decodeJwt(token);
  if (!decoded) return { error: 'malformed token' };
  if (decoded.header.alg !== JWT_ALG) return { error: `unexpected signing algorithm "${String(decoded.header.alg)}"` };
  if (decoded.header.kid !== undefined && decoded.header.kid !== key.kid) return { error: 'unknown key id' };
  const [h, p, s] = token.split('.') as [string, string, string];
  const sig = Buffer.from(s, 'base64url');
  const ok = sig.length === 64 && verify('sha256', Buffer.from(`${h}.${p}`), { key: key.publicKey, dsaEncoding: 'ieee-p1363' }, sig);
  return ok ? { claims: decoded.claims } : { error: 'error in cryptographic primitive' };
}

/** The public key as a JSON Web Key Set (served at /openid/v1/jwks). */
export function jwks(key: SigningKey): { keys: object[] } {
  const jwk = key.publicKey.export({ format: 'jwk' });
  return { keys: [{ use: 'sig', kty: jwk.kty, kid: key.kid, crv: jwk.crv, alg: JWT_ALG, x: jwk.x, y: jwk.y }] };
}
