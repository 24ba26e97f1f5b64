// Small builders shared by the waypoint's Envoy resources (proto3 JSON, see protos/envoy.ts).
import type { Json, JsonObject } from '../../../protos/envoy.js';
import { SECRET_DEFAULT, SECRET_ROOTCA } from './names.js';

export type { Json, JsonObject };

const T = 'type.googleapis.com/';

/** A typed extension config: `{ name, typed_config: { "@type", ...body } }`. */
export const typed = (name: string, type: string, body: JsonObject = {}): JsonObject => ({ name, typed_config: { '@type': T + type, ...body } });

export const ADS: JsonObject = { ads: {}, resource_api_version: 'V3' };

const sds = (name: string): JsonObject => ({ name, sds_config: ADS });

/**
 * HBONE's TLS: 1.3 only, ALPN h2, our certificate (SDS `default`) and the mesh root (SDS `ROOTCA`) with the
 * peer's URI SAN checked by `san` (a trust-domain prefix downstream, the exact identity upstream).
 */
export function hboneTlsContext(san: JsonObject): JsonObject {
  return {
    tls_params: { tls_minimum_protocol_version: 'TLSv1_3', tls_maximum_protocol_version: 'TLSv1_3' },
    alpn_protocols: ['h2'],
    tls_certificate_sds_secret_configs: [sds(SECRET_DEFAULT)],
    combined_validation_context: {
      default_validation_context: { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: san }] },
      validation_context_sds_secret_config: sds(SECRET_ROOTCA),
    },
  };
}

export const routerFilter = (): JsonObject => typed('envoy.filters.http.router', 'envoy.extensions.filters.http.router.v3.Router');

export const rawBuffer = (): JsonObject => typed('envoy.transport_sockets.raw_buffer', 'envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer');

/** The original_dst listener filter: on an internal listener it restores addresses from filter state / metadata. */
export const originalDstFilter = (): JsonObject =>
  typed('envoy.filters.listener.original_dst', 'envoy.extensions.filters.listener.original_dst.v3.OriginalDst');

export const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

export const httpProtocolOptions = (body: JsonObject): JsonObject => ({
  [HTTP_PROTOCOL_OPTIONS]: { '@type': T + HTTP_PROTOCOL_OPTIONS, ...body },
});

/** Milliseconds as a proto3 JSON duration. */
export const ms = (n: number): string => `${Math.floor(n / 1000)}.${String(n % 1000).padStart(3, '0')}s`;

export const stringValue = (value: string): JsonObject => ({ '@type': T + 'google.protobuf.StringValue', value });
