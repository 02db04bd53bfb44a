import * as grpc from '@grpc/grpc-js';
import { hostname } from 'node:os';
import { errorMessage } from '../errors.js';
import { fromStruct } from '../proto/codec.js';
import { logger } from '../observability/log.js';
import { untrusted } from '../observability/untrusted.js';
import type { NodeInfo, SnapshotCache } from './cache.js';
import { DeltaStream } from './stream/delta.js';
import { leanCalls } from './framing.js';
import { xdsMetrics } from './metrics.js';
import { PushQueue, type PushTarget } from './push-queue.js';
import { shortTypeName, type TypeUrl } from '../resources/types.js';
import { SotwStream } from './stream/sotw.js';
import type { StreamObserver, Transport, XdsStream } from './stream/state.js';
import type { StreamStatus } from './stream/status.js';
import {
  DEFAULT_REQUEST_LIMITS,
  xdsServiceDefinitions,
  type DeltaDiscoveryRequest,
  type DiscoveryRequest,
  type RawNode,
  type RefusedRequest,
  type RequestLimits,
  type XdsWireMessage,
} from './wire.js';

/**
 * XdsServer: streams what the snapshot cache decides. It registers ADS and the per-type LDS/RDS/CDS/EDS
 * services, both state of the world and delta, on a gRPC server, keeps one XdsStream per open stream, and
 * reports every push, ACK and NACK to the metrics, the log and the status page. It never builds config.
 */

const log = logger('xds');

export interface XdsServerOptions {
  /** Identifies this control plane in every response (`control_plane.identifier`). */
  readonly controlPlaneId?: string;
  /** What one request may cost (default DEFAULT_REQUEST_LIMITS); the gRPC server must be made with xdsGrpcOptions() of the same. */
  readonly limits?: RequestLimits;
  /** Response bytes in flight over all streams before further responses wait (default DEFAULT_PUSH_BYTES_IN_FLIGHT). */
  readonly pushBytesInFlight?: number;
}

/** gRPC server options for long-lived xDS streams from thousands of clients, receiving at most `limits.maxRequestBytes` per message. */
export function xdsGrpcOptions(limits: RequestLimits = DEFAULT_REQUEST_LIMITS): grpc.ServerOptions {
  return {
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 10_000,
    // Also bounds the access-log batches and CSDS requests sharing the port; Envoy's are a few KB.
    'grpc.max_receive_message_length': limits.maxRequestBytes,
    'grpc.max_send_message_length': 256 * 1024 * 1024,
    // First: it must see grpc-js's own call object (framing.ts).
    interceptors: [leanCalls],
  };
}

/** xdsGrpcOptions() with the default limits. */
export const XDS_GRPC_OPTIONS: grpc.ServerOptions = xdsGrpcOptions();

type XdsCall<Req> = grpc.ServerDuplexStream<Req, XdsWireMessage>;

export class XdsServer implements StreamObserver {
  readonly controlPlaneId: string;
  readonly limits: RequestLimits;
  private readonly streams = new Set<XdsStream>();
  private readonly calls = new Map<XdsStream, XdsCall<unknown>>();
  private streamCounter = 0;
  /** Every stream's responses go through one queue bounding the bytes in flight (see push-queue.ts). */
  private readonly pushes: PushQueue;
  /** node id -> peer host -> open identified streams: answers xdsStreamHeld() without a walk of every stream. */
  private readonly nodeHosts = new Map<string, Map<string, number>>();

  constructor(
    readonly cache: SnapshotCache,
    options: XdsServerOptions = {},
  ) {
    this.controlPlaneId = options.controlPlaneId ?? `flowgate@${hostname()}`;
    this.limits = options.limits ?? DEFAULT_REQUEST_LIMITS;
    this.pushes = new PushQueue(options.pushBytesInFlight);
  }

  /** Bytes handed to gRPC and not flushed yet, and responses waiting for room (bench and status). */
  pushStats(): { inFlightBytes: number; waiting: number } {
    return this.pushes.stats();
  }

  /** Adds the xDS services to a gRPC server (the caller binds and starts it). */
  register(server: grpc.Server): void {
    for (const svc of xdsServiceDefinitions(this.limits)) {
      const serviceType = svc.typeUrl as TypeUrl | undefined;
      server.addService(svc.definition, {
        [svc.sotw]: (call: XdsCall<DiscoveryRequest>) => this.open(call, 'sotw', serviceType),
        [svc.delta]: (call: XdsCall<DeltaDiscoveryRequest>) => this.open(call, 'delta', serviceType),
      });
    }
  }

  /** A read-only view of every open stream (for the status page and CSDS). */
  streamStatuses(): StreamStatus[] {
    return [...this.streams].map((s) => s.status());
  }

  /** True when node `nodeId` has an identified xDS stream open from host `host` (the access-log service's check). */
  xdsStreamHeld(nodeId: string, host: string): boolean {
    return (this.nodeHosts.get(nodeId)?.get(host) ?? 0) > 0;
  }

  private countNodeHost(nodeId: string, host: string, delta: 1 | -1): void {
    const hosts = this.nodeHosts.get(nodeId) ?? new Map<string, number>();
    const n = (hosts.get(host) ?? 0) + delta;
    if (n > 0) hosts.set(host, n);
    else hosts.delete(host);
    if (hosts.size > 0) this.nodeHosts.set(nodeId, hosts);
    else this.nodeHosts.delete(nodeId);
  }

  /** How many streams are open. */
  streamCount(): number {
    return this.streams.size;
  }

  /** Ends every stream cleanly (clients keep their config and reconnect elsewhere). */
  endAll(): void {
    for (const [stream, call] of this.calls) {
      stream.close();
      call.end();
    }
  }

  private open(call: XdsCall<DiscoveryRequest> | XdsCall<DeltaDiscoveryRequest>, transport: Transport, serviceType?: TypeUrl): void {
    const identity = {
      id: ++this.streamCounter,
      transport,
      ads: serviceType === undefined,
      serviceType,
      peer: call.getPeer(),
      controlPlaneId: this.controlPlaneId,
    };
    const write = (bytes: Uint8Array): void => {
      call.write(bytes);
    };
    const holder: { stream?: XdsStream } = {};
    const target: PushTarget = {
      write: (message, done) => call.write(message, () => done()),
      closed: () => holder.stream?.isClosed() ?? false,
    };
    const deferred = (make: () => XdsWireMessage): void => this.pushes.push(target, make);
    const stream = transport === 'sotw' ? new SotwStream(identity, this, write, deferred) : new DeltaStream(identity, this, write, deferred);
    holder.stream = stream;
    this.streams.add(stream);
    this.calls.set(stream, call as XdsCall<unknown>);
    const mode = identity.ads ? 'ads' : shortTypeName(serviceType ?? '');
    xdsMetrics.streams.inc({ service: mode, transport });
    let unwatch: (() => void) | undefined;
    let closed = false;

    const close = (reason: string): void => {
      if (closed) return;
      closed = true;
      stream.close();
      this.pushes.release(target);
      unwatch?.();
      this.streams.delete(stream);
      this.calls.delete(stream);
      xdsMetrics.streams.dec({ service: mode, transport });
      if (stream.node) {
        xdsMetrics.nodes.dec({ group: stream.group });
        this.countNodeHost(stream.node.id, peerHost(identity.peer), -1);
      }
      log.info({ node: untrusted(stream.node?.id), group: untrusted(stream.group), stream: identity.id, reason: untrusted(reason) }, 'xds stream closed');
    };

    // An 'error' on a server stream is how grpc-js ends it with that status (destroy() would send none); the
    // stream is closed first, so nothing more is read or sent on it.
    const fail = (code: grpc.status, details: string): void => {
      close(`error: ${details}`);
      call.emit('error', grpcError(code, details));
    };
    const refuse = (kind: 'names' | 'subscriptions', reason: string): void => {
      xdsMetrics.refused.inc({ reason: kind });
      log.warn({ node: untrusted(stream.node?.id), stream: identity.id, peer: untrusted(identity.peer), reason }, 'xds request refused; stream closed');
      fail(grpc.status.RESOURCE_EXHAUSTED, reason);
    };

    call.on('data', (req: DiscoveryRequest | DeltaDiscoveryRequest | RefusedRequest) => {
      if (closed) return;
      if ('refused' in req) {
        refuse('names', req.refused);
        return;
      }
      try {
        if (!stream.node && req.node) {
          stream.node = toNodeInfo(req.node);
          const key = this.cache.keyOf(stream.node);
          stream.group = key.group;
          xdsMetrics.nodes.inc({ group: stream.group });
          this.countNodeHost(stream.node.id, peerHost(identity.peer), 1);
          log.info(
            {
              node: untrusted(stream.node.id),
              group: untrusted(stream.group),
              stream: identity.id,
              service: mode,
              transport,
              peer: untrusted(identity.peer),
              agent: untrusted(stream.node.userAgent),
            },
            'xds stream opened',
          );
          const initial = this.cache.getSnapshot(key.group, key.variant);
          if (initial) stream.setSnapshot(initial);
          unwatch = this.cache.watch(key, (snapshot) => stream.setSnapshot(snapshot));
        }
        if (!stream.node) {
          fail(grpc.status.INVALID_ARGUMENT, 'the first xDS request on a stream must carry node');
          return;
        }
        const result =
          stream instanceof SotwStream
            ? stream.handleRequest(req as DiscoveryRequest)
            : (stream).handleRequest(req as DeltaDiscoveryRequest);
        if (stream.subscribedNames() > this.limits.maxResourceNames) {
          refuse('subscriptions', `a stream may be subscribed to at most ${this.limits.maxResourceNames} resource names`);
          return;
        }
        if ('ignored' in result) log.debug({ node: untrusted(stream.node.id), stream: identity.id, why: untrusted(result.ignored) }, 'xds request ignored');
      } catch (err) {
        // The message may quote the request; the stack is kept (cut) because this is a bug to find.
        log.error({ err: untrusted(errorMessage(err)), stack: err instanceof Error ? untrusted(err.stack, 4096) : undefined, node: untrusted(stream.node?.id), stream: identity.id }, 'xds request failed');
        fail(grpc.status.INTERNAL, untrusted(errorMessage(err)) ?? 'internal error');
      }
    });
    call.on('end', () => {
      close('client ended the stream');
      call.end();
    });
    call.on('error', (err: Error) => close(`error: ${err.message}`));
    call.on('cancelled', () => close('cancelled'));
    call.on('close', () => close('closed'));
  }

  onPush(stream: XdsStream, typeUrl: TypeUrl, version: string, resources: number): void {
    xdsMetrics.pushes.inc({ type: shortTypeName(typeUrl) });
    log.debug({ node: untrusted(stream.node?.id), type: shortTypeName(typeUrl), version, resources }, 'xds push');
  }

  onAck(stream: XdsStream, typeUrl: TypeUrl, version: string, latencyMs: number): void {
    const type = shortTypeName(typeUrl);
    xdsMetrics.acks.inc({ type });
    xdsMetrics.pushToAck.observe({ type }, latencyMs / 1000);
    log.debug({ node: untrusted(stream.node?.id), type, version: untrusted(version), latencyMs }, 'xds ack');
  }

  onNack(stream: XdsStream, typeUrl: TypeUrl, version: string, detail: string, latencyMs: number): void {
    const type = shortTypeName(typeUrl);
    xdsMetrics.nacks.inc({ type });
    log.warn(
      { node: untrusted(stream.node?.id), group: untrusted(stream.group), type, version: untrusted(version), detail: untrusted(detail), latencyMs },
      `xds NACK from ${untrusted(stream.node?.id) ?? '?'}: ${type} version ${untrusted(version)} rejected; the last accepted config stays`,
    );
  }
}

/** The host part of a gRPC peer string (`1.2.3.4:5678`, `::1:5678`, `[::1]:5678`), IPv4-mapped IPv6 as IPv4. */
export function peerHost(peer: string): string {
  const cut = peer.lastIndexOf(':');
  const host = cut > 0 ? peer.slice(0, cut) : peer;
  return host.replace(/^\[|\]$/g, '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
}

function grpcError(code: grpc.status, details: string): Error {
  return Object.assign(new Error(details), { code, details });
}

function toNodeInfo(node: RawNode): NodeInfo {
  const v = node.user_agent_build_version?.version;
  const version = node.user_agent_version || (v ? `${v.major_number ?? 0}.${v.minor_number ?? 0}.${v.patch ?? 0}` : '');
  return {
    id: node.id,
    cluster: node.cluster,
    metadata: fromStruct(node.metadata),
    userAgent: `${node.user_agent_name || 'unknown'}${version ? '/' + version : ''}`,
    locality: node.locality ?? undefined,
  };
}
