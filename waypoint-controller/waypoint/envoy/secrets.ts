// SDS secrets of a waypoint: its workload certificate (`default`) and the mesh root (`ROOTCA`), inline PEM.
import type { JsonObject } from './common.js';
import { SECRET_DEFAULT, SECRET_ROOTCA } from './names.js';

const SECRET = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

export interface WaypointCertificate {
  /** Leaf first (URI SAN spiffe://<td>/ns/<ns>/sa/<waypoint sa>), then intermediates. */
  certChainPem: string;
  privateKeyPem: string;
  /** The mesh root(s) peers' chains must lead to. */
  rootCertPem: string;
}

export function waypointSecrets(c: WaypointCertificate): JsonObject[] {
  return [
    {
      '@type': SECRET,
      name: SECRET_DEFAULT,
      tls_certificate: { certificate_chain: { inline_string: c.certChainPem }, private_key: { inline_string: c.privateKeyPem } },
    },
    { '@type': SECRET, name: SECRET_ROOTCA, validation_context: { trusted_ca: { inline_string: c.rootCertPem } } },
  ];
}
