import { INTERNAL_REQUEST_HEADERS } from '../contract/filter-wire.js';
import type { EdgeIR, GatewayIR, ListenerIR } from '../ir/types.js';
import { duration, typed } from '../proto/codec.js';
import { localReplyConfig } from './local-replies.js';
import { accessLogConfig } from './access-log.js';
import { configSource, XDS_CLUSTER, type ConfigSourceMode } from '../resources/config-source.js';
import { TypeUrl, type ResourceInput } from '../resources/types.js';
import { listenerFilterInputs, listenerHttpFilters } from './http-filters/index.js';
import { sharedChanges } from '../resources/window.js';
import { listenerModels, listenerOwners } from './routes.js';
import { hcmTracing } from './tracing.js';

/**
 * One Envoy listener per policy listener: an HTTP connection manager whose routes come over RDS (the route
 * configuration named after the listener), so a route change never drains the listener's connections.
 */

export const HCM_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

const EARLY_HEADER_MUTATION = 'type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation';
const UNDERSCORES = { reject: 'REJECT_REQUEST', drop: 'DROP_HEADER', allow: 'ALLOW' } as const;

/** The listener of one policy listener, serving `filters` (before the router) and its routes over RDS. */
export function listenerMessage(listener: ListenerIR, mode: ConfigSourceMode, edge: EdgeIR, filters: readonly object[] = [], tracing?: object, llmApi = false, hostTags = false): object {
  return {
    name: listener.name,
    address: { socket_address: { address: listener.address, port_value: listener.port } },
    per_connection_buffer_limit_bytes: { value: edge.bufferLimitBytes },
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
              xff_num_trusted_hops: edge.xffNumTrustedHops,
              // Flowgate's own request headers can only come from Flowgate: removed from every client request
              // before routing and before any filter, on every route, filtered or not.
              early_header_mutation_extensions: [
                {
                  name: 'flowgate.strip-internal-headers',
                  typed_config: typed(EARLY_HEADER_MUTATION, { mutations: INTERNAL_REQUEST_HEADERS.map((h) => ({ remove: h })) }),
                },
              ],
              common_http_protocol_options: {
                idle_timeout: duration(edge.connectionIdleTimeoutMs),
                headers_with_underscores_action: UNDERSCORES[edge.headersWithUnderscores],
              },
              http2_protocol_options: {
                max_concurrent_streams: { value: edge.http2.maxConcurrentStreams },
                initial_stream_window_size: { value: edge.http2.initialStreamWindowSize },
                initial_connection_window_size: { value: edge.http2.initialConnectionWindowSize },
              },
              stream_idle_timeout: duration(edge.streamIdleTimeoutMs),
              request_headers_timeout: duration(edge.requestHeadersTimeoutMs),
              local_reply_config: localReplyConfig(llmApi),
              // Per-model traffic: Envoy streams its access log to the control plane through the bootstrap's xDS cluster.
              access_log: [accessLogConfig(XDS_CLUSTER, listener.name, hostTags)],
              ...(tracing && { tracing }),
              http_filters: [...filters, { name: 'envoy.filters.http.router', typed_config: typed(ROUTER_TYPE, {}) }],
            }),
          },
        ],
      },
    ],
  };
}

/** What a listener's HTTP connection manager serves besides its config source. */
interface Served {
  readonly filters: readonly object[];
  readonly llmApi: boolean;
}

/** Once per IR (every mode has the same). */
const servedMemo = new WeakMap<GatewayIR, Map<string, Served>>();

/** What each listener served for the last IR, and the gateway-wide inputs and models it was made from. */
const lastServed = new Map<string, { readonly ir: GatewayIR; readonly served: Served }>();

function served(ir: GatewayIR, listener: string): Served {
  let byListener = servedMemo.get(ir);
  if (!byListener) {
    byListener = new Map();
    servedMemo.set(ir, byListener);
  }
  let s = byListener.get(listener);
  if (!s) {
    const last = lastServed.get(listener);
    s = last && sameFilterInputs(last.ir, ir) ? last.served : { filters: listenerHttpFilters(ir, listenerOwners(ir, listener), listener), llmApi: ir.openai?.listener === listener && listenerModels(ir, listener).some((m) => m.llm) };
    byListener.set(listener, s);
    lastServed.set(listener, { ir, served: s });
  }
  return s;
}

const gatewayInputs = new WeakMap<GatewayIR, string>();

/** What the listener filters read of the IR besides its models (a new IR has new objects for the same settings). */
function gatewayFilterInputs(ir: GatewayIR): string {
  let text = gatewayInputs.get(ir);
  if (text === undefined) {
    text = JSON.stringify([ir.filterService ?? null, ir.openai ?? null, ir.trafficSplit ?? null, ir.listeners]);
    gatewayInputs.set(ir, text);
  }
  return text;
}

/**
 * Whether the listeners' filters of `ir` are those of `last`: the same gateway-wide inputs, and the models
 * that changed read the same by the filters as the ones they replaced (listenerFilterInputs, compared as
 * multisets, since the filters only ask whether some model needs them). A move changes no model's filters:
 * the listeners' HTTP filters are not made again (that walks every model of the listener).
 */
function sameFilterInputs(last: GatewayIR, ir: GatewayIR): boolean {
  if ((last.pipelines ?? []).length > 0 || (ir.pipelines ?? []).length > 0 || gatewayFilterInputs(last) !== gatewayFilterInputs(ir)) return false;
  const changes = sharedChanges(last.models, ir.models);
  if (!changes) return false;
  const balance = new Map<string, number>();
  for (const m of changes.removed) balance.set(listenerFilterInputs(ir, m), (balance.get(listenerFilterInputs(ir, m)) ?? 0) + 1);
  for (const m of changes.added) balance.set(listenerFilterInputs(ir, m), (balance.get(listenerFilterInputs(ir, m)) ?? 0) - 1);
  for (const n of balance.values()) if (n !== 0) return false;
  return true;
}

export function translateListeners(ir: GatewayIR, mode: ConfigSourceMode): ResourceInput[] {
  return ir.listeners.map((l) => {
    const { filters, llmApi } = served(ir, l.name);
    return { typeUrl: TypeUrl.Listener, name: l.name, message: listenerMessage(l, mode, ir.edge, filters, hcmTracing(ir), llmApi, ir.trafficSplit === 'endpoints') };
  });
}
