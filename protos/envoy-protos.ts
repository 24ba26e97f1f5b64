// Loads Envoy's .proto files (and xds', googleapis', validate's) from the copies @grpc/grpc-js-xds ships, so that
// none of them live in this repository.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);
const XDS_DEPS = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const INCLUDES = [
  ...['envoy-api', 'googleapis', 'protoc-gen-validate', 'xds'].map((d) => join(XDS_DEPS, d)),
  dirname(require.resolve('protobufjs/package.json')), // google/protobuf/*.proto
];

/** A resolved root of `files` and their imports. `keepCase`: field names as in the .proto (snake_case). */
export function loadEnvoyProtos(files: string | string[], keepCase: boolean): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    if (existsSync(target)) return target;
    for (const dir of INCLUDES) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return protobuf.util.path.resolve(origin, target);
  };
  root.loadSync(files, { keepCase });
  root.resolveAll();
  return root;
}
