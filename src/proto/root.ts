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

/**
 * The protos the filter service needs (its three services, the policy it is sent over xDS): a process that
 * only looks up their types (`flowgate filters`) loads these and their imports, about a quarter of the full
 * set's heap (1.6 against 6.7 MB). The first lookup of any other name loads the rest into the same Root.
 */
const FILTER_SERVICE_FILES = [
  'envoy/service/auth/v3/external_auth.proto',
  'envoy/service/ratelimit/v3/rls.proto',
  'envoy/service/ext_proc/v3/external_processor.proto',
  'envoy/service/discovery/v3/discovery.proto',
  'flowgate/v1/filter_policy.proto',
];

let root: protobuf.Root | undefined;
let complete = false;

function loadInto(files: readonly string[]): protobuf.Root {
  if (!root) {
    addWellKnownProtos();
    const includeDirs = protoIncludeDirs();
    root = new protobuf.Root();
    root.resolvePath = (origin: string, target: string): string | null => {
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
  }
  // Files already loaded (by name) are skipped, so a second call adds only what is new.
  root.loadSync([...files], { keepCase: true });
  root.resolveAll();
  return root;
}

/** The shared Root with every proto loaded (about a second the first time). */
export function protoRoot(): protobuf.Root {
  if (!complete) {
    loadInto(protoFiles());
    complete = true;
  }
  return root as protobuf.Root;
}

/** The .proto files loaded so far (every one once protoRoot() has been asked for). */
export function loadedProtoFiles(): readonly string[] {
  return root ? [...root.files] : [];
}

/** A type or enum by name: from what is loaded (the filter service's protos at least), else from every proto. */
function lookup<T extends protobuf.ReflectionObject>(name: string, kind: typeof protobuf.Type | typeof protobuf.Enum): T {
  const partial = complete ? (root as protobuf.Root) : loadInto(FILTER_SERVICE_FILES);
  const found = partial.lookup(name, [kind]);
  if (found) return found as T;
  const full = protoRoot();
  const again = full.lookup(name, [kind]);
  if (!again) throw new Error(`no ${kind === protobuf.Type ? 'message type' : 'enum'} ${name} in the loaded protos`);
  return again as T;
}

const typeCache = new Map<string, protobuf.Type>();

/** The message type for a fully qualified name ("envoy.config.cluster.v3.Cluster") or a type URL. */
export function messageType(nameOrTypeUrl: string): protobuf.Type {
  const name = nameOrTypeUrl.slice(nameOrTypeUrl.lastIndexOf('/') + 1);
  let type = typeCache.get(name);
  if (!type) {
    type = lookup<protobuf.Type>(name, protobuf.Type);
    typeCache.set(name, type);
  }
  return type;
}

/** The number of a value of an enum ("envoy.config.core.v3.HeaderValueOption.HeaderAppendAction"). */
export function protoEnum(enumName: string, value: string): number {
  const n = lookup<protobuf.Enum>(enumName, protobuf.Enum).values[value];
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
