import { typed } from '../../src/proto/codec.js';
import { configSource } from '../../src/resources/config-source.js';
import { TypeUrl } from '../../src/resources/types.js';
import type { ResourceInput } from '../../src/xds/snapshot.js';

/**
 * Hand-built xDS resources for proxyless gRPC clients, in the shape both grpc-go and grpc-js accept:
 * an API listener named after the target, an RDS route configuration with one weighted route, and one
 * EDS cluster (ADS config source, ROUND_ROBIN) with one loopback endpoint per version.
 */

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

export interface ProxylessService {
  /** The name clients dial as xds:///<target>: the listener's name and the virtual host's domain. */
  readonly target: string;
  /** Weight per cluster; a cluster at 0 stays defined (and keeps its endpoints) but gets no calls. */
  readonly split: Readonly<Record<string, number>>;
  /** Loopback port per cluster. */
  readonly ports: Readonly<Record<string, number>>;
}

/** The listener, route configuration, clusters and endpoints that route `target` by `split`. */
export function proxylessResources(service: ProxylessService): ResourceInput[] {
  const ads = configSource('ads');
  const routeName = `${service.target}-routes`;
  const out: ResourceInput[] = [
    {
      typeUrl: TypeUrl.Listener,
      name: service.target,
      message: {
        name: service.target,
        api_listener: {
          api_listener: typed(HCM, {
            stat_prefix: service.target,
            rds: { route_config_name: routeName, config_source: ads },
            // grpc-go NACKs an API listener without HTTP filters; the router must be the last one.
            http_filters: [{ name: 'router', typed_config: typed(ROUTER, {}) }],
          }),
        },
      },
    },
    {
      typeUrl: TypeUrl.RouteConfiguration,
      name: routeName,
      message: {
        name: routeName,
        virtual_hosts: [
          {
            name: service.target,
            domains: [service.target],
            routes: [
              {
                match: { prefix: '' },
                route: {
                  weighted_clusters: { clusters: Object.entries(service.split).map(([name, weight]) => ({ name, weight: { value: weight } })) },
                },
              },
            ],
          },
        ],
      },
    },
  ];
  for (const [name, port] of Object.entries(service.ports)) {
    out.push(
      { typeUrl: TypeUrl.Cluster, name, message: { name, type: 'EDS', eds_cluster_config: { eds_config: ads }, lb_policy: 'ROUND_ROBIN' } },
      {
        typeUrl: TypeUrl.ClusterLoadAssignment,
        name,
        message: {
          cluster_name: name,
          endpoints: [
            {
              // grpc-go drops a locality without a weight (and NACKs one without a locality).
              locality: { region: 'local', zone: 'a' },
              load_balancing_weight: { value: 1 },
              lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }],
            },
          ],
        },
      },
    );
  }
  return out;
}
