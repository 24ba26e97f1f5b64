// Envoy's resource protos (listeners, clusters, endpoints, routes, secrets and the extensions a waypoint uses),
// loaded with protobufjs from the .proto files that @grpc/grpc-js-xds ships (never copied here), and an encoder
// from Envoy's proto3 JSON (the snake_case form Envoy's YAML, /config_dump and docs use, `"@type"` in Any,
// durations as "5s", wrappers as plain values, Struct as plain objects) to bytes.
//
// Why proto3 JSON: the waypoint translator writes resources in exactly the form Envoy itself reads and prints, so the
// same object can be encoded for xDS, dropped into a static bootstrap for `envoy --mode validate`, and compared
// with /config_dump. The encoder is strict (unknown field, bad enum, wrong shape -> EnvoyJsonError with the path),
// which catches translator typos before Envoy does.
import protobuf from 'protobufjs';
import { loadEnvoyProtos } from './envoy-protos.js';


/** The files whose messages (and their imports) we encode. Extensions used only as empty configs need none. */
const ENVOY_PROTO_FILES = [
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/config/grpc_credential/v3/file_based_metadata.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  'envoy/extensions/transport_sockets/internal_upstream/v3/internal_upstream.proto',
  'envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto',
  'envoy/extensions/bootstrap/internal_listener/v3/internal_listener.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/filters/network/rbac/v3/rbac.proto',
  'envoy/extensions/filters/network/direct_response/v3/config.proto',
  'envoy/extensions/filters/http/rbac/v3/rbac.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/set_filter_state/v3/set_filter_state.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto',
  'envoy/extensions/matching/common_inputs/network/v3/network_inputs.proto',
  'xds/type/matcher/v3/ip.proto',
  'xds/type/matcher/v3/matcher.proto',
  'google/protobuf/wrappers.proto',
];


/** keepCase: field names stay snake_case, as in Envoy's JSON. */
export const envoyRoot: protobuf.Root = loadEnvoyProtos(ENVOY_PROTO_FILES, true);

const TYPE_PREFIX = 'type.googleapis.com/';
export const LISTENER_TYPE_URL = `${TYPE_PREFIX}envoy.config.listener.v3.Listener`;
export const CLUSTER_TYPE_URL = `${TYPE_PREFIX}envoy.config.cluster.v3.Cluster`;
export const ENDPOINT_TYPE_URL = `${TYPE_PREFIX}envoy.config.endpoint.v3.ClusterLoadAssignment`;
export const ROUTE_TYPE_URL = `${TYPE_PREFIX}envoy.config.route.v3.RouteConfiguration`;
export const SECRET_TYPE_URL = `${TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.Secret`;
/** The types a waypoint Envoy is served over ADS. */
export const ENVOY_TYPE_URLS: readonly string[] = [LISTENER_TYPE_URL, CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, ROUTE_TYPE_URL, SECRET_TYPE_URL];

/** Envoy proto3 JSON: what JSON.parse gives. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

export class EnvoyJsonError extends Error {
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'EnvoyJsonError';
  }
}

const WRAPPERS = new Set(
  ['Double', 'Float', 'Int64', 'UInt64', 'Int32', 'UInt32', 'Bool', 'String', 'Bytes'].map((w) => `.google.protobuf.${w}Value`),
);

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `"1.5s"` -> {seconds, nanos}. */
function duration(v: Json, path: string): { seconds: number; nanos: number } {
  const m = typeof v === 'string' ? /^(-?)(\d+)(?:\.(\d{1,9}))?s$/.exec(v) : null;
  if (!m) throw new EnvoyJsonError(path, `not a duration: ${JSON.stringify(v)}`);
  const sign = m[1] ? -1 : 1;
  return { seconds: sign * Number(m[2]), nanos: sign * Number((m[3] ?? '').padEnd(9, '0')) };
}

// protobufjs defines google.protobuf.Value itself, with camelCase field names whatever keepCase says.
function value(v: Json): Record<string, unknown> {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(value) } };
  return { structValue: struct(v) };
}

function struct(v: JsonObject): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) fields[k] = value(x);
  return { fields };
}

/** Looks up the message type an Any's `@type` names. */
export function lookupEnvoyType(typeUrl: string): protobuf.Type | undefined {
  const name = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
  try {
    return envoyRoot.lookupType(name);
  } catch {
    return undefined;
  }
}

function any(v: Json, path: string): Record<string, unknown> {
  if (!isObject(v) || typeof v['@type'] !== 'string') throw new EnvoyJsonError(path, 'Any needs "@type"');
  const typeUrl = v['@type'];
  const { '@type': _, ...rest } = v;
  const type = lookupEnvoyType(typeUrl);
  if (!type) {
    // An extension whose .proto is not shipped (e.g. the original_dst listener filter): only its empty
    // configuration can be sent, which is what such extensions take.
    if (Object.keys(rest).length > 0) throw new EnvoyJsonError(path, `unknown type ${typeUrl} with fields`);
    return { type_url: typeUrl, value: new Uint8Array() };
  }
  // Well-known types inside Any carry their JSON form in "value".
  const inner = type.fullName.startsWith('.google.protobuf.') && 'value' in rest && Object.keys(rest).length === 1 ? rest.value! : rest;
  return { type_url: typeUrl, value: encodeType(type, inner, `${path}<${type.name}>`) };
}

function message(type: protobuf.Type, v: Json, path: string): Record<string, unknown> {
  const full = type.fullName;
  if (full === '.google.protobuf.Any') return any(v, path);
  if (full === '.google.protobuf.Duration') return duration(v, path);
  if (WRAPPERS.has(full)) return { value: v };
  if (full === '.google.protobuf.Struct') {
    if (!isObject(v)) throw new EnvoyJsonError(path, 'Struct must be an object');
    return struct(v);
  }
  if (full === '.google.protobuf.Value') return value(v);
  if (full === '.google.protobuf.ListValue') {
    if (!Array.isArray(v)) throw new EnvoyJsonError(path, 'ListValue must be an array');
    return { values: v.map(value) };
  }
  if (!isObject(v)) throw new EnvoyJsonError(path, `${type.name} must be an object, got ${JSON.stringify(v)}`);
  const out: Record<string, unknown> = {};
  const oneofsSet = new Map<string, string>();
  for (const [key, x] of Object.entries(v)) {
    const field = type.fields[key] ?? type.fieldsArray.find((f) => jsonName(f.name) === key);
    const fpath = `${path}.${key}`;
    if (!field) throw new EnvoyJsonError(fpath, `unknown field of ${type.fullName.slice(1)}`);
    if (field.partOf) {
      const other = oneofsSet.get(field.partOf.name);
      if (other) throw new EnvoyJsonError(fpath, `oneof ${field.partOf.name} already set by ${other}`);
      oneofsSet.set(field.partOf.name, key);
    }
    out[field.name] = fieldValue(field, x, fpath);
  }
  return out;
}

const jsonName = (snake: string) => snake.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

function single(field: protobuf.Field, x: Json, path: string): unknown {
  const t = field.resolvedType;
  if (t instanceof protobuf.Type) return message(t, x, path);
  if (t instanceof protobuf.Enum) {
    if (typeof x === 'string' ? !(x in t.values) : !Number.isInteger(x)) throw new EnvoyJsonError(path, `bad ${t.name} value ${JSON.stringify(x)}`);
    return x;
  }
  if (field.type === 'bool' ? typeof x !== 'boolean' : field.type === 'string' ? typeof x !== 'string' : false) {
    throw new EnvoyJsonError(path, `expected ${field.type}, got ${JSON.stringify(x)}`);
  }
  return x;
}

function fieldValue(field: protobuf.Field, x: Json, path: string): unknown {
  if (field.map) {
    if (!isObject(x)) throw new EnvoyJsonError(path, 'map must be an object');
    const out: Record<string, unknown> = {};
    for (const [k, e] of Object.entries(x)) out[k] = single(field, e, `${path}[${JSON.stringify(k)}]`);
    return out;
  }
  if (field.repeated) {
    if (!Array.isArray(x)) throw new EnvoyJsonError(path, 'repeated field must be an array');
    return x.map((e, i) => single(field, e, `${path}[${i}]`));
  }
  return single(field, x, path);
}

function encodeType(type: protobuf.Type, json: Json, path: string): Uint8Array {
  const plain = message(type, json, path);
  return type.encode(type.fromObject(plain)).finish();
}

/** Encodes Envoy proto3 JSON of message `typeName` (e.g. `envoy.config.listener.v3.Listener`). */
export function encodeEnvoy(typeName: string, json: Json): Uint8Array {
  return encodeType(envoyRoot.lookupType(typeName), json, typeName);
}

/** Encodes a resource written with its `"@type"` (as in /config_dump); returns the type URL and the bytes. */
export function encodeEnvoyResource(json: JsonObject): { typeUrl: string; body: Uint8Array } {
  const typeUrl = json['@type'];
  if (typeof typeUrl !== 'string') throw new EnvoyJsonError('resource', 'needs "@type"');
  const type = lookupEnvoyType(typeUrl);
  if (!type) throw new EnvoyJsonError('resource', `unknown type ${typeUrl}`);
  const { '@type': _, ...rest } = json;
  return { typeUrl, body: encodeType(type, rest, type.name) };
}

/** Decodes bytes of an Envoy message to protobufjs's plain object (snake_case; for tests and debugging). */
export function decodeEnvoy(typeName: string, body: Uint8Array): Record<string, unknown> {
  const type = envoyRoot.lookupType(typeName);
  return type.toObject(type.decode(body), { longs: Number, enums: String, arrays: true });
}
