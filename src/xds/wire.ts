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

function decoder<T>(typeName: string): (buf: Buffer) => T {
  const type = messageType(typeName);
  return (buf) => type.toObject(type.decode(buf), TO_OBJECT) as T;
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
export function xdsServiceDefinitions(): { name: string; definition: grpc.ServiceDefinition; sotw: string; delta: string; typeUrl?: string }[] {
  const sotw = decoder<DiscoveryRequest>('envoy.service.discovery.v3.DiscoveryRequest');
  const delta = decoder<DeltaDiscoveryRequest>('envoy.service.discovery.v3.DeltaDiscoveryRequest');
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
  resources: readonly XdsResource[],
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
