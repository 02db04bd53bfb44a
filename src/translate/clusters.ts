import { isIP } from 'node:net';
import type { GatewayIR, ModelIR, UpstreamAddress, VersionProcessing } from '../ir/types.js';
import { duration, struct, typed } from '../proto/codec.js';
import { configSource, type ConfigSourceMode } from '../resources/config-source.js';
import { TypeUrl, type ResourceInput } from '../resources/types.js';
import { httpFilterResources } from './http-filters/index.js';
import { llmClusterFields, llmClusters } from './llm-clusters.js';
import { tracingCluster } from './tracing.js';
import { versionProcessingOptions } from './version-ext-proc.js';
import { pipelineCluster } from './pipelines.js';
import { servedBySplit, splitClusters } from './eds-split.js';
import { listChanges, mapChanged, recordChanges, sharedChanges, type ListChanges } from '../resources/window.js';
import { copyInto } from '../objects.js';

/**
 * One Envoy cluster per routed model version (live and mirror). Versions served at an IP address get an EDS
 * cluster (its endpoints come from endpoints.ts), so a moved endpoint is an EDS push that leaves the cluster
 * (and its connection pools and health state) alone; versions served at a DNS name get a STRICT_DNS cluster.
 */

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const HTTP_PROTOCOL_OPTIONS_TYPE = `type.googleapis.com/${HTTP_PROTOCOL_OPTIONS}`;

const LB_POLICY = { least_request: 'LEAST_REQUEST', round_robin: 'ROUND_ROBIN', random: 'RANDOM' } as const;

export interface ClusterTarget {
  readonly model: ModelIR;
  readonly version: string;
  readonly cluster: string;
  readonly address: UpstreamAddress;
  readonly processing?: VersionProcessing | undefined;
}

const targetsMemo = new WeakMap<GatewayIR, ClusterTarget[]>();

/** Every (model, version) that needs a cluster, once each, by cluster name (one list per IR object: never to be changed). */
export function clusterTargets(ir: GatewayIR): readonly ClusterTarget[] {
  let targets = targetsMemo.get(ir);
  if (!targets) {
    targets = buildTargets(ir);
    targetsMemo.set(ir, targets);
  }
  return targets;
}

/** The targets of the last IR, kept so that the next one reuses the target objects of models that did not change. */
let lastTargets: { readonly models: readonly ModelIR[]; readonly split: GatewayIR['trafficSplit']; readonly targets: readonly ClusterTarget[] } | undefined;

function buildTargets(ir: GatewayIR): ClusterTarget[] {
  // The split mode decides which models have version clusters: a change of it rebuilds every target.
  const last = lastTargets?.split === ir.trafficSplit ? lastTargets : undefined;
  const changes = last ? sharedChanges(last.models, ir.models) : undefined;
  const targets = (last && changes && patchedTargets(ir, last.targets, changes)) || allTargets(ir, ir.models);
  lastTargets = { models: ir.models, split: ir.trafficSplit, targets };
  return targets;
}

/** One model's targets: its live versions, and its mirror unless a live version has its cluster. */
function modelTargets(ir: GatewayIR, model: ModelIR): ClusterTarget[] {
  // A model whose split is carried by its EDS cluster (eds-split.ts) needs no cluster per live version.
  const split = servedBySplit(ir, model);
  const out: ClusterTarget[] = split ? [] : model.live.map((l) => ({ model, version: l.version, cluster: l.cluster, address: l.address, processing: l.processing }));
  const m = model.mirror;
  if (m && (split || !model.live.some((l) => l.cluster === m.cluster))) out.push({ model, version: m.version, cluster: m.cluster, address: m.address, processing: m.processing });
  return out;
}

const byCluster = (a: ClusterTarget, b: ClusterTarget): number => (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0);

function allTargets(ir: GatewayIR, models: readonly ModelIR[]): ClusterTarget[] {
  const byName = new Map<string, ClusterTarget>();
  for (const model of models) {
    // A model whose split is carried by its EDS cluster (eds-split.ts) needs no cluster per live version.
    if (!servedBySplit(ir, model)) for (const l of model.live) byName.set(l.cluster, { model, version: l.version, cluster: l.cluster, address: l.address, processing: l.processing });
    const m = model.mirror;
    if (m && !byName.has(m.cluster)) byName.set(m.cluster, { model, version: m.version, cluster: m.cluster, address: m.address, processing: m.processing });
  }
  return [...byName.values()].sort(byCluster);
}

/** The first index whose cluster is not below `cluster` (targets are sorted by cluster). */
function lowerBound(targets: readonly ClusterTarget[], cluster: string): number {
  let lo = 0;
  let hi = targets.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((targets[mid] as ClusterTarget).cluster < cluster) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The last targets with the changed models' replaced (in place of a sort); undefined when two models claim a cluster. */
function patchedTargets(ir: GatewayIR, before: readonly ClusterTarget[], changes: ListChanges<ModelIR>): ClusterTarget[] | undefined {
  const targets = [...before];
  for (const model of changes.removed) {
    for (const cluster of [...model.live.map((l) => l.cluster), ...(model.mirror ? [model.mirror.cluster] : [])]) {
      const i = lowerBound(targets, cluster);
      if (targets[i]?.cluster === cluster && targets[i]?.model === model) targets.splice(i, 1);
    }
  }
  for (const model of changes.added) {
    for (const t of modelTargets(ir, model)) {
      const i = lowerBound(targets, t.cluster);
      if (targets[i]?.cluster === t.cluster) return undefined;
      targets.splice(i, 0, t);
    }
  }
  return targets;
}

/**
 * The endpoint of a model version, carrying the version in its metadata: answers read it for the
 * x-flowgate-model-version header, so only an answer a version produced names one.
 */
export function lbEndpoints(t: ClusterTarget): object[] {
  return [
    {
      endpoint: { address: { socket_address: { address: t.address.host, port_value: t.address.port } } },
      metadata: { filter_metadata: { flowgate: struct({ model: t.model.name, version: t.version }) } },
    },
  ];
}

/** A version's cluster (without the edge buffer limit and the LLM fields translateClusters adds). */
export function clusterMessage(t: ClusterTarget, mode: ConfigSourceMode, ir: GatewayIR): Record<string, unknown> {
  const s = t.model.settings;
  const eds = usesEds(t.address);
  const message: Record<string, unknown> = {
    name: t.cluster,
    connect_timeout: duration(s.connectTimeoutMs),
    lb_policy: LB_POLICY[s.loadBalancer],
    metadata: { filter_metadata: { flowgate: struct({ model: t.model.name, registered_model: t.model.registeredModel, version: t.version }) } },
    common_lb_config: { healthy_panic_threshold: { value: 50 } },
  };
  // Copied in, not spread: one per version cluster at every build (src/objects.ts).
  copyInto(message, versionProcessingOptions(ir, t.model, t.version, t.processing));
  if (eds) {
    message.type = 'EDS';
    message.eds_cluster_config = { eds_config: configSource(mode), service_name: t.cluster };
  } else {
    message.type = 'STRICT_DNS';
    message.dns_lookup_family = 'V4_PREFERRED';
    message.load_assignment = { cluster_name: t.cluster, endpoints: [{ lb_endpoints: lbEndpoints(t) }] };
  }
  const cb = s.circuitBreakers;
  if (cb) {
    message.circuit_breakers = {
      thresholds: [
        {
          priority: 'DEFAULT',
          ...(cb.maxConnections !== undefined && { max_connections: { value: cb.maxConnections } }),
          ...(cb.maxPendingRequests !== undefined && { max_pending_requests: { value: cb.maxPendingRequests } }),
          ...(cb.maxRequests !== undefined && { max_requests: { value: cb.maxRequests } }),
          ...(cb.maxRetries !== undefined && { max_retries: { value: cb.maxRetries } }),
        },
      ],
    };
  }
  const od = s.outlierDetection;
  if (od) {
    message.outlier_detection = {
      ...(od.consecutive5xx !== undefined && { consecutive_5xx: { value: od.consecutive5xx } }),
      ...(od.intervalMs !== undefined && { interval: duration(od.intervalMs) }),
      ...(od.baseEjectionTimeMs !== undefined && { base_ejection_time: duration(od.baseEjectionTimeMs) }),
      ...(od.maxEjectionPercent !== undefined && { max_ejection_percent: { value: od.maxEjectionPercent } }),
    };
  }
  const grpc = t.model.protocol === 'grpc';
  if (grpc) {
    // gRPC needs HTTP/2 to the version whatever the client spoke to Envoy.
    message.typed_extension_protocol_options = { [HTTP_PROTOCOL_OPTIONS]: typed(HTTP_PROTOCOL_OPTIONS_TYPE, { explicit_http_config: { http2_protocol_options: {} } }) };
  }
  const hc = s.healthCheck;
  if (hc) {
    message.health_checks = [
      {
        timeout: duration(hc.timeoutMs),
        interval: duration(hc.intervalMs),
        healthy_threshold: { value: hc.healthyThreshold },
        unhealthy_threshold: { value: hc.unhealthyThreshold },
        ...(grpc ? { grpc_health_check: {} } : { http_health_check: { path: t.processing?.healthCheckPath ?? hc.path } }),
      },
    ];
  }
  return message;
}

/**
 * What a translator made of a model's version, kept per ModelIR object: the IR hands back the same object for
 * a model that did not change, so the same resource object (and so its encoded bytes) is reused.
 */
export type VersionMemo = WeakMap<ModelIR, Map<string, Map<string, ResourceInput>>>;

const clusterMemo: VersionMemo = new WeakMap();

/** The memoised resource of target `t` in `context` (what else it depends on), made by `make` the first time. */
export function memoised(memo: VersionMemo, t: ClusterTarget, context: string, make: () => ResourceInput): ResourceInput {
  let byContext = memo.get(t.model);
  if (!byContext) {
    byContext = new Map();
    memo.set(t.model, byContext);
  }
  let byCluster = byContext.get(context);
  if (!byCluster) {
    byCluster = new Map();
    byContext.set(context, byCluster);
  }
  let r = byCluster.get(t.cluster);
  if (!r) {
    r = make();
    byCluster.set(t.cluster, r);
  }
  return r;
}

/** The version clusters last made per mode, with the targets and context they were made for. */
const lastClusters = new Map<
  ConfigSourceMode,
  { readonly context: string; readonly targets: readonly ClusterTarget[]; readonly versions: readonly ResourceInput[]; readonly others: readonly ResourceInput[]; readonly out: readonly ResourceInput[] }
>();

/** Whether a version's endpoints come over EDS (an IP address) or from DNS (a name). */
export function usesEds(address: UpstreamAddress): boolean {
  return isIP(address.host) !== 0;
}

/** A version's cluster (a new object, completed in place) with the LLM fields and the edge buffer limit. */
function withEdgeFields(ir: GatewayIR, t: ClusterTarget, message: Record<string, unknown>): Record<string, unknown> {
  copyInto(message, llmClusterFields(ir, t));
  message.per_connection_buffer_limit_bytes = { value: ir.edge.bufferLimitBytes };
  return message;
}

/** The clusters of the IR: one per model version, plus what the HTTP filters and tracing need. */
export function translateClusters(ir: GatewayIR, mode: ConfigSourceMode): ResourceInput[] {
  // Besides its model, a version's cluster reads only these of the IR: the key of its memo with the mode.
  const context = `${mode}\u0000${ir.edge.bufferLimitBytes}\u0000${JSON.stringify(ir.filterService ?? null)}`;
  const targets = clusterTargets(ir);
  const last = lastClusters.get(mode);
  const make = (t: ClusterTarget): ResourceInput =>
    memoised(clusterMemo, t, context, () => ({
      typeUrl: TypeUrl.Cluster,
      name: t.cluster,
      // Edge guidance: bounded buffers per upstream connection (bodies still stream; a route that must read a
      // whole body raises its own request limit).
      message: withEdgeFields(ir, t, clusterMessage(t, mode, ir)),
    }));
  // A target that is the same object as last time (its model did not change) has the same cluster.
  const changes = { removed: [] as ResourceInput[], added: [] as ResourceInput[] };
  const versions = last && last.context === context ? mapChanged(last.targets, last.versions, targets, make, changes) : targets.map(make);
  const others = [...splitClusters(ir, mode), ...llmClusters(ir), ...httpFilterResources(ir), ...tracingCluster(ir), ...pipelineCluster(ir)];
  const out = versions.concat(others);
  // What changed from the last list of this mode is known here: handed to the snapshot and the consistency check.
  const otherChanges = last && last.context === context ? listChanges(last.others, others, Infinity) : undefined;
  if (last && otherChanges) recordChanges(last.out, out, { removed: [...changes.removed, ...otherChanges.removed], added: [...changes.added, ...otherChanges.added] });
  lastClusters.set(mode, { context, targets, versions, others, out });
  return out;
}
