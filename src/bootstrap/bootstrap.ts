import { isIP } from 'node:net';
import { duration, encodeMessage, struct, typed } from '../proto/codec.js';
import { toEnvoyJson } from '../proto/json.js';
import { upstreamTls, type UpstreamTlsFiles } from '../translate/tls.js';
import { configSource, XDS_CLUSTER, type ConfigSourceMode } from '../resources/config-source.js';

/**
 * Envoy bootstraps that point an Envoy at Flowgate's xDS server: ADS or one stream per resource type,
 * state of the world or delta. The bootstrap is checked against Envoy's Bootstrap proto before it is printed.
 */

const BOOTSTRAP = 'envoy.config.bootstrap.v3.Bootstrap';
const HTTP_PROTOCOL_OPTIONS = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

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
  readonly adminAddress?: string;
  readonly adminPort?: number;
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
      address: { socket_address: { address: options.adminAddress ?? '127.0.0.1', port_value: options.adminPort ?? 9901 } },
    },
    overload_manager: overloadManager(options),
    dynamic_resources: {
      ...(ads ? { ads_config: transport.api_config_source } : {}),
      lds_config: source,
      cds_config: source,
    },
    static_resources: {
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

/** The bootstrap as Envoy-readable JSON (durations as "1s", Any with @type), validated against the proto. */
export function envoyBootstrapJson(options: BootstrapOptions): Record<string, unknown> {
  return toEnvoyJson(BOOTSTRAP, encodeMessage(BOOTSTRAP, envoyBootstrap(options)));
}
