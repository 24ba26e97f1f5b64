// Runtime codecs for protos/*.proto, built on protobufjs reflection.
// The .proto files are loaded once, synchronously, when this module loads.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import type { MessageInit } from './types.js';

/** Our .proto files, in load order (imports of each other resolve relative to the importer). */
export const PROTO_FILES = ['workload.proto', 'authorization.proto', 'ca.proto', 'zds.proto'] as const;

/** Thrown by `Codec.decode` for bytes that are not a valid encoding, and by `encode` for unusable input. */
export class ProtoError extends Error {
  constructor(
    readonly typeName: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${typeName}: ${message}`, options);
    this.name = 'ProtoError';
  }
}

function findProtosDir(): string {
  const candidates: (string | URL | undefined)[] = [
    process.env.AMBIT_PROTOS_DIR, // explicit override, e.g. in a container image
    new URL('../../protos/', import.meta.url), // compiled: dist/protos/codec.js -> protos/
    new URL('./', import.meta.url), // run from source: protos/codec.ts
    new URL('../protos/', import.meta.url), // dist/codec.js next to a protos/ copy
  ];
  for (const c of candidates) {
    if (!c) continue;
    const dir = c instanceof URL ? fileURLToPath(c) : c;
    if (existsSync(join(dir, 'workload.proto'))) return dir;
  }
  throw new Error(
    `ambit protos: cannot find workload.proto near ${import.meta.url}; set AMBIT_PROTOS_DIR`,
  );
}

/** Absolute directory that holds our .proto files (use as include path for protoc or proto-loader). */
export const PROTOS_DIR: string = findProtosDir();

function loadRoot(dir: string): protobuf.Root {
  const root = new protobuf.Root();
  // google/protobuf/*.proto come from protobufjs's bundled copies; our own
  // files import each other by bare name, which resolves next to the importer.
  root.loadSync(
    PROTO_FILES.map((f) => join(dir, f)),
    { keepCase: false },
  );
  root.resolveAll();
  return root;
}

/** All our messages and services (plus the google.protobuf types they use). */
export const protoRoot: protobuf.Root = loadRoot(PROTOS_DIR);

const TO_OBJECT: protobuf.IConversionOptions = {
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
};

// protobufjs leaves unset sub-messages as `null` when defaults are on, and
// hands out bytes as views into the input buffer. Normalizing makes unset
// sub-messages absent and copies bytes, so a decoded message never pins the
// (possibly large) buffer it came from.
type Normalizer = (obj: Record<string, unknown>) => void;

const normalizers = new Map<protobuf.Type, Normalizer>();

function normalizerFor(type: protobuf.Type): Normalizer {
  const cached = normalizers.get(type);
  if (cached) return cached;
  const steps: Normalizer[] = [];
  // Register before building so recursive types (Struct <-> Value) terminate.
  const run: Normalizer = (obj) => {
    for (let i = 0; i < steps.length; i++) steps[i]!(obj);
  };
  normalizers.set(type, run);

  for (const field of type.fieldsArray) {
    field.resolve();
    const name = field.name;
    if (field.resolvedType instanceof protobuf.Type) {
      const child = normalizerFor(field.resolvedType);
      if (field.map) {
        steps.push((obj) => {
          const m = obj[name] as Record<string, Record<string, unknown>> | undefined;
          if (m) for (const k of Object.keys(m)) child(m[k]!);
        });
      } else if (field.repeated) {
        steps.push((obj) => {
          const a = obj[name] as Record<string, unknown>[] | undefined;
          if (a) for (let i = 0; i < a.length; i++) child(a[i]!);
        });
      } else {
        steps.push((obj) => {
          const v = obj[name];
          if (v === null || v === undefined) delete obj[name];
          else child(v as Record<string, unknown>);
        });
      }
    } else if (field.type === 'bytes') {
      if (field.map) {
        steps.push((obj) => {
          const m = obj[name] as Record<string, Uint8Array> | undefined;
          if (m) for (const k of Object.keys(m)) m[k] = new Uint8Array(m[k]!);
        });
      } else if (field.repeated) {
        steps.push((obj) => {
          const a = obj[name] as Uint8Array[] | undefined;
          if (a) for (let i = 0; i < a.length; i++) a[i] = new Uint8Array(a[i]!);
        });
      } else {
        steps.push((obj) => {
          const v = obj[name] as Uint8Array | undefined;
          if (v) obj[name] = new Uint8Array(v);
        });
      }
    }
  }
  return run;
}

/** Typed encoder/decoder for one message type. */
export interface Codec<T> {
  /** Fully qualified name, e.g. "istio.workload.Address". */
  readonly typeName: string;
  /** xDS / Any type URL, e.g. "type.googleapis.com/istio.workload.Address". */
  readonly typeUrl: string;
  /** The protobufjs reflection type, for code that needs it (e.g. Any packing). */
  readonly type: protobuf.Type;
  /** Serializes a (possibly partial) message. Throws ProtoError on unusable input. */
  encode(msg: MessageInit<T>): Uint8Array;
  /** Parses bytes, filling defaults. Throws ProtoError on malformed bytes. */
  decode(bytes: Uint8Array): T;
  /** Shorthand for decode(encode(msg)): a complete message with defaults filled in. */
  create(msg?: MessageInit<T>): T;
}

/**
 * Builds a codec for any message type loaded in `protoRoot`. The caller
 * vouches that `T` describes that message (see types.ts).
 */
export function makeCodec<T>(typeName: string, root: protobuf.Root = protoRoot): Codec<T> {
  const type = root.lookupType(typeName);
  const normalize = normalizerFor(type);
  const codec: Codec<T> = {
    typeName,
    typeUrl: `type.googleapis.com/${typeName}`,
    type,
    encode(msg: MessageInit<T>): Uint8Array {
      let m: protobuf.Message;
      try {
        m = type.fromObject(msg as { [k: string]: unknown });
      } catch (err) {
        throw new ProtoError(typeName, `cannot encode: ${(err as Error).message}`, { cause: err });
      }
      return type.encode(m).finish();
    },
    decode(bytes: Uint8Array): T {
      let obj: Record<string, unknown>;
      try {
        obj = type.toObject(type.decode(bytes), TO_OBJECT);
      } catch (err) {
        throw new ProtoError(
          typeName,
          `malformed message (${bytes.length} bytes): ${(err as Error).message}`,
          { cause: err },
        );
      }
      normalize(obj);
      return obj as T;
    },
    create(msg?: MessageInit<T>): T {
      return codec.decode(codec.encode(msg ?? ({} as MessageInit<T>)));
    },
  };
  return Object.freeze(codec);
}
