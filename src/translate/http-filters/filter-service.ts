import { rateLimitStage, type FailureMode } from '../../contract/filter-wire.js';
import type { FilterServiceIR, GatewayIR } from '../../ir/types.js';
import type { RouteOwner } from './types.js';
import { duration } from '../../proto/codec.js';
import type { ResourceInput } from '../../resources/types.js';
import { grpcServiceCluster } from '../grpc-cluster.js';
import { upstreamTls } from '../tls.js';

/**
 * What Flowgate's three filter-service filters share: the HTTP/2 cluster reaching the filter service, the
 * grpc_service entry pointing at it, and the failure mode a model's routes use. Every filter exists twice,
 * fail closed and fail open (Envoy sets failure behaviour per filter, the policy sets it per model); both
 * are disabled or inert by default and a route turns on only the ones its model needs.
 */

export const FILTERS_CLUSTER = 'flowgate_filters';

/**
 * Envoy ends each ext_proc stream with a RST_STREAM, and the filter service's HTTP/2 stack (nghttp2, whose
 * rapid-reset defence Node.js does not let a server tune) drops a connection that resets more than a burst of
 * 1,000 streams faster than 33 a second, failing every exchange on it. Envoy moves to a fresh connection after
 * this many streams, well inside the burst; a new plaintext or TLS connection every few hundred calls is cheap.
 */
export const FILTER_STREAMS_PER_CONNECTION = 500;

/** The grpc_service of a filter calling the filter service. */
export function filterServiceGrpc(fs: FilterServiceIR): object {
  return { envoy_grpc: { cluster_name: FILTERS_CLUSTER }, timeout: duration(fs.timeoutMs) };
}

/** The last filter-service cluster, by its inputs (the IR's filterService as JSON). */
let lastFilterCluster: { readonly key: string; readonly resources: readonly ResourceInput[] } | undefined;

/**
 * The cluster reaching the filter service, when any model needs it. The same resource object while its
 * inputs are equal (every IR has its own filterService object): encoded and compared once, not per mode
 * and per change.
 */
export function filterServiceCluster(ir: GatewayIR): ResourceInput[] {
  const fs = ir.filterService;
  if (!fs) return [];
  const key = JSON.stringify(fs);
  if (lastFilterCluster?.key === key) return [...lastFilterCluster.resources];
  const keepalive = { connection_keepalive: { interval: duration(30_000), timeout: duration(5_000) } };
  const resources = [
    grpcServiceCluster(FILTERS_CLUSTER, fs.address, fs.port, keepalive, fs.tls && upstreamTls(fs.tls, fs.address), {
      max_requests_per_connection: { value: FILTER_STREAMS_PER_CONNECTION },
    }),
  ];
  lastFilterCluster = { key, resources };
  return [...resources];
}

/** The failure mode of a model's filter calls. */
export function failureMode(model: RouteOwner): FailureMode {
  return model.filters?.failOpen ? 'open' : 'closed';
}

/**
 * Where a model's request rate limits are decided: inside ext_authz's Check (the default: one filter call per
 * request, the Check knows the consumer and the model), or by Envoy's rate-limit filter calling
 * ShouldRateLimit (a second call), when the IR asks for it.
 */
export function rateLimitPath(model: RouteOwner): 'check' | 'filter' | undefined {
  if (model.filters?.rateLimit !== true) return undefined;
  return model.filters.rateLimitFilter === true ? 'filter' : 'check';
}

/** The failure modes (closed first) in which some model among `models` needs the filter `needs` picks out. */
export function modesUsed(models: readonly RouteOwner[], needs: (m: RouteOwner) => boolean): FailureMode[] {
  return (['closed', 'open'] as const).filter((mode) => models.some((m) => m.filters !== undefined && needs(m) && failureMode(m) === mode));
}

export { rateLimitStage };
