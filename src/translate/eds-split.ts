import type { GatewayIR, LiveVersion, ModelIR } from '../ir/types.js';
import { struct } from '../proto/codec.js';
import type { ConfigSourceMode } from '../resources/config-source.js';
import { TypeUrl, type ResourceInput } from '../resources/types.js';
import { clusterMessage, usesEds } from './clusters.js';

/**
 * Gateway.traffic.split: endpoints. Per model, one EDS cluster `split_<model>` whose ClusterLoadAssignment
 * holds every live version's endpoint with load_balancing_weight = the version's weight: the model's routes
 * name only that cluster, so moving an alias (or a rollout step) changes one small ClusterLoadAssignment and
 * neither the route configuration nor the clusters.
 *   - Unpinned requests: the cluster's fallback is the default subset (every version with a weight above 0),
 *     balanced by weighted round robin (exact shares), or by Maglev on the caller's sticky header for a
 *     sticky model (a caller stays on its version; a weight change moves few callers).
 *   - Pins: ext_authz sets x-flowgate-route-version as today; the header_to_metadata filter
 *     (http-filters/split-version.ts) copies it into the `envoy.lb` request metadata, and the subset load
 *     balancer sends the request to the endpoint whose `envoy.lb` metadata has that version. A version the
 *     Envoy does not have yet (the filter policy moved first) falls back to the split, as the route table does.
 * Models this cannot serve keep the weighted clusters of routes.ts: see servedBySplit.
 */

/** The `envoy.lb` metadata keys: the version (what pins select), and the mark of the versions with a share. */
const LB_NAMESPACE = 'envoy.lb';
export const SPLIT_VERSION_KEY = 'version';
const WEIGHTED_KEY = 'weighted';

/** The EDS cluster carrying a model's split (no `model_` prefix: parseClusterName must never read it as a version's). */
export function splitClusterName(model: string): string {
  return `split_${model}`;
}

/**
 * Whether the model's split is carried by its EDS cluster: the Gateway asks for it, the model has a live
 * version, and none of them needs a cluster of its own: an address given as a DNS name (EDS takes IPs), or
 * per-version body processing (a cluster-level ext_proc). LLM models keep their per-version clusters: their
 * fallback chains and cooldown are aggregate clusters over them. A Rollout's steps are weight changes like
 * any other (its analysis reads each version's traffic from the access log's host tags, access-log.ts),
 * unless the model retries.
 */
export function servedBySplit(ir: GatewayIR, model: ModelIR): boolean {
  if (ir.trafficSplit !== 'endpoints' || model.llm !== undefined || model.live.length === 0) return false;
  // A retry picks a host again, so an unpinned retry may land on another version: a rollout would then judge
  // the canary on what the stable version answered for it. Such models keep a cluster per version.
  if (model.rollout !== undefined && (model.settings.retries?.attempts ?? 0) > 0) return false;
  return model.live.every((l) => usesEds(l.address) && l.processing === undefined);
}

/**
 * The route hash of a sticky model's split: the caller's own sticky header. Not the filter service's
 * x-flowgate-sticky-hash, which the weighted clusters read at route match: every route removes that header,
 * and real Envoy (1.40) had removed it by the time Maglev hashed (callers then moved between versions).
 * A credential header is refused as the sticky header in this mode (src/policy/split-checks.ts) for the same reason.
 */
export function splitHashPolicy(model: ModelIR): object[] | undefined {
  return model.sticky ? [{ header: { header_name: model.sticky.header } }] : undefined;
}

function splitCluster(ir: GatewayIR, model: ModelIR, mode: ConfigSourceMode): object {
  const name = splitClusterName(model.name);
  const [first] = model.live;
  // The model's settings (timeouts, breakers, outlier detection, health checks, HTTP/2 for gRPC) as a version
  // cluster has them; only naming, balancing and metadata differ.
  const base = clusterMessage({ model, version: '', cluster: name, address: (first as LiveVersion).address }, mode, ir);
  return {
    ...base,
    // Every version has one endpoint: the policy's loadBalancer chose among a version's endpoints, here the
    // balancer chooses the version, and only these two honour endpoint weights exactly.
    lb_policy: model.sticky ? 'MAGLEV' : 'ROUND_ROBIN',
    metadata: { filter_metadata: { flowgate: struct({ model: model.name, registered_model: model.registeredModel }) } },
    lb_subset_config: {
      fallback_policy: 'DEFAULT_SUBSET',
      default_subset: struct({ [WEIGHTED_KEY]: true }),
      subset_selectors: [{ keys: [SPLIT_VERSION_KEY] }],
    },
  };
}

/** The endpoints of a model's split: one per live version, weighted; a version at weight 0 is reached by a pin only. */
function splitLoadAssignment(model: ModelIR): object {
  return {
    cluster_name: splitClusterName(model.name),
    endpoints: [
      {
        lb_endpoints: model.live.map((l) => ({
          endpoint: { address: { socket_address: { address: l.address.host, port_value: l.address.port } } },
          // Envoy refuses a weight of 0: such a version is left out of the default subset instead.
          load_balancing_weight: { value: Math.max(1, l.weight) },
          metadata: {
            filter_metadata: {
              flowgate: struct({ model: model.name, version: l.version }),
              [LB_NAMESPACE]: struct({ [SPLIT_VERSION_KEY]: l.version, ...(l.weight > 0 && { [WEIGHTED_KEY]: true }) }),
            },
          },
        })),
      },
    ],
  };
}

/** Per ModelIR object (the IR reuses the object of a model that did not change), by context. */
const clusterMemo = new WeakMap<ModelIR, Map<string, ResourceInput>>();
const endpointMemo = new WeakMap<ModelIR, ResourceInput>();

/** The split clusters of the models servedBySplit. */
export function splitClusters(ir: GatewayIR, mode: ConfigSourceMode): ResourceInput[] {
  if (ir.trafficSplit !== 'endpoints') return [];
  const context = `${mode}\u0000${ir.edge.bufferLimitBytes}`;
  return ir.models
    .filter((m) => servedBySplit(ir, m))
    .map((m) => {
      let byContext = clusterMemo.get(m);
      if (!byContext) {
        byContext = new Map();
        clusterMemo.set(m, byContext);
      }
      let r = byContext.get(context);
      if (!r) {
        const name = splitClusterName(m.name);
        r = { typeUrl: TypeUrl.Cluster, name, message: { ...splitCluster(ir, m, mode), per_connection_buffer_limit_bytes: { value: ir.edge.bufferLimitBytes } } };
        byContext.set(context, r);
      }
      return r;
    });
}

/** The ClusterLoadAssignments of the split clusters. */
export function splitLoadAssignments(ir: GatewayIR): ResourceInput[] {
  if (ir.trafficSplit !== 'endpoints') return [];
  return ir.models
    .filter((m) => servedBySplit(ir, m))
    .map((m) => {
      let r = endpointMemo.get(m);
      if (!r) {
        const name = splitClusterName(m.name);
        r = { typeUrl: TypeUrl.ClusterLoadAssignment, name, message: splitLoadAssignment(m) };
        endpointMemo.set(m, r);
      }
      return r;
    });
}
