/**
 * How an Envoy fetches the RDS and EDS resources that listeners and clusters refer to. Envoy has no "the
 * server that sent this" config source, so resources name the Envoy's own xDS mode: ADS, or a per-type
 * gRPC subscription (state of the world or delta) through the bootstrap's xDS cluster. The bootstrap
 * Flowgate prints records the mode in node metadata (`flowgate.config_source`) so the control plane can
 * give each Envoy resources that match it.
 */

/** The three ways an Envoy can be subscribed. */
export type ConfigSourceMode = 'ads' | 'grpc' | 'delta-grpc';

export const CONFIG_SOURCE_MODES: readonly ConfigSourceMode[] = ['ads', 'grpc', 'delta-grpc'];

/** The name of the static cluster in Flowgate bootstraps that reaches the control plane. */
export const XDS_CLUSTER = 'flowgate_xds';

/**
 * How an Envoy re-opens an xDS stream the control plane ended (a restart, a replica going away): from 250 ms
 * doubling to 2 s, instead of Envoy's default of 500 ms to 30 s, so a fleet is re-fed within seconds in
 * every mode, not only on ADS (whose one stream Envoy happens to retry sooner).
 */
export const XDS_RETRY_POLICY = { retry_back_off: { base_interval: { seconds: '0', nanos: 250_000_000 }, max_interval: { seconds: '2', nanos: 0 } } };

/** The ConfigSource (plain proto object) resources use in a given mode. */
export function configSource(mode: ConfigSourceMode): object {
  if (mode === 'ads') return { ads: {}, resource_api_version: 'V3' };
  return {
    api_config_source: {
      api_type: mode === 'delta-grpc' ? 'DELTA_GRPC' : 'GRPC',
      transport_api_version: 'V3',
      grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER, retry_policy: XDS_RETRY_POLICY } }],
      set_node_on_first_message_only: true,
    },
    resource_api_version: 'V3',
  };
}

/** The mode an Envoy declared in its node metadata; ADS when it declared none. */
export function configSourceModeOf(metadata: Readonly<Record<string, unknown>>): ConfigSourceMode {
  const declared = (metadata.flowgate as Record<string, unknown> | undefined)?.config_source;
  return declared === 'grpc' || declared === 'delta-grpc' ? declared : 'ads';
}
