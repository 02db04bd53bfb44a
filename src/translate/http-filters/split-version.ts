import { Header } from '../../contract/filter-wire.js';
import type { GatewayIR } from '../../ir/types.js';
import { typed } from '../../proto/codec.js';
import { servedBySplit, SPLIT_VERSION_KEY } from '../eds-split.js';
import type { HttpFilterTranslator } from './types.js';

const HEADER_TO_METADATA = 'type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config';

/**
 * The version a request is pinned to, as the subset load balancer of a split cluster reads it
 * (src/translate/eds-split.ts): the header_to_metadata filter copies the route-version header, set only by
 * ext_authz (clients' copies are stripped at the listener), into the request's `envoy.lb` metadata. Last
 * before the router, so it sees what ext_authz set.
 */
export const splitVersion: HttpFilterTranslator = {
  name: 'split-version',
  listenerFilters(ir: GatewayIR, models) {
    // No model is served by a split cluster unless the gateway splits by endpoints (no walk on every change).
    if (ir.trafficSplit !== 'endpoints') return [];
    const names = new Set(models.map((m) => m.name));
    if (!ir.models.some((m) => names.has(m.name) && servedBySplit(ir, m))) return [];
    return [
      {
        name: 'flowgate.split-version',
        typed_config: typed(HEADER_TO_METADATA, {
          request_rules: [{ header: Header.routeVersion, on_header_present: { metadata_namespace: 'envoy.lb', key: SPLIT_VERSION_KEY, type: 'STRING' }, remove: false }],
        }),
      },
    ];
  },
  routeConfig: () => ({}),
  resources: () => [],
};
