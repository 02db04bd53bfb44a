import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { varintSize, writeVarint } from '../proto/codec.js';
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

/**
 * A response as handed to gRPC: its bytes, or a body shared by every stream plus this stream's tail (the
 * nonce). A spliced response is joined only inside gRPC's framing: no per-stream copy of the body is made
 * or kept by Flowgate.
 */
export type XdsWireMessage = Uint8Array | SplicedResponse;

export interface SplicedResponse {
  readonly body: Uint8Array;
  readonly tail: Uint8Array;
}

/** The encoded size of a response. */
export function wireLength(message: XdsWireMessage): number {
  return message instanceof Uint8Array ? message.byteLength : message.body.byteLength + message.tail.byteLength;
}

/** A response as one contiguous message (a copy for a spliced one): for writers that keep what they are given. */
export function wireBytes(message: XdsWireMessage): Uint8Array {
  if (message instanceof Uint8Array) return message;
  const out = new Uint8Array(wireLength(message));
  out.set(message.body, 0);
  out.set(message.tail, message.body.byteLength);
  return out;
}

const passBytes = (value: Uint8Array): Buffer => Buffer.from(value.buffer, value.byteOffset, value.byteLength);

/**
 * grpc-js's serializeMessage copies what the serializer returns into its own length-prefixed frame before it
 * returns (server-interceptors.js), so the joined bytes of a spliced response need to exist only for that
 * synchronous copy. A state-of-the-world body is stored with FRAME_HEAD spare bytes before it and TAIL_ROOM
 * after it (roomyBody): the stream's nonce is written after it and body + nonce handed over as one view, with
 * no copy of the body (at 1,000 models a 3.2 MB copy per stream per push). A body without the room (or a
 * longer tail) is joined in one scratch buffer reused for every response, grown to the largest and kept that
 * size. The room before it lets the first gRPC frame of the body be made in place (frameInPlace).
 */
let scratch = Buffer.allocUnsafeSlow(0);
const SCRATCH_STEP = 64 * 1024;
/** A gRPC message frame's prefix: the compressed flag and the message length (4 bytes, big-endian). */
export const FRAME_HEAD = 5;
/** Spare bytes after each cached body: a nonce field (tag, length, up to 127 characters). */
const TAIL_ROOM = 2 + 127;
/** The buffers roomyBody made whose bytes after the body belong to nothing else (no frame claimed them). */
const roomyBuffers = new WeakSet<ArrayBufferLike>();

/**
 * A body made of `head`, each item (the pieces of one resource's Any) as a length-delimited field `tag`, and
 * `foot`, written once into a buffer of its own with the room around it: each piece is copied once (joining a
 * resource's parts, a Writer's finish and a copy into the room were three copies, ~2 ms each for a 3.2 MB
 * RouteConfiguration into fresh pages).
 */
function roomyBody(head: Uint8Array, tag: number, items: readonly (readonly Uint8Array[])[], foot: Uint8Array): Uint8Array {
  let length = head.byteLength + foot.byteLength;
  const sizes = items.map((chunks) => {
    let size = 0;
    for (const c of chunks) size += c.byteLength;
    length += 1 + varintSize(size) + size;
    return size;
  });
  // allocUnsafeSlow: a buffer of its own (never a slice of the shared pool) and not zero-filled, as every byte is written.
  const buffer = Buffer.allocUnsafeSlow(FRAME_HEAD + length + TAIL_ROOM).buffer;
  const body = new Uint8Array(buffer, FRAME_HEAD, length);
  body.set(head, 0);
  let at = head.byteLength;
  items.forEach((chunks, i) => {
    body[at++] = tag;
    at = writeVarint(body, at, sizes[i] as number);
    for (const c of chunks) {
      body.set(c, at);
      at += c.byteLength;
    }
  });
  body.set(foot, at);
  roomyBuffers.add(buffer);
  return body;
}

/**
 * The gRPC frame of a spliced response written around its body, in the body's own buffer: for the first
 * frame made of a body from roomyBody, which claims the room (later frames of it, with other nonces, are
 * copies, and gRPC's own path joins it in the scratch buffer from then on). Undefined when the room is
 * taken or too small.
 */
export function frameInPlace(message: SplicedResponse): Buffer | undefined {
  const { body, tail } = message;
  const buffer = body.buffer;
  if (body.byteOffset !== FRAME_HEAD || !roomyBuffers.has(buffer) || FRAME_HEAD + body.byteLength + tail.byteLength > buffer.byteLength) return undefined;
  roomyBuffers.delete(buffer);
  const length = body.byteLength + tail.byteLength;
  const frame = Buffer.from(buffer, 0, FRAME_HEAD + length);
  frame[0] = 0;
  frame.writeUInt32BE(length, 1);
  frame.set(tail, FRAME_HEAD + body.byteLength);
  return frame;
}

function serializeResponse(message: XdsWireMessage): Buffer {
  if (message instanceof Uint8Array) return passBytes(message);
  const { body, tail } = message;
  const n = wireLength(message);
  if (roomyBuffers.has(body.buffer) && body.byteOffset + n <= body.buffer.byteLength) {
    const joined = Buffer.from(body.buffer, body.byteOffset, n);
    joined.set(tail, body.byteLength);
    return joined;
  }
  if (scratch.byteLength < n) scratch = Buffer.allocUnsafeSlow(Math.ceil(n / SCRATCH_STEP) * SCRATCH_STEP);
  scratch.set(body, 0);
  scratch.set(tail, body.byteLength);
  return scratch.subarray(0, n);
}

function bidi(path: string, decode: (buf: Buffer) => unknown): grpc.MethodDefinition<unknown, XdsWireMessage> {
  return {
    path,
    requestStream: true,
    responseStream: true,
    requestSerialize: () => {
      throw new Error('server-side definition');
    },
    requestDeserialize: decode,
    responseSerialize: serializeResponse,
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

/**
 * State-of-the-world bodies (everything but the nonce), keyed by type and set version, least recently used
 * first. Bounded in count and in bytes: at 1,000 models one RouteConfiguration body is 3 MB, and a count
 * alone let the bodies of hundreds of old versions stay (a process that had seen many changes held GBs).
 * The bodies being pushed are the recently used ones; an evicted body is encoded again if asked for.
 */
const sotwBodies = new Map<string, Uint8Array>();
const SOTW_BODY_CACHE = 512;
let sotwBodyBytes = 0;
/** Bytes of cached bodies at most (the last body used is kept whatever its size). */
export const SOTW_BODY_CACHE_BYTES = 128 * 1024 * 1024;

function sotwBody(typeUrl: string, versionInfo: string, resources: Iterable<XdsResource>, controlPlaneId: string, from: string): Uint8Array {
  const key = `${typeUrl}\u0000${versionInfo}\u0000${controlPlaneId}\u0000${from}`;
  let body = sotwBodies.get(key);
  if (body) {
    // Most recently used last (Map order).
    sotwBodies.delete(key);
    sotwBodies.set(key, body);
    return body;
  }
  // Fields 1 (version_info), 2 (resources, each Any already encoded), 4 (type_url), 6 (control_plane).
  const head = protobuf.Writer.create().uint32((1 << 3) | LEN).string(versionInfo).finish();
  const foot = protobuf.Writer.create().uint32((4 << 3) | LEN).string(typeUrl).uint32((6 << 3) | LEN).fork().uint32((1 << 3) | LEN).string(controlPlaneId).ldelim().finish();
  body = roomyBody(head, (2 << 3) | LEN, Array.from(resources, (r) => r.anyChunks?.() ?? [r.any]), foot);
  sotwBodies.set(key, body);
  sotwBodyBytes += body.byteLength;
  for (const [oldest, old] of sotwBodies) {
    if (sotwBodies.size <= 1 || (sotwBodies.size <= SOTW_BODY_CACHE && sotwBodyBytes <= SOTW_BODY_CACHE_BYTES)) break;
    sotwBodies.delete(oldest);
    sotwBodyBytes -= old.byteLength;
  }
  return body;
}

/** Cached state-of-the-world bodies: how many and their bytes (bench and tests). */
export function sotwBodyCacheStats(): { bodies: number; bytes: number } {
  return { bodies: sotwBodies.size, bytes: sotwBodyBytes };
}

/**
 * A DiscoveryResponse: the shared body for (type, version, resources) plus this stream's nonce, spliced (no
 * copy of the body). The resources must be exactly the set whose version is `versionInfo`, or, with `from`,
 * exactly the part of it that differs from the held set `from` names (routes and endpoints only).
 */
export function encodeSotwResponse(
  typeUrl: string,
  versionInfo: string,
  resources: Iterable<XdsResource>,
  nonce: string,
  controlPlaneId: string,
  from = '',
): SplicedResponse {
  return { body: sotwBody(typeUrl, versionInfo, resources, controlPlaneId, from), tail: nonceField(nonce) };
}

/** Field 5 (nonce) of a DiscoveryResponse, encoded: the only per-stream bytes of a state-of-the-world push. */
function nonceField(nonce: string): Uint8Array {
  // Nonces are short ASCII (base 36): tag, one length byte, the characters.
  if (nonce.length < 128 && /^[\x20-\x7e]*$/.test(nonce)) {
    const out = new Uint8Array(2 + nonce.length);
    out[0] = (5 << 3) | LEN;
    out[1] = nonce.length;
    for (let i = 0; i < nonce.length; i++) out[2 + i] = nonce.charCodeAt(i);
    return out;
  }
  return protobuf.Writer.create().uint32((5 << 3) | LEN).string(nonce).finish();
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
