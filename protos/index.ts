// Public surface of ambit's protobuf layer: message shapes (types.ts), the
// loaded protobufjs Root, and one typed codec per message we exchange.

import type { ServiceDefinition } from '@grpc/grpc-js';
import { makeCodec, protoRoot } from './codec.js';
import type {
  Address,
  Authorization,
  GatewayAddress,
  IstioCertificateRequest,
  IstioCertificateResponse,
  MessageInit,
  NetworkAddress,
  Service,
  Struct,
  Value,
  Workload,
  WorkloadRequest,
  WorkloadResponse,
  ZdsHello,
} from './types.js';

export * from './types.js';
export { makeCodec, protoRoot, PROTOS_DIR, PROTO_FILES, ProtoError } from './codec.js';
export type { Codec } from './codec.js';

// istio.workload (WDS)
export const AddressCodec = makeCodec<Address>('istio.workload.Address');
export const WorkloadCodec = makeCodec<Workload>('istio.workload.Workload');
export const ServiceCodec = makeCodec<Service>('istio.workload.Service');
export const GatewayAddressCodec = makeCodec<GatewayAddress>('istio.workload.GatewayAddress');
export const NetworkAddressCodec = makeCodec<NetworkAddress>('istio.workload.NetworkAddress');
// istio.security
export const AuthorizationCodec = makeCodec<Authorization>('istio.security.Authorization');
// istio.v1.auth (CA)
export const IstioCertificateRequestCodec = makeCodec<IstioCertificateRequest>(
  'istio.v1.auth.IstioCertificateRequest',
);
export const IstioCertificateResponseCodec = makeCodec<IstioCertificateResponse>(
  'istio.v1.auth.IstioCertificateResponse',
);
// istio.workload.zds
export const ZdsHelloCodec = makeCodec<ZdsHello>('istio.workload.zds.ZdsHello');
export const WorkloadRequestCodec = makeCodec<WorkloadRequest>('istio.workload.zds.WorkloadRequest');
export const WorkloadResponseCodec = makeCodec<WorkloadResponse>(
  'istio.workload.zds.WorkloadResponse',
);

/** xDS type URLs served/consumed by ztunnel. */
export const ADDRESS_TYPE_URL = AddressCodec.typeUrl;
export const AUTHORIZATION_TYPE_URL = AuthorizationCodec.typeUrl;

function toBuffer(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

const caService = protoRoot.lookupService('istio.v1.auth.IstioCertificateService');
const createCertificate = caService.methods['CreateCertificate'];
if (
  !createCertificate ||
  createCertificate.resolvedRequestType?.fullName !== `.${IstioCertificateRequestCodec.typeName}` ||
  createCertificate.resolvedResponseType?.fullName !== `.${IstioCertificateResponseCodec.typeName}`
) {
  throw new Error('ca.proto: IstioCertificateService.CreateCertificate does not match the codecs');
}

/**
 * grpc-js service definition for `istio.v1.auth.IstioCertificateService`, usable with
 * `server.addService(...)` and `makeGenericClientConstructor(...)`.
 */
export const IstioCertificateServiceDefinition = {
  CreateCertificate: {
    path: '/istio.v1.auth.IstioCertificateService/CreateCertificate',
    requestStream: false,
    responseStream: false,
    originalName: 'createCertificate',
    requestSerialize: (m: MessageInit<IstioCertificateRequest>): Buffer =>
      toBuffer(IstioCertificateRequestCodec.encode(m)),
    requestDeserialize: (b: Buffer): IstioCertificateRequest => IstioCertificateRequestCodec.decode(b),
    responseSerialize: (m: MessageInit<IstioCertificateResponse>): Buffer =>
      toBuffer(IstioCertificateResponseCodec.encode(m)),
    responseDeserialize: (b: Buffer): IstioCertificateResponse =>
      IstioCertificateResponseCodec.decode(b),
  },
} as const satisfies ServiceDefinition;

// ---------------------------------------------------------------- google.protobuf.Struct helpers

/** A JSON value as carried by google.protobuf.Value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

/** Converts a value to google.protobuf.Value (undefined becomes null). */
export function toValue(v: JsonValue | undefined): Value {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}

/** Converts a plain object to google.protobuf.Struct, e.g. CA request metadata. */
export function toStruct(obj: { [k: string]: JsonValue | undefined }): Struct {
  const fields: Record<string, Value> = {};
  for (const [k, v] of Object.entries(obj)) fields[k] = toValue(v);
  return { fields };
}

/** Converts google.protobuf.Value back to a plain value (unset kind becomes null). */
export function fromValue(v: Value): JsonValue {
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.numberValue !== undefined) return v.numberValue;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.listValue !== undefined) return v.listValue.values.map(fromValue);
  if (v.structValue !== undefined) return fromStruct(v.structValue);
  return null;
}

/** Converts google.protobuf.Struct back to a plain object. */
export function fromStruct(s: Struct): { [k: string]: JsonValue } {
  const out: { [k: string]: JsonValue } = {};
  for (const [k, v] of Object.entries(s.fields)) out[k] = fromValue(v);
  return out;
}
