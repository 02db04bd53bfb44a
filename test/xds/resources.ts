import { duration, typed } from '../../src/proto/codec.js';
import { configSource, type ConfigSourceMode } from '../../src/resources/config-source.js';
import { TypeUrl } from '../../src/resources/types.js';
import type { ResourceInput } from '../../src/xds/snapshot.js';

/** Small Envoy resources for xDS conformance tests: listeners routing to EDS clusters of local upstreams. */

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

/** An HTTP listener on 127.0.0.1:port whose routes come from RDS (`routeConfig`); `hcm` adds connection-manager fields. */
export function httpListener(name: string, port: number, routeConfig: string, mode: ConfigSourceMode, hcm: Record<string, unknown> = {}): ResourceInput {
  return {
    typeUrl: TypeUrl.Listener,
    name,
    message: {
      name,
      address: { socket_address: { address: '127.0.0.1', port_value: port } },
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.http_connection_manager',
              typed_config: typed(HCM, {
                stat_prefix: name,
                rds: { route_config_name: routeConfig, config_source: configSource(mode) },
                http_filters: [{ name: 'envoy.filters.http.router', typed_config: typed(ROUTER, {}) }],
                ...hcm,
              }),
            },
          ],
        },
      ],
    },
  };
}

/** A route configuration sending everything to one cluster. */
export function routeTo(name: string, cluster: string, extra: Record<string, unknown> = {}): ResourceInput {
  return {
    typeUrl: TypeUrl.RouteConfiguration,
    name,
    message: {
      name,
      virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster, timeout: duration(5000) }, ...extra }] }],
    },
  };
}

/** An EDS cluster. */
export function edsCluster(name: string, mode: ConfigSourceMode): ResourceInput {
  return {
    typeUrl: TypeUrl.Cluster,
    name,
    message: { name, type: 'EDS', connect_timeout: duration(1000), eds_cluster_config: { eds_config: configSource(mode) } },
  };
}

/** Endpoints of a cluster: local upstream ports. */
export function endpoints(cluster: string, ports: number[]): ResourceInput {
  return {
    typeUrl: TypeUrl.ClusterLoadAssignment,
    name: cluster,
    message: {
      cluster_name: cluster,
      endpoints: [{ lb_endpoints: ports.map((port) => ({ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } })) }],
    },
  };
}

/** The four ways an Envoy subscribes, as bootstrap options, for suites that run in every mode. */
export const XDS_MODES = [
  { name: 'ADS state of the world', ads: true, delta: false },
  { name: 'ADS delta', ads: true, delta: true },
  { name: 'per-type state of the world', ads: false, delta: false },
  { name: 'per-type delta', ads: false, delta: true },
] as const;

/** A route configuration Envoy's RE2 refuses: an unbalanced parenthesis in a regex match. */
export function badRoute(name: string, cluster: string): ResourceInput {
  return {
    typeUrl: TypeUrl.RouteConfiguration,
    name,
    message: {
      name,
      virtual_hosts: [
        {
          name: 'all',
          domains: ['*'],
          routes: [
            { match: { safe_regex: { regex: '/broken(' } }, route: { cluster } },
            { match: { prefix: '/' }, route: { cluster } },
          ],
        },
      ],
    },
  };
}
