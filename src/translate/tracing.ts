import { isIP } from 'node:net';
import type { GatewayIR } from '../ir/types.js';
import { duration, typed } from '../proto/codec.js';
import { TypeUrl } from '../xds/resource-types.js';
import type { ResourceInput } from '../xds/snapshot.js';

/**
 * Tracing: when the Gateway names an OTLP collector, every listener's HTTP connection manager gets Envoy's
 * OpenTelemetry tracer exporting over gRPC to it, sampling the policy's percentage of requests.
 */

export const OTLP_CLUSTER = 'flowgate_otlp';
const OTEL_CONFIG = 'type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig';
const HTTP_OPTIONS = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/** The HCM `tracing` block, or undefined when tracing is off. */
export function hcmTracing(ir: GatewayIR): object | undefined {
  const t = ir.tracing;
  if (!t) return undefined;
  return {
    random_sampling: { value: t.samplingPercent },
    spawn_upstream_span: { value: true },
    provider: {
      name: 'envoy.tracers.opentelemetry',
      typed_config: typed(OTEL_CONFIG, { grpc_service: { envoy_grpc: { cluster_name: OTLP_CLUSTER }, timeout: duration(1000) }, service_name: t.serviceName }),
    },
  };
}

/** The HTTP/2 cluster reaching the collector. */
export function tracingCluster(ir: GatewayIR): ResourceInput[] {
  const t = ir.tracing;
  if (!t) return [];
  return [
    {
      typeUrl: TypeUrl.Cluster,
      name: OTLP_CLUSTER,
      message: {
        name: OTLP_CLUSTER,
        type: isIP(t.address) !== 0 ? 'STATIC' : 'STRICT_DNS',
        connect_timeout: duration(1000),
        load_assignment: { cluster_name: OTLP_CLUSTER, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: t.address, port_value: t.port } } } }] }] },
        typed_extension_protocol_options: {
          'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': typed(HTTP_OPTIONS, { explicit_http_config: { http2_protocol_options: {} } }),
        },
      },
    },
  ];
}
