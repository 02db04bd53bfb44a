import { isIP } from 'node:net';
import { duration, encodeMessage, struct, typed } from '../proto/codec.js';
import { toEnvoyJson } from '../proto/json.js';
import { upstreamTls, type UpstreamTlsFiles } from '../translate/tls.js';
import { configSource, XDS_CLUSTER, type ConfigSourceMode } from '../resources/config-source.js';

/**
 * Envoy bootstraps that point an Envoy at Flowgate's xDS server: ADS or one stream per resource type,
 * state of the world or delta. The bootstrap is checked against Envoy's Bootstrap proto before it is printed.
 *
 * Envoy's admin interface (config dump, /quitquitquit, /healthcheck/fail, /runtime_modify) is bound to a
 * loopback address only: no bootstrap Flowgate makes exposes it beyond the Envoy's own host. Probes from
 * outside (a kubelet) use the optional health listener instead, which answers GET /ready and nothing else.
 */

const BOOTSTRAP = 'envoy.config.bootstrap.v3.Bootstrap';
const HTTP_PROTOCOL_OPTIONS = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const HEALTH_CHECK = 'type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck';
const ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
/** The health listener's one path. */
export const HEALTH_PATH = '/ready';

/** A bootstrap option that would expose what must stay private (the admin interface on a routable address). */
export class BootstrapOptionError extends Error {
  override readonly name = 'BootstrapOptionError';
}

/** True for addresses only the host itself can reach: 127.0.0.0/8 and ::1. */
export function isLoopbackAddress(address: string): boolean {
  return (isIP(address) === 4 && address.startsWith('127.')) || address === '::1';
}

export interface BootstrapOptions {
  readonly nodeId: string;
  readonly nodeCluster: string;
  /** The xDS server, host:port. */
  readonly xdsHost: string;
  readonly xdsPort: number;
  /** Incremental xDS (DELTA_GRPC) instead of state of the world. */
  readonly delta?: boolean;
  /** One aggregated stream (default) or one stream per resource type. */
  readonly ads?: boolean;
  /** Loopback only (127.0.0.0/8 or ::1); anything else is refused. Default 127.0.0.1. */
  readonly adminAddress?: string;
  readonly adminPort?: number;
  /**
   * A static listener for probes from outside the host: GET /ready answers 200 while Envoy is initialised
   * and not draining (Envoy's health_check filter), everything else 404. Absent: none.
   */
  readonly health?: { readonly address: string; readonly port: number };
  readonly nodeMetadata?: Record<string, unknown>;
  /** TLS to the control plane: files on the Envoy's disk. */
  readonly xdsTls?: XdsTls;
  /** The overload manager's heap bound: Envoy shrinks its heap at 95% and stops accepting requests at 98%. */
  readonly maxHeapBytes?: number;
  /** The most downstream connections Envoy holds at once, over all listeners. */
  readonly maxDownstreamConnections?: number;
}

export const DEFAULT_MAX_HEAP_BYTES = 1024 * 1024 * 1024;
export const DEFAULT_MAX_DOWNSTREAM_CONNECTIONS = 50_000;

const FIXED_HEAP = 'envoy.resource_monitors.fixed_heap';
const DOWNSTREAM_CONNECTIONS = 'envoy.resource_monitors.global_downstream_max_connections';

/** Envoy's edge-proxy guidance: a bounded heap with pressure actions, and a bound on downstream connections. */
function overloadManager(options: BootstrapOptions): object {
  const heapTrigger = (value: number): object => ({ name: FIXED_HEAP, threshold: { value } });
  return {
    refresh_interval: duration(250),
    resource_monitors: [
      {
        name: FIXED_HEAP,
        typed_config: typed('type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig', {
          max_heap_size_bytes: String(options.maxHeapBytes ?? DEFAULT_MAX_HEAP_BYTES),
        }),
      },
      {
        name: DOWNSTREAM_CONNECTIONS,
        typed_config: typed('type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig', {
          max_active_downstream_connections: String(options.maxDownstreamConnections ?? DEFAULT_MAX_DOWNSTREAM_CONNECTIONS),
        }),
      },
    ],
    actions: [
      { name: 'envoy.overload_actions.shrink_heap', triggers: [heapTrigger(0.95)] },
      { name: 'envoy.overload_actions.stop_accepting_requests', triggers: [heapTrigger(0.98)] },
    ],
  };
}

/** How an Envoy verifies the control plane (`ca`) and proves itself to it (`cert` + `key`, for mutual TLS). */
export type XdsTls = UpstreamTlsFiles;

/** The config-source mode resources must use for an Envoy with these options. */
export function bootstrapMode(options: Pick<BootstrapOptions, 'ads' | 'delta'>): ConfigSourceMode {
  if (options.ads ?? true) return 'ads';
  return options.delta ? 'delta-grpc' : 'grpc';
}

/** An Envoy bootstrap (proto plain object) for the given node and xDS mode. */
export function envoyBootstrap(options: BootstrapOptions): object {
  const adminAddress = options.adminAddress ?? '127.0.0.1';
  if (!isLoopbackAddress(adminAddress)) {
    throw new BootstrapOptionError(
      `the Envoy admin address must be loopback (127.0.0.1 or ::1), not ${adminAddress}: the admin interface can stop Envoy and dump its config; probe from outside with the health listener instead`,
    );
  }
  const ads = options.ads ?? true;
  const mode = bootstrapMode(options);
  // The ADS stream itself is always a gRPC api_config_source; only its api_type follows --delta.
  const transport = configSource(options.delta ? 'delta-grpc' : 'grpc') as { api_config_source: object };
  const source = configSource(mode);
  return {
    node: {
      id: options.nodeId,
      cluster: options.nodeCluster,
      metadata: struct({ ...(options.nodeMetadata ?? {}), flowgate: { config_source: mode } }),
    },
    admin: {
      address: { socket_address: { address: adminAddress, port_value: options.adminPort ?? 9901 } },
    },
    overload_manager: overloadManager(options),
    dynamic_resources: {
      ...(ads ? { ads_config: transport.api_config_source } : {}),
      lds_config: source,
      cds_config: source,
    },
    static_resources: {
      ...(options.health && { listeners: [healthListener(options.health)] }),
      clusters: [
        {
          name: XDS_CLUSTER,
          type: isIP(options.xdsHost) ? 'STATIC' : 'STRICT_DNS',
          connect_timeout: duration(1000),
          load_assignment: {
            cluster_name: XDS_CLUSTER,
            endpoints: [
              { lb_endpoints: [{ endpoint: { address: { socket_address: { address: options.xdsHost, port_value: options.xdsPort } } } }] },
            ],
          },
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': typed(HTTP_PROTOCOL_OPTIONS, {
              explicit_http_config: {
                http2_protocol_options: { connection_keepalive: { interval: duration(30_000), timeout: duration(5_000) } },
              },
            }),
          },
          ...(options.xdsTls && { transport_socket: upstreamTls(options.xdsTls, options.xdsHost) }),
        },
      ],
    },
  };
}

/** The probe listener: Envoy's own health state on GET /ready, a 404 for anything else; never the admin interface. */
function healthListener(at: { readonly address: string; readonly port: number }): object {
  return {
    name: 'flowgate_health',
    address: { socket_address: { address: at.address, port_value: at.port } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: typed(HCM, {
              stat_prefix: 'flowgate_health',
              route_config: {
                name: 'flowgate_health',
                virtual_hosts: [{ name: 'health', domains: ['*'], routes: [{ match: { prefix: '/' }, direct_response: { status: 404 } }] }],
              },
              http_filters: [
                {
                  name: 'envoy.filters.http.health_check',
                  typed_config: typed(HEALTH_CHECK, {
                    pass_through_mode: { value: false },
                    headers: [{ name: ':path', string_match: { exact: HEALTH_PATH } }],
                  }),
                },
                { name: 'envoy.filters.http.router', typed_config: typed(ROUTER, {}) },
              ],
            }),
          },
        ],
      },
    ],
  };
}

/** The bootstrap as Envoy-readable JSON (durations as "1s", Any with @type), validated against the proto. */
export function envoyBootstrapJson(options: BootstrapOptions): Record<string, unknown> {
  return toEnvoyJson(BOOTSTRAP, encodeMessage(BOOTSTRAP, envoyBootstrap(options)));
}
