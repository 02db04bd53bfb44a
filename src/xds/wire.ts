import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { messageType, TO_OBJECT } from '../proto/root.js';
import type { XdsResource } from './snapshot.js';

/**
 * The xDS wire: gRPC service definitions whose responses are bytes assembled from pre-encoded resources.
 * A resource's Any is encoded once per snapshot; a state-of-the-world response body is encoded once per
 * (type, resource set) and shared by every stream that sends it; only the nonce is written per stream.
 */

/** A decoded DiscoveryRequest (proto-loader shape). */
export interface DiscoveryRequest {
  version_info: string;
  node: RawNode | null;
  resource_names: string[];
  type_url: string;
  response_nonce: string;
  error_detail: RpcStatus | null;
}

/** A decoded DeltaDiscoveryRequest (proto-loader shape). */
export interface DeltaDiscoveryRequest {
  node: RawNode | null;
  type_url: string;
  resource_names_subscribe: string[];
  resource_names_unsubscribe: string[];
  initial_resource_versions: Record<string, string>;
  response_nonce: string;
  error_detail: RpcStatus | null;
}

export interface RpcStatus {
  code: number;
  message: string;
}

export interface RawNode {
  id: string;
  cluster: string;
  metadata: unknown;
  user_agent_name: string;
  user_agent_version?: string;
  user_agent_build_version?: { version?: { major_number?: number; minor_number?: number; patch?: number } } | null;
  locality?: { region?: string; zone?: string; sub_zone?: string } | null;
}

/**
 * What one xDS request may cost. A real Envoy's requests are small (a NACK detail, a few thousand EDS names
 * for thousands of live model versions, a delta reconnect's name and version of each resource it holds); the
 * limits keep a hostile client from making one request cost the event loop (and so the embedded filter
 * service) a second, as 300k names in 12 MB did. At the defaults the largest request allowed costs a few ms to
 * decode and handle (bench/xds-abuse.ts); fleets with more than ~10k clusters per Envoy raise both.
 */
export interface RequestLimits {
  /** Largest request message, in bytes (gRPC refuses a bigger one from its length prefix, unread). */
  readonly maxRequestBytes: number;
  /** Most names one request may carry, and one stream may be subscribed to (resource names, locators, initial versions). */
  readonly maxResourceNames: number;
}

export const DEFAULT_REQUEST_LIMITS: RequestLimits = { maxRequestBytes: 1024 * 1024, maxResourceNames: 10_000 };

/** A request refused before it was decoded; the stream is closed with RESOURCE_EXHAUSTED. */
export interface RefusedRequest {
  readonly refused: string;
}

/** DiscoveryRequest fields that carry one name each: resource_names, resource_locators. */
const SOTW_NAME_FIELDS: ReadonlySet<number> = new Set([3, 7]);
/** DeltaDiscoveryRequest: subscribe, unsubscribe, initial_resource_versions, locators (un)subscribe. */
const DELTA_NAME_FIELDS: ReadonlySet<number> = new Set([3, 4, 5, 8, 9]);

/**
 * How many name-carrying fields the encoded request has, counted from its bytes without decoding them, and
 * no further than `stop + 1`: a request over the limit costs a scan of its first names, not a decode of all.
 * Undefined when the bytes are not a well-formed message (the decoder then reports that).
 */
export function countRequestNames(buf: Uint8Array, fields: ReadonlySet<number>, stop: number): number | undefined {
  const reader = protobuf.Reader.create(buf);
  let names = 0;
  try {
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      if (fields.has(tag >>> 3) && ++names > stop) return names;
      reader.skipType(tag & 7);
    }
  } catch {
    return undefined;
  }
  return names;
}

function decoder<T>(typeName: string): (buf: Buffer) => T {
  const type = messageType(typeName);
  return (buf) => type.toObject(type.decode(buf), TO_OBJECT) as T;
}

function boundedDecoder<T>(typeName: string, nameFields: ReadonlySet<number>, limits: RequestLimits): (buf: Buffer) => T | RefusedRequest {
  const decode = decoder<T>(typeName);
  return (buf) => {
    const names = countRequestNames(buf, nameFields, limits.maxResourceNames);
    if (names !== undefined && names > limits.maxResourceNames) {
      return { refused: `a request may carry at most ${limits.maxResourceNames} resource names` };
    }
    return decode(buf);
  };
}

const passBytes = (value: Uint8Array): Buffer => Buffer.from(value.buffer, value.byteOffset, value.byteLength);

function bidi(path: string, decode: (buf: Buffer) => unknown): grpc.MethodDefinition<unknown, Uint8Array> {
  return {
    path,
    requestStream: true,
    responseStream: true,
    requestSerialize: () => {
      throw new Error('server-side definition');
    },
    requestDeserialize: decode,
    responseSerialize: passBytes,
    responseDeserialize: (buf: Buffer) => buf,
  };
}

/** The gRPC service definitions the xDS server registers: ADS plus the four per-type services. */
export function xdsServiceDefinitions(
  limits: RequestLimits = DEFAULT_REQUEST_LIMITS,
): { name: string; definition: grpc.ServiceDefinition; sotw: string; delta: string; typeUrl?: string }[] {
  const sotw = boundedDecoder<DiscoveryRequest>('envoy.service.discovery.v3.DiscoveryRequest', SOTW_NAME_FIELDS, limits);
  const delta = boundedDecoder<DeltaDiscoveryRequest>('envoy.service.discovery.v3.DeltaDiscoveryRequest', DELTA_NAME_FIELDS, limits);
  const service = (fullName: string, sotwMethod: string, deltaMethod: string, typeUrl?: string) => ({
    name: fullName,
    sotw: sotwMethod,
    delta: deltaMethod,
    typeUrl,
    definition: {
      [sotwMethod]: bidi(`/${fullName}/${sotwMethod}`, sotw),
      [deltaMethod]: bidi(`/${fullName}/${deltaMethod}`, delta),
    } as grpc.ServiceDefinition,
  });
  return [
    service('envoy.service.discovery.v3.AggregatedDiscoveryService', 'StreamAggregatedResources', 'DeltaAggregatedResources'),
    service('envoy.service.listener.v3.ListenerDiscoveryService', 'StreamListeners', 'DeltaListeners', 'type.googleapis.com/envoy.config.listener.v3.Listener'),
    service('envoy.service.route.v3.RouteDiscoveryService', 'StreamRoutes', 'DeltaRoutes', 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration'),
    service('envoy.service.cluster.v3.ClusterDiscoveryService', 'StreamClusters', 'DeltaClusters', 'type.googleapis.com/envoy.config.cluster.v3.Cluster'),
    service('envoy.service.endpoint.v3.EndpointDiscoveryService', 'StreamEndpoints', 'DeltaEndpoints', 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment'),
  ];
}

const LEN = 2; // wire type of length-delimited fields

/** Bounded cache of state-of-the-world bodies (everything but the nonce), keyed by type and set version. */
const sotwBodies = new Map<string, Uint8Array>();
const SOTW_BODY_CACHE = 512;

/**
 * A DiscoveryResponse: the shared body for (type, version, resources) plus this stream's nonce. The
 * resources must be exactly the set whose version is `versionInfo`.
 */
export function encodeSotwResponse(
  typeUrl: string,
  versionInfo: string,
  resources: Iterable<XdsResource>,
  nonce: string,
  controlPlaneId: string,
): Uint8Array {
  const key = `${typeUrl}\u0000${versionInfo}\u0000${controlPlaneId}`;
  let body = sotwBodies.get(key);
  if (!body) {
    const w = protobuf.Writer.create();
    w.uint32((1 << 3) | LEN).string(versionInfo);
    for (const r of resources) w.uint32((2 << 3) | LEN).bytes(r.any);
    w.uint32((4 << 3) | LEN).string(typeUrl);
    w.uint32((6 << 3) | LEN).fork().uint32((1 << 3) | LEN).string(controlPlaneId).ldelim();
    body = w.finish();
    if (sotwBodies.size >= SOTW_BODY_CACHE) sotwBodies.delete(sotwBodies.keys().next().value as string);
    sotwBodies.set(key, body);
  }
  const tail = protobuf.Writer.create().uint32((5 << 3) | LEN).string(nonce).finish();
  const out = new Uint8Array(body.length + tail.length);
  out.set(body, 0);
  out.set(tail, body.length);
  return out;
}

/** Encoded delta `Resource` wrappers, one per shared XdsResource. */
const deltaEntries = new WeakMap<XdsResource, Uint8Array>();

function deltaEntry(r: XdsResource): Uint8Array {
  let entry = deltaEntries.get(r);
  if (!entry) {
    const w = protobuf.Writer.create();
    w.uint32((1 << 3) | LEN).string(r.version);
    w.uint32((2 << 3) | LEN).bytes(r.any);
    w.uint32((3 << 3) | LEN).string(r.name);
    entry = w.finish();
    deltaEntries.set(r, entry);
  }
  return entry;
}

/** A DeltaDiscoveryResponse carrying changed resources and the names of removed ones. */
export function encodeDeltaResponse(
  typeUrl: string,
  systemVersionInfo: string,
  resources: readonly XdsResource[],
  removed: readonly string[],
  nonce: string,
  controlPlaneId: string,
): Uint8Array {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | LEN).string(systemVersionInfo);
  for (const r of resources) w.uint32((2 << 3) | LEN).bytes(deltaEntry(r));
  w.uint32((4 << 3) | LEN).string(typeUrl);
  w.uint32((5 << 3) | LEN).string(nonce);
  for (const name of removed) w.uint32((6 << 3) | LEN).string(name);
  w.uint32((7 << 3) | LEN).fork().uint32((1 << 3) | LEN).string(controlPlaneId).ldelim();
  return w.finish();
}
