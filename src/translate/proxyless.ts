import { isIP } from 'node:net';
import { Header } from '../contract/filter-wire.js';
import type { GatewayIR, LiveVersion, ModelIR } from '../ir/types.js';
import { duration, typed } from '../proto/codec.js';
import { configSource } from '../resources/config-source.js';
import { TypeUrl, type ResourceInput } from '../resources/types.js';
import { mapChanged } from '../resources/window.js';
import { joined } from '../resources/segments.js';
import { HCM_TYPE, ROUTER_TYPE } from './listeners.js';

/**
 * The resources proxyless gRPC clients (grpc-go, grpc-java, grpc-js-xds) get for each Model with
 * `proxyless.target`: an API listener named after the target (what `xds:///<target>` resolves), a route
 * configuration of the same name with the model's weighted split and version pins, and one cluster per live
 * version with its endpoint. The weights are the IR's, the same Envoy's routes carry.
 *
 * What gRPC clients accept differs from Envoy, and decides the shapes here:
 * - the listener's HCM takes its routes over RDS from ADS (the clients' only transport), and its HTTP filters
 *   end with the router;
 * - one virtual host whose domains hold the target, since the clients match it against what they dialled;
 * - clusters are EDS (an IP endpoint) or LOGICAL_DNS (a host name), never STATIC or STRICT_DNS, balanced
 *   ROUND_ROBIN (a version has one endpoint, so the policy's loadBalancer has nothing to choose from);
 * - every locality of a ClusterLoadAssignment has a locality and a load_balancing_weight (grpc-go silently
 *   never becomes READY without one); weighted_clusters lists only versions with a weight above 0.
 * Envoy-only features are left out: the mirror, retries (HTTP retry conditions), health checks, the sticky
 * hash header (a gRPC client picks per call) and the 404/503 answers (a gRPC client fails the call
 * UNAVAILABLE when no route matches). Pure and deterministic.
 */

/** The locality of every proxyless endpoint: gRPC requires one, and Flowgate has no topology to say more. */
export const PROXYLESS_LOCALITY = { region: 'flowgate', zone: 'default' } as const;

const ads = configSource('ads');

function apiListener(target: string): ResourceInput {
  return {
    typeUrl: TypeUrl.Listener,
    name: target,
    message: {
      name: target,
      api_listener: {
        api_listener: typed(HCM_TYPE, {
          stat_prefix: target,
          rds: { route_config_name: target, config_source: ads },
          http_filters: [{ name: 'envoy.filters.http.router', typed_config: typed(ROUTER_TYPE, {}) }],
        }),
      },
    },
  };
}

function action(model: ModelIR, target: { cluster: string } | { weighted_clusters: object }): object {
  const timeoutMs = model.settings.timeoutMs;
  // A deadline for calls that set none (gRFC A31); 0 means no timeout, as on Envoy's routes.
  return { ...target, ...(timeoutMs > 0 && { max_stream_duration: { max_stream_duration: duration(timeoutMs) } }) };
}

function routeConfiguration(model: ModelIR, target: string): ResourceInput {
  const match = { prefix: model.grpcService !== undefined ? `/${model.grpcService}/` : '' };
  const routes: object[] = [];
  if (model.pinning) {
    for (const l of model.live) {
      routes.push({ name: `pin-v${l.version}`, match: { ...match, headers: [{ name: Header.pinVersion, string_match: { exact: l.version } }] }, route: action(model, { cluster: l.cluster }) });
    }
    for (const [alias, version] of Object.entries(model.pinnableAliases).sort(([a], [b]) => (a < b ? -1 : 1))) {
      const l = model.live.find((v) => v.version === version);
      if (l) routes.push({ name: `pin-${alias}`, match: { ...match, headers: [{ name: Header.pinAlias, string_match: { exact: alias } }] }, route: action(model, { cluster: l.cluster }) });
    }
  }
  const weighted = model.live.filter((l) => l.weight > 0);
  const [only] = weighted;
  routes.push({
    name: 'split',
    match,
    route: action(model, weighted.length === 1 && only ? { cluster: only.cluster } : { weighted_clusters: { clusters: weighted.map((l) => ({ name: l.cluster, weight: { value: l.weight } })) } }),
  });
  return { typeUrl: TypeUrl.RouteConfiguration, name: target, message: { name: target, virtual_hosts: [{ name: target, domains: [target], routes }] } };
}

function versionResources(l: LiveVersion): ResourceInput[] {
  const endpoint = { address: { socket_address: { address: l.address.host, port_value: l.address.port } } };
  const locality = { locality: PROXYLESS_LOCALITY, load_balancing_weight: { value: 1 }, lb_endpoints: [{ endpoint }] };
  if (isIP(l.address.host) === 0) {
    // A host name: the client resolves it itself (LOGICAL_DNS is the one DNS cluster type gRPC supports).
    return [{ typeUrl: TypeUrl.Cluster, name: l.cluster, message: { name: l.cluster, type: 'LOGICAL_DNS', lb_policy: 'ROUND_ROBIN', load_assignment: { cluster_name: l.cluster, endpoints: [locality] } } }];
  }
  return [
    { typeUrl: TypeUrl.Cluster, name: l.cluster, message: { name: l.cluster, type: 'EDS', eds_cluster_config: { eds_config: ads, service_name: l.cluster }, lb_policy: 'ROUND_ROBIN' } },
    { typeUrl: TypeUrl.ClusterLoadAssignment, name: l.cluster, message: { cluster_name: l.cluster, endpoints: [locality] } },
  ];
}

/** Every resource of the proxyless snapshot: per proxyless model with a live version, its listener, routes, clusters and endpoints. */
export function translateProxyless(ir: GatewayIR): ResourceInput[] {
  // A model that is the same object at the same place as in the last IR has the same resources (no read of it).
  const changes = { removed: [] as (readonly ResourceInput[])[], added: [] as (readonly ResourceInput[])[] };
  const perModel = lastProxyless ? mapChanged(lastProxyless.models, lastProxyless.perModel, ir.models, modelResources, changes) : ir.models.map(modelResources);
  // Only models without proxyless resources changed (before and after): the last list (no join of every model's).
  const same = lastProxyless !== undefined && changes.removed.every((r) => r === NOTHING) && changes.added.every((r) => r === NOTHING);
  const out = same && lastProxyless ? lastProxyless.out : joined(perModel);
  lastProxyless = { models: ir.models, perModel, out };
  return out;
}

let lastProxyless: { readonly models: readonly ModelIR[]; readonly perModel: readonly (readonly ResourceInput[])[]; readonly out: ResourceInput[] } | undefined;

const NOTHING: readonly ResourceInput[] = [];

/** One model's proxyless resources. */
function modelResources(model: ModelIR): readonly ResourceInput[] {
  // No live version: no listener, so clients fail their calls UNAVAILABLE (the resource does not exist).
  if (!model.proxyless || model.live.length === 0) return NOTHING;
  const out = [apiListener(model.proxyless.target), routeConfiguration(model, model.proxyless.target)];
  for (const l of model.live) out.push(...versionResources(l));
  return out;
}

/** Whether an IR has anything for proxyless clients. */
export function hasProxylessTargets(ir: GatewayIR): boolean {
  return ir.models.some((m) => m.proxyless !== undefined);
}
