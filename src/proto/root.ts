import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

/**
 * The one protobufjs Root holding every Envoy proto Flowgate uses (listed in protos/envoy-protos.txt, loaded
 * from the installed @grpc/grpc-js-xds package's deps/ folder) and Flowgate's own protos (protos/). Loaded
 * once per process, on first use; field names keep their proto (snake_case) spelling, as in Envoy's YAML.
 */

const require = createRequire(import.meta.url);

/** The repository root: the folder holding protos/ (works from src/ under tsx and from dist/src/). */
function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'protos', 'envoy-protos.txt'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('cannot find protos/envoy-protos.txt above ' + fileURLToPath(import.meta.url));
}

/** Include directories, searched in order: Envoy's API, xDS/udpa, googleapis, PGV, Flowgate's own. */
export function protoIncludeDirs(): string[] {
  const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
  return [
    join(deps, 'envoy-api'),
    join(deps, 'xds'),
    join(deps, 'googleapis'),
    join(deps, 'protoc-gen-validate'),
    join(projectRoot(), 'protos'),
  ];
}

/** The .proto files loaded: the Envoy list plus Flowgate's own. */
export function protoFiles(): string[] {
  const listed = readFileSync(join(projectRoot(), 'protos', 'envoy-protos.txt'), 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  return [...listed, 'flowgate/v1/filter_policy.proto'];
}

let commonAdded = false;
function addWellKnownProtos(): void {
  if (commonAdded) return;
  commonAdded = true;
  // protobufjs bundles any/duration/struct/...; descriptor.proto (needed by the validation annotations)
  // ships as JSON beside it and has to be registered by hand.
  const descriptor = require('protobufjs/google/protobuf/descriptor.json') as {
    nested: { google: { nested: { protobuf: { nested: protobuf.INamespace['nested'] } } } };
  };
  protobuf.common('descriptor', descriptor.nested.google.nested.protobuf.nested ?? {});
}

let root: protobuf.Root | undefined;

/** The shared Root, loading every proto on first call (about a second). */
export function protoRoot(): protobuf.Root {
  if (root) return root;
  addWellKnownProtos();
  const includeDirs = protoIncludeDirs();
  const loaded = new protobuf.Root();
  loaded.resolvePath = (origin: string, target: string): string | null => {
    if (target.startsWith('google/protobuf/') && target.slice('google/protobuf/'.length).replace('.proto', '') in protobuf.common) {
      return target;
    }
    for (const dir of includeDirs) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    const relative = resolve(dirname(origin), target);
    return existsSync(relative) ? relative : target;
  };
  loaded.loadSync(protoFiles(), { keepCase: true });
  loaded.resolveAll();
  root = loaded;
  return root;
}

const typeCache = new Map<string, protobuf.Type>();

/** The message type for a fully qualified name ("envoy.config.cluster.v3.Cluster") or a type URL. */
export function messageType(nameOrTypeUrl: string): protobuf.Type {
  const name = nameOrTypeUrl.slice(nameOrTypeUrl.lastIndexOf('/') + 1);
  let type = typeCache.get(name);
  if (!type) {
    type = protoRoot().lookupType(name);
    typeCache.set(name, type);
  }
  return type;
}

/** The number of a value of an enum ("envoy.config.core.v3.HeaderValueOption.HeaderAppendAction"). */
export function protoEnum(enumName: string, value: string): number {
  const n = protoRoot().lookupEnum(enumName).values[value];
  if (n === undefined) throw new Error(`${enumName} has no value ${value}`);
  return n;
}

/** The type URL of a message name. */
export function typeUrlOf(fullName: string): string {
  return `type.googleapis.com/${fullName}`;
}

/**
 * Options for turning decoded messages into plain objects: the same shape @grpc/proto-loader produces with
 * keepCase, string longs and enums, defaults and oneof markers.
 */
export const TO_OBJECT: protobuf.IConversionOptions = {
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: true,
  oneofs: true,
  json: false,
};
