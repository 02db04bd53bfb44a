import { API_CONTEXT_KEY, FilterName, MODEL_CONTEXT_KEY, RATE_LIMIT_CONTEXT_KEY, RATE_LIMIT_IN_CHECK } from '../../contract/filter-wire.js';
import { typed } from '../../proto/codec.js';
import { failureMode, filterServiceCluster, filterServiceGrpc, modesUsed, rateLimitPath } from './filter-service.js';
import type { HttpFilterTranslator } from './types.js';

/**
 * ext_authz: credentials, access rules, token-quota admission, request rate limits and the sticky hash,
 * decided by the filter service's Check. Disabled on the listener; each route of a model that needs it
 * enables it with the model's name as a context extension, and `ratelimit: check` where the Check also
 * counts the request against the model's rate limits (ratelimit.ts otherwise).
 */

const EXT_AUTHZ = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const EXT_AUTHZ_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';

export const extAuthz: HttpFilterTranslator = {
  name: 'ext_authz',
  listenerFilters(ir, models) {
    const fs = ir.filterService;
    if (!fs) return [];
    return modesUsed(models, (m) => m.filters?.authz === true || m.filters?.pinAuthz === true).map((mode) => ({
      name: FilterName.authz(mode),
      disabled: true,
      typed_config: typed(EXT_AUTHZ, {
        grpc_service: filterServiceGrpc(fs),
        transport_api_version: 'V3',
        failure_mode_allow: mode === 'open',
        status_on_error: { code: 503 },
        // The check may set the route-version header (a pin, a caller limited to some versions) or a sticky
        // model's hash header: the route, and the split, are then picked again with them.
        clear_route_cache: true,
      }),
    }));
  },
  routeConfig(model, route) {
    const f = model.filters;
    if (!f?.authz && !(route.pinRequested && f?.pinAuthz)) return {};
    // Set key by key rather than spread (twice per model and match at every build: src/objects.ts).
    const context: Record<string, string> = { [MODEL_CONTEXT_KEY]: model.name };
    if (route.api !== 'flowgate') context[API_CONTEXT_KEY] = route.api;
    if (f?.authz && rateLimitPath(model) === 'check') context[RATE_LIMIT_CONTEXT_KEY] = RATE_LIMIT_IN_CHECK;
    return { perFilter: { [FilterName.authz(failureMode(model))]: typed(EXT_AUTHZ_ROUTE, { check_settings: { context_extensions: context } }) } };
  },
  resources: filterServiceCluster,
};
