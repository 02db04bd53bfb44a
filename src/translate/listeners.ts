import type { GatewayIR, ListenerIR } from '../ir/types.js';
import { typed } from '../proto/codec.js';
import { accessLogConfig } from './access-log.js';
import { configSource, XDS_CLUSTER, type ConfigSourceMode } from '../resources/config-source.js';
import { TypeUrl, type ResourceInput } from '../resources/types.js';
import { listenerHttpFilters } from './http-filters/index.js';
import { hcmTracing } from './tracing.js';

/**
 * One Envoy listener per policy listener: an HTTP connection manager whose routes come over RDS (the route
 * configuration named after the listener), so a route change never drains the listener's connections.
 */

export const HCM_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

export function listenerMessage(listener: ListenerIR, mode: ConfigSourceMode, filters: readonly object[] = [], tracing?: object): object {
  return {
    name: listener.name,
    address: { socket_address: { address: listener.address, port_value: listener.port } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: typed(HCM_TYPE, {
              stat_prefix: listener.name,
              rds: { route_config_name: listener.name, config_source: configSource(mode) },
              // An edge proxy: the client's address is the peer's, and path-prefix routing sees canonical paths.
              use_remote_address: { value: true },
              normalize_path: { value: true },
              merge_slashes: true,
              path_with_escaped_slashes_action: 'UNESCAPE_AND_REDIRECT',
              generate_request_id: { value: true },
              // Per-model traffic: Envoy streams its access log to the control plane through the bootstrap's xDS cluster.
              access_log: [accessLogConfig(XDS_CLUSTER, listener.name)],
              ...(tracing && { tracing }),
              http_filters: [...filters, { name: 'envoy.filters.http.router', typed_config: typed(ROUTER_TYPE, {}) }],
            }),
          },
        ],
      },
    ],
  };
}

export function translateListeners(ir: GatewayIR, mode: ConfigSourceMode): ResourceInput[] {
  return ir.listeners.map((l) => {
    const models = ir.models.filter((m) => m.routes.some((r) => r.listener === l.name));
    return { typeUrl: TypeUrl.Listener, name: l.name, message: listenerMessage(l, mode, listenerHttpFilters(ir, models), hcmTracing(ir)) };
  });
}
