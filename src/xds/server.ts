import * as grpc from '@grpc/grpc-js';
import { hostname } from 'node:os';
import { fromStruct } from '../proto/codec.js';
import { logger } from '../observability/log.js';
import type { NodeInfo, SnapshotCache } from './cache.js';
import { DeltaStream } from './stream/delta.js';
import { xdsMetrics } from './metrics.js';
import { shortTypeName, type TypeUrl } from '../resources/types.js';
import { SotwStream } from './stream/sotw.js';
import type { StreamObserver, Transport, XdsStream } from './stream/state.js';
import type { StreamStatus } from './stream/status.js';
import { xdsServiceDefinitions, type DeltaDiscoveryRequest, type DiscoveryRequest, type RawNode } from './wire.js';

/**
 * XdsServer: streams what the snapshot cache decides. It registers ADS and the per-type LDS/RDS/CDS/EDS
 * services, both state of the world and delta, on a gRPC server, keeps one XdsStream per open stream, and
 * reports every push, ACK and NACK to the metrics, the log and the status page. It never builds config.
 */

const log = logger('xds');

export interface XdsServerOptions {
  /** Identifies this control plane in every response (`control_plane.identifier`). */
  readonly controlPlaneId?: string;
}

/** gRPC server options for long-lived xDS streams from thousands of clients. */
export const XDS_GRPC_OPTIONS: grpc.ServerOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 10_000,
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
  'grpc.max_send_message_length': 256 * 1024 * 1024,
};

type XdsCall<Req> = grpc.ServerDuplexStream<Req, Uint8Array>;

export class XdsServer implements StreamObserver {
  readonly controlPlaneId: string;
  private readonly streams = new Set<XdsStream>();
  private readonly calls = new Map<XdsStream, XdsCall<unknown>>();
  private streamCounter = 0;

  constructor(
    readonly cache: SnapshotCache,
    options: XdsServerOptions = {},
  ) {
    this.controlPlaneId = options.controlPlaneId ?? `flowgate@${hostname()}`;
  }

  /** Adds the xDS services to a gRPC server (the caller binds and starts it). */
  register(server: grpc.Server): void {
    for (const svc of xdsServiceDefinitions()) {
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
    const stream = transport === 'sotw' ? new SotwStream(identity, this, write) : new DeltaStream(identity, this, write);
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
      unwatch?.();
      this.streams.delete(stream);
      this.calls.delete(stream);
      xdsMetrics.streams.dec({ service: mode, transport });
      if (stream.node) xdsMetrics.nodes.dec({ group: stream.group });
      log.info({ node: stream.node?.id, group: stream.group, stream: identity.id, reason }, 'xds stream closed');
    };

    call.on('data', (req: DiscoveryRequest | DeltaDiscoveryRequest) => {
      try {
        if (!stream.node && req.node) {
          stream.node = toNodeInfo(req.node);
          const key = this.cache.keyOf(stream.node);
          stream.group = key.group;
          xdsMetrics.nodes.inc({ group: stream.group });
          log.info(
            { node: stream.node.id, group: stream.group, stream: identity.id, service: mode, transport, peer: identity.peer, agent: stream.node.userAgent },
            'xds stream opened',
          );
          const initial = this.cache.getSnapshot(key.group, key.variant);
          if (initial) stream.setSnapshot(initial);
          unwatch = this.cache.watch(key, (snapshot) => stream.setSnapshot(snapshot));
        }
        if (!stream.node) {
          call.destroy(grpcError(grpc.status.INVALID_ARGUMENT, 'the first xDS request on a stream must carry node'));
          return;
        }
        const result =
          stream instanceof SotwStream
            ? stream.handleRequest(req as DiscoveryRequest)
            : (stream).handleRequest(req as DeltaDiscoveryRequest);
        if ('ignored' in result) log.debug({ node: stream.node.id, stream: identity.id, why: result.ignored }, 'xds request ignored');
      } catch (err) {
        log.error({ err, node: stream.node?.id, stream: identity.id }, 'xds request failed');
        call.destroy(grpcError(grpc.status.INTERNAL, err instanceof Error ? err.message : String(err)));
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
    log.debug({ node: stream.node?.id, type: shortTypeName(typeUrl), version, resources }, 'xds push');
  }

  onAck(stream: XdsStream, typeUrl: TypeUrl, version: string, latencyMs: number): void {
    const type = shortTypeName(typeUrl);
    xdsMetrics.acks.inc({ type });
    xdsMetrics.pushToAck.observe({ type }, latencyMs / 1000);
    log.debug({ node: stream.node?.id, type, version, latencyMs }, 'xds ack');
  }

  onNack(stream: XdsStream, typeUrl: TypeUrl, version: string, detail: string, latencyMs: number): void {
    const type = shortTypeName(typeUrl);
    xdsMetrics.nacks.inc({ type });
    log.warn(
      { node: stream.node?.id, group: stream.group, type, version, detail, latencyMs },
      `xds NACK from ${stream.node?.id ?? '?'}: ${type} version ${version} rejected; the last accepted config stays`,
    );
  }
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
