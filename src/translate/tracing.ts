import type { GatewayIR } from '../ir/types.js';
import { duration, typed } from '../proto/codec.js';
import type { ResourceInput } from '../xds/snapshot.js';
import { grpcServiceCluster } from './grpc-cluster.js';

/**
 * Tracing: when the Gateway names an OTLP collector, every listener's HTTP connection manager gets Envoy's
 * OpenTelemetry tracer exporting over gRPC to it, sampling the policy's percentage of requests.
 */

export const OTLP_CLUSTER = 'flowgate_otlp';
const OTEL_CONFIG = 'type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig';

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
  return t ? [grpcServiceCluster(OTLP_CLUSTER, t.address, t.port)] : [];
}
