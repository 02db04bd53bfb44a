import { duration, typed } from '../proto/codec.js';

/**
 * The Envoy side of the access-log sink: the access_log entry the HTTP connection managers carry, and the
 * HTTP/2 cluster that reaches the control plane's AccessLogService.
 */

export const HTTP_GRPC_ACCESS_LOG = 'type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig';
const HTTP_PROTOCOL_OPTIONS = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/** How often Envoy sends buffered entries, and the buffer size that sends them sooner. */
export const ALS_FLUSH_INTERVAL_MS = 1000;
export const ALS_BUFFER_BYTES = 16 * 1024;

/**
 * The custom tags naming the model and version of the upstream host (its `flowgate` endpoint metadata): an
 * entry of a split cluster (src/translate/eds-split.ts) names no version in its cluster name.
 */
export const ALS_TAG = { model: 'flowgate.model', version: 'flowgate.version' } as const;

const hostTag = (tag: string, key: string): object => ({ tag, metadata: { kind: { host: {} }, metadata_key: { key: 'flowgate', path: [{ key }] } } });

/**
 * The access_log entry (envoy.config.accesslog.v3.AccessLog, plain object) for an HTTP connection manager:
 * gRPC access logs to `clusterName` under `logName`, flushed every second; `hostTags`: with ALS_TAG.
 */
export function accessLogConfig(clusterName: string, logName: string, hostTags = false): object {
  return {
    name: 'envoy.access_loggers.http_grpc',
    typed_config: typed(HTTP_GRPC_ACCESS_LOG, {
      common_config: {
        log_name: logName,
        grpc_service: { envoy_grpc: { cluster_name: clusterName } },
        transport_api_version: 'V3',
        buffer_flush_interval: duration(ALS_FLUSH_INTERVAL_MS),
        buffer_size_bytes: { value: ALS_BUFFER_BYTES },
        ...(hostTags && { custom_tags: [hostTag(ALS_TAG.model, 'model'), hostTag(ALS_TAG.version, 'version')] }),
      },
    }),
  };
}

/**
 * A STATIC cluster (envoy.config.cluster.v3.Cluster, plain object) reaching the access-log service at
 * host:port over HTTP/2, as gRPC requires.
 */
export function accessLogCluster(name: string, host: string, port: number): object {
  return {
    name,
    type: 'STATIC',
    connect_timeout: duration(1000),
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: host, port_value: port } } } }] }],
    },
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': typed(HTTP_PROTOCOL_OPTIONS, {
        explicit_http_config: { http2_protocol_options: {} },
      }),
    },
  };
}
