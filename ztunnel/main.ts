#!/usr/bin/env -S node --max-semi-space-size=1 --initial-old-space-size=64
// ztunnel entry point: configuration from the environment (see README), SIGTERM/SIGINT drain.
import { Ztunnel } from './app.js';
import { loadConfig } from './config/env.js';
import { missingNodeFlags, ZTUNNEL_NODE_FLAGS } from './node-flags.js';

const HELP = `ambit ztunnel: the per-node (or, in dedicated mode, per-workload) proxy of an ambient mesh.

Usage: node ${ZTUNNEL_NODE_FLAGS.join(' ')} dist/ztunnel/main.js [--help]
       (the flags keep bulk transfers from causing frequent full GCs; without them ztunnel warns at start)

Configured by environment variables (Istio ztunnel names):
  PROXY_MODE            shared (default: serve the pods the node agent hands over) | dedicated
  INPOD_UDS             shared mode: the node agent's ZDS socket (default /var/run/ztunnel/ztunnel.sock)
  PROXY_WORKLOAD_INFO   dedicated mode: <namespace>/<name>/<service-account> of the proxied workload
  ENABLE_ORIG_SRC       shared mode: connect to apps from the client's IP (default true)
  XDS_ADDRESS           control plane host:port (plaintext delta ADS, workload xDS); or:
  LOCAL_XDS_PATH        YAML file with workloads, services, policies (re-read on change). One of the two is required.
  XDS_ON_DEMAND=true    fetch addresses on a lookup miss (<network>/<ip>) instead of subscribing to all
  XDS_AUTH_TOKEN        file with a bearer token for xDS (default AUTH_TOKEN, else ./var/run/secrets/tokens/istio-token if present)
  INSTANCE_IP, POD_NAME, POD_NAMESPACE   this ztunnel's identity in the xDS node id and metadata
Certificates: the local CA when LOCAL_CA_CERT and LOCAL_CA_KEY are both set, else the remote CA (Istio's CreateCertificate):
  LOCAL_CA_CERT         root certificate PEM (created with LOCAL_CA_KEY when both are absent)
  LOCAL_CA_KEY          root key PEM (PKCS#8, ECDSA P-256)
  CA_ADDRESS            remote CA host:port over TLS (default the host:port of XDS_ADDRESS); http://host:port = plaintext (tests only)
  CA_ROOT_CA            PEM root(s) verifying the CA's TLS certificate and every issued chain
                        (default XDS_ROOT_CA, else ./var/run/secrets/istio/root-cert.pem)
  ALT_CA_HOSTNAME       DNS name to verify in the CA's certificate instead of the CA_ADDRESS host (e.g. istiod.istio-system.svc)
  AUTH_TOKEN            file with the bearer token for the CA, re-read on each request
                        (default XDS_AUTH_TOKEN, else ./var/run/secrets/tokens/istio-token if present)
  CA_HEADER_<NAME>      extra header <name> on CA requests
  TRUST_DOMAIN          default cluster.local
  CLUSTER_ID            default Kubernetes (also sent as the xDS clusterid header)
  NODE_NAME, NETWORK    this node's name and network
  UNSTABLE_ENABLE_SOCKS5=true   SOCKS5 on 127.0.0.1:15080
  TERMINATION_GRACE_PERIOD_SECONDS / CONNECTION_TERMINATION_DEADLINE   drain deadline
  WORKLOAD_CERT_TTL_SECONDS     requested leaf lifetime (default 86400), refreshed at half; backoff 0.5 s to 150 s on failure
  LOG_LEVEL             trace|debug|info|warn|error (default info)
  ZTUNNEL_WORKER_THREADS  threads serving traffic (default 1): the main thread plus N-1 proxy threads, each with its
                        own SO_REUSEPORT listeners in every pod, so the kernel spreads connections over them
Ports: 15001 outbound, 15006 inbound plaintext, 15008 HBONE, 15020 metrics, 15021 readiness, 127.0.0.1:15000 admin.
`;

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(HELP);
  process.exit(0);
}

let zt: Ztunnel;
try {
  zt = new Ztunnel(loadConfig());
} catch (e) {
  process.stderr.write(`ztunnel: ${(e as Error).message}\n`);
  process.exit(1);
}

const missing = missingNodeFlags(process.execArgv, process.env.NODE_OPTIONS);
if (missing.length > 0) zt.log.warn({ missing }, 'node was started without the flags ztunnel is tuned for: bulk transfers will cost more CPU (see --help)');

process.on('SIGTERM', () => void zt.stop('SIGTERM'));
process.on('SIGINT', () => void zt.stop('SIGINT'));
// However the drain was started (signal or POST /quitquitquit), exit when it is done.
void zt.stopped.then(() => process.exit(zt.failure ? 1 : 0));

zt.start().catch((e: Error) => {
  zt.log.fatal({ err: e.message }, 'ztunnel failed to start');
  process.stderr.write(`ztunnel: ${e.message}\n`);
  process.exit(1);
});
