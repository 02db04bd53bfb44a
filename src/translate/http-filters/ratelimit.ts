import { DescriptorKey, FilterName, Header, RATE_LIMIT_DOMAIN } from '../../contract/filter-wire.js';
import { duration, typed } from '../../proto/codec.js';
import { failureMode, filterServiceCluster, filterServiceGrpc, modesUsed, rateLimitPath, rateLimitStage } from './filter-service.js';
import type { HttpFilterTranslator } from './types.js';

/**
 * The global rate limit through Envoy's rate-limit filter, for models whose IR asks for it
 * (`filters.rateLimitFilter`): Envoy asks ShouldRateLimit with a (model, consumer) descriptor built by each
 * route's rate_limits. Every other model's limits are decided inside ext_authz's Check (ext-authz.ts), one
 * filter call per request instead of two, and this filter is left out of their listeners. The two
 * failure-mode filters act on different stages, so a route's descriptors are judged by the filter of its
 * model's failure mode only.
 */

const RATE_LIMIT = 'type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit';

export const rateLimit: HttpFilterTranslator = {
  name: 'ratelimit',
  listenerFilters(ir, models) {
    const fs = ir.filterService;
    if (!fs) return [];
    return modesUsed(models, (m) => rateLimitPath(m) === 'filter').map((mode) => ({
      name: FilterName.rateLimit(mode),
      typed_config: typed(RATE_LIMIT, {
        domain: RATE_LIMIT_DOMAIN,
        stage: rateLimitStage(mode),
        timeout: duration(fs.timeoutMs),
        failure_mode_deny: mode === 'closed',
        status_on_error: { code: 503 },
        rate_limit_service: { grpc_service: filterServiceGrpc(fs), transport_api_version: 'V3' },
      }),
    }));
  },
  routeConfig(model) {
    if (rateLimitPath(model) !== 'filter') return {};
    return {
      rateLimits: [
        {
          stage: { value: rateLimitStage(failureMode(model)) },
          actions: [
            { generic_key: { descriptor_key: DescriptorKey.model, descriptor_value: model.name } },
            // Set by ext_authz (which removes any value the client sent); absent for anonymous callers.
            { request_headers: { header_name: Header.consumer, descriptor_key: DescriptorKey.consumer, skip_if_absent: true } },
          ],
        },
      ],
    };
  },
  resources: filterServiceCluster,
};
