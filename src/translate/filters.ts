import type { FilterServiceIR, GatewayIR, ModelIR } from '../ir/types.js';
import { duration, typed } from '../proto/codec.js';
import { grpcServiceCluster } from './grpc-cluster.js';
import { upstreamTls } from './tls.js';
import type { ResourceInput } from '../xds/snapshot.js';

/**
 * The filter service in Envoy's config: a cluster (HTTP/2) reaching it, the HTTP filters of a listener whose
 * models need it, and each route's per-filter settings. Every filter exists twice, fail-closed and fail-open
 * (Envoy sets failure behaviour per filter, the policy sets it per model); both are disabled by default and a
 * route turns on only the ones its model needs, so a route without masking never pays for ext_proc.
 */

export const FILTERS_CLUSTER = 'flowgate_filters';
export const RATE_LIMIT_DOMAIN = 'flowgate';
export const MODEL_METADATA = 'x-flowgate-model';

const EXT_AUTHZ = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const EXT_AUTHZ_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';
const RATE_LIMIT = 'type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit';
const EXT_PROC = 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor';
const EXT_PROC_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute';

type Variant = 'closed' | 'open';
const suffix = (v: Variant): string => (v === 'open' ? '.open' : '');
export const filterName = {
  authz: (v: Variant): string => `flowgate.authz${suffix(v)}`,
  rateLimit: (v: Variant): string => `flowgate.ratelimit${suffix(v)}`,
  extProc: (v: Variant): string => `flowgate.extproc${suffix(v)}`,
};
/** Rate-limit filters act on the route's rate_limits of their own stage. */
const stage = (v: Variant): number => (v === 'open' ? 1 : 0);

function grpcService(fs: FilterServiceIR): object {
  return { envoy_grpc: { cluster_name: FILTERS_CLUSTER }, timeout: duration(fs.timeoutMs) };
}

/** The cluster reaching the filter service, when any model needs it. */
export function filtersCluster(ir: GatewayIR): ResourceInput[] {
  const fs = ir.filterService;
  if (!fs) return [];
  const keepalive = { connection_keepalive: { interval: duration(30_000), timeout: duration(5_000) } };
  return [grpcServiceCluster(FILTERS_CLUSTER, fs.address, fs.port, keepalive, fs.tls && upstreamTls(fs.tls, fs.address))];
}

/** The filter-service HTTP filters a listener needs (before the router), given the models it serves. */
export function listenerFilters(ir: GatewayIR, models: readonly ModelIR[]): object[] {
  const fs = ir.filterService;
  if (!fs) return [];
  const used = (pick: (m: ModelIR) => boolean, v: Variant): boolean => models.some((m) => m.filters && pick(m) && m.filters.failOpen === (v === 'open'));
  const out: object[] = [];
  for (const v of ['closed', 'open'] as const) {
    if (!used((m) => m.filters?.authz === true, v)) continue;
    out.push({
      name: filterName.authz(v),
      disabled: true,
      typed_config: typed(EXT_AUTHZ, {
        grpc_service: grpcService(fs),
        transport_api_version: 'V3',
        failure_mode_allow: v === 'open',
        status_on_error: { code: 503 },
        // A sticky model's hash header is set by the check; the split is then picked again with it.
        clear_route_cache: true,
      }),
    });
  }
  for (const v of ['closed', 'open'] as const) {
    if (!used((m) => m.filters?.rateLimit === true, v)) continue;
    out.push({
      name: filterName.rateLimit(v),
      typed_config: typed(RATE_LIMIT, {
        domain: RATE_LIMIT_DOMAIN,
        stage: stage(v),
        timeout: duration(fs.timeoutMs),
        failure_mode_deny: v === 'closed',
        status_on_error: { code: 503 },
        rate_limit_service: { grpc_service: grpcService(fs), transport_api_version: 'V3' },
      }),
    });
  }
  for (const v of ['closed', 'open'] as const) {
    if (!used((m) => m.filters?.extProc !== undefined, v)) continue;
    out.push({
      name: filterName.extProc(v),
      disabled: true,
      typed_config: typed(EXT_PROC, {
        grpc_service: grpcService(fs),
        failure_mode_allow: v === 'open',
        message_timeout: duration(fs.timeoutMs),
        processing_mode: { request_header_mode: 'SKIP', response_header_mode: 'SKIP', request_body_mode: 'NONE', response_body_mode: 'NONE', request_trailer_mode: 'SKIP', response_trailer_mode: 'SKIP' },
      }),
    });
  }
  return out;
}

/** What each route of a model adds for the filter service: per-filter settings (Route) and rate-limit actions (RouteAction). */
export function routeFilterConfig(model: ModelIR): { perFilter?: Record<string, object>; rateLimits?: object[] } {
  const f = model.filters;
  if (!f) return {};
  const v: Variant = f.failOpen ? 'open' : 'closed';
  const perFilter: Record<string, object> = {};
  if (f.authz) perFilter[filterName.authz(v)] = typed(EXT_AUTHZ_ROUTE, { check_settings: { context_extensions: { model: model.name } } });
  if (f.extProc) {
    perFilter[filterName.extProc(v)] = typed(EXT_PROC_ROUTE, {
      overrides: {
        processing_mode: {
          request_header_mode: 'SEND',
          response_header_mode: 'SEND',
          request_body_mode: f.extProc.requestBody ? 'BUFFERED' : 'NONE',
          response_body_mode: f.extProc.responseBody === 'buffered' ? 'BUFFERED' : f.extProc.responseBody === 'streamed' ? 'STREAMED' : 'NONE',
          request_trailer_mode: 'SKIP',
          response_trailer_mode: 'SKIP',
        },
        grpc_initial_metadata: [{ key: MODEL_METADATA, value: model.name }],
      },
    });
  }
  const out: { perFilter?: Record<string, object>; rateLimits?: object[] } = {};
  if (Object.keys(perFilter).length > 0) out.perFilter = perFilter;
  if (f.rateLimit) {
    out.rateLimits = [
      {
        stage: { value: stage(v) },
        actions: [
          { generic_key: { descriptor_key: 'model', descriptor_value: model.name } },
          // Set by ext_authz (which removes any value the client sent); absent for anonymous callers.
          { request_headers: { header_name: 'x-flowgate-consumer', descriptor_key: 'consumer', skip_if_absent: true } },
        ],
      },
    ];
  }
  return out;
}
