// Envoy's delta xDS messages (envoy.service.discovery.v3), loaded from the .proto files that @grpc/grpc-js-xds ships,
// with typed codecs and the grpc-js definition of AggregatedDiscoveryService.DeltaAggregatedResources.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';
import { makeCodec } from './codec.js';
import type { Struct } from './types.js';

const require = createRequire(import.meta.url);
const XDS_DEPS = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const INCLUDES = [
  ...['envoy-api', 'googleapis', 'protoc-gen-validate', 'xds'].map((d) => join(XDS_DEPS, d)),
  dirname(require.resolve('protobufjs/package.json')), // google/protobuf/*.proto
];

function loadXdsRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    if (existsSync(target)) return target;
    for (const dir of INCLUDES) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return protobuf.util.path.resolve(origin, target);
  };
  root.loadSync('envoy/service/discovery/v3/ads.proto', { keepCase: false });
  root.resolveAll();
  return root;
}

export const xdsRoot: protobuf.Root = loadXdsRoot();

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
