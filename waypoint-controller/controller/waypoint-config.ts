// Each waypoint's Envoy configuration, kept in its own xDS store: Kubernetes objects -> the waypoint model
// (waypoint/translate-model.ts) -> Envoy resources (waypoint/envoy/) plus its SDS secrets (a certificate for the
// waypoint's service account from our CA, renewed at half its lifetime). Rebuilt after a burst of changes
// (debounced); the stores' content versions make an unchanged waypoint a no-op, so only the waypoints a change
// concerns receive anything. Also collects the route and policy statuses the models claim.
import type { Logger } from 'pino';
import type { CertIssuer } from '../ca/issuer.js';
import type { AuthorizationPolicy } from '../translate/authorization.js';
import { waypointEnvoyResources, waypointSecrets, type WaypointCertificate } from '../waypoint/envoy/index.js';
import { buildWaypointModel, type PolicyClaim, type RouteClaim } from '../waypoint/translate-model.js';
import type { HTTPRoute } from '../waypoint/translate-types.js';
import { storeEnvoyResources, type WaypointStores } from '../xds/waypoints.js';
import type { Cached } from './cache.js';
import type { ControllerContext, Reconciler } from './reconciler.js';

const DEBOUNCE_MS = 50;
/** A steady stream of changes still gets a rebuild this often. */
const MAX_DELAY_MS = 500;
const CERT_TTL_SECONDS = 86_400;

export interface WaypointConfigsOptions {
  cache: Cached;
  stores: WaypointStores;
  ctx: ControllerContext;
  log: Logger;
  /** Told after each rebuild: every waypoint's route and policy claims (for status). */
  onClaims?: (routes: RouteClaim[], policies: PolicyClaim[]) => void;
}

/** The identity of a waypoint's pods: its ServiceAccount is named after the Gateway. */
export const waypointIdentity = (trustDomain: string, key: string): string => {
  const [ns, name] = key.split('/') as [string, string];
  return `spiffe://${trustDomain}/ns/${ns}/sa/${name}`;
};

export class WaypointConfigs {
  private reconciler?: Reconciler;
  private issuer?: CertIssuer;
  private timer?: NodeJS.Timeout;
  private firstPendingAt = 0;
  private readonly certs = new Map<string, { cert: WaypointCertificate; renewAt: number }>();
  private rebuilding?: Promise<void>;
  private again = false;
  private stopped = false;

  constructor(private readonly opts: WaypointConfigsOptions) {}

  start(reconciler: Reconciler, issuer: CertIssuer): Promise<void> {
    this.reconciler = reconciler;
    this.issuer = issuer;
    return this.rebuild();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Something changed that may concern a waypoint: rebuild after a quiet period. */
  schedule(): void {
    if (!this.reconciler || this.stopped) return;
    const now = Date.now();
    if (this.timer) clearTimeout(this.timer);
    else this.firstPendingAt = now;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.rebuild();
    }, Math.max(0, Math.min(DEBOUNCE_MS, this.firstPendingAt + MAX_DELAY_MS - now)));
  }

  /** Rebuilds every waypoint's store now (one rebuild at a time; a request meanwhile runs once more after it). */
  async rebuild(): Promise<void> {
    if (this.rebuilding) {
      this.again = true;
      return this.rebuilding;
    }
    this.rebuilding = (async () => {
      do {
        this.again = false;
        await this.rebuildOnce().catch((err: unknown) => this.opts.log.error({ err: String(err) }, 'waypoint configuration failed'));
      } while (this.again && !this.stopped);
    })().finally(() => (this.rebuilding = undefined));
    return this.rebuilding;
  }

  private async rebuildOnce(): Promise<void> {
    const { cache, stores, ctx } = this.opts;
    const reconciler = this.reconciler!;
    const services = [...cache.services.values()];
    const pods = [...cache.pods.values()];
    const httpRoutes = [...cache.httproutes.values()] as HTTPRoute[];
    const authorizationPolicies = [...cache.policies.values()] as AuthorizationPolicy[];
    const routes: RouteClaim[] = [];
    const policies: PolicyClaim[] = [];
    for (const key of reconciler.waypoints.keys()) {
      const [namespace, name] = key.split('/') as [string, string];
      const bound = [...reconciler.serviceBindings]
        .filter(([, b]) => b.kind === 'bound' && `${b.waypoint.namespace}/${b.waypoint.name}` === key)
        .map(([k]) => cache.services.get(k)!)
        .filter(Boolean);
      const result = buildWaypointModel({
        waypoint: { namespace, name }, trustDomain: ctx.trustDomain, domainSuffix: ctx.domainSuffix, rootNamespace: ctx.rootNamespace,
        bound, services, pods, httpRoutes, authorizationPolicies, namespaces: [...cache.namespaces.values()],
      });
      routes.push(...result.routes);
      policies.push(...result.policies);
      const envoy = waypointEnvoyResources(result.model);
      const secrets = waypointSecrets(await this.certificate(key));
      storeEnvoyResources(stores.get(key), { ...envoy, secrets });
    }
    for (const key of stores.keys()) {
      if (!reconciler.waypoints.has(key)) {
        stores.delete(key);
        this.certs.delete(key);
      }
    }
    this.opts.onClaims?.(routes, policies);
  }

  private async certificate(key: string): Promise<WaypointCertificate> {
    const have = this.certs.get(key);
    if (have && Date.now() < have.renewAt) return have.cert;
    const issued = await this.issuer!.issueKeyPair(waypointIdentity(this.opts.ctx.trustDomain, key), CERT_TTL_SECONDS);
    const cert = { certChainPem: issued.certChain.slice(0, -1).join(''), privateKeyPem: issued.privateKeyPem, rootCertPem: this.issuer!.rootPem };
    // Half of what is left of it (notBefore is backdated for clock skew, which must not count).
    const now = Date.now();
    const renewAt = now + (issued.notAfter.getTime() - now) / 2;
    this.certs.set(key, { cert, renewAt });
    // Renewal needs a rebuild even when nothing else changes.
    setTimeout(() => this.schedule(), Math.max(1000, renewAt - Date.now())).unref();
    return cert;
  }
}
