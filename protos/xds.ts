// Envoy's delta xDS messages (envoy.service.discovery.v3), loaded from the .proto files that @grpc/grpc-js-xds ships,
// with typed codecs and the grpc-js definition of AggregatedDiscoveryService.DeltaAggregatedResources.
import type protobuf from 'protobufjs';
import { loadEnvoyProtos } from './envoy-protos.js';
import { makeCodec } from './codec.js';
import type { Struct } from './types.js';


export const xdsRoot: protobuf.Root = loadEnvoyProtos('envoy/service/discovery/v3/ads.proto', false);

export interface XdsNode {
  id: string;
  cluster: string;
  metadata?: Struct;
}

export interface XdsStatus {
  code: number;
  message: string;
}

/** google.protobuf.Any as protobufjs's bundled definition names it (snake_case `type_url`). */
export interface XdsAny {
  type_url: string;
  value: Uint8Array;
}

export interface XdsResource {
  name: string;
  version: string;
  aliases: string[];
  resource?: XdsAny;
}

export interface DeltaDiscoveryRequest {
  node?: XdsNode;
  typeUrl: string;
  resourceNamesSubscribe: string[];
  resourceNamesUnsubscribe: string[];
  initialResourceVersions: Record<string, string>;
  responseNonce: string;
  errorDetail?: XdsStatus;
}

export interface DeltaDiscoveryResponse {
  systemVersionInfo: string;
  resources: XdsResource[];
  typeUrl: string;
  removedResources: string[];
  nonce: string;
}

export const DeltaDiscoveryRequestCodec = makeCodec<DeltaDiscoveryRequest>('envoy.service.discovery.v3.DeltaDiscoveryRequest', xdsRoot);
export const DeltaDiscoveryResponseCodec = makeCodec<DeltaDiscoveryResponse>('envoy.service.discovery.v3.DeltaDiscoveryResponse', xdsRoot);

export const DELTA_ADS_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources';

/** grpc-js service definition (server: addService; client: makeGenericClientConstructor). */
export const AggregatedDiscoveryServiceDefinition = {
  deltaAggregatedResources: {
    path: DELTA_ADS_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: (m: Partial<DeltaDiscoveryRequest>) => Buffer.from(DeltaDiscoveryRequestCodec.encode(m as never)),
    requestDeserialize: (b: Buffer) => DeltaDiscoveryRequestCodec.decode(b),
    responseSerialize: (m: Partial<DeltaDiscoveryResponse>) => Buffer.from(DeltaDiscoveryResponseCodec.encode(m as never)),
    responseDeserialize: (b: Buffer) => DeltaDiscoveryResponseCodec.decode(b),
  },
} as const;
