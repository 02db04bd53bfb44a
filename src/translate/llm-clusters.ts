import type { ClusterTarget } from './clusters.js';
import { cooldownClusterName, fallbackClusterName, type GatewayIR, type LlmProviderIR, type ModelIR } from '../ir/types.js';
import { duration, struct, typed } from '../proto/codec.js';
import { TypeUrl, type ResourceInput } from '../resources/types.js';
import { llmAdapterOptions } from './llm-adapter.js';

/**
 * The clusters of the OpenAI API beyond one per model version: what an LLM version's cluster adds (the LLM
 * adapter in its upstream filters, TLS to a provider), the aggregate clusters that carry fallback chains (a
 * version, then each fallback in order, as priorities Envoy's retries walk with previous_priorities), and an
 * empty cluster the API's entry routes name until the LLM router has picked the model's routes.
 */

const AGGREGATE = 'type.googleapis.com/envoy.extensions.clusters.aggregate.v3.ClusterConfig';
const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

/** The cluster of the API's entry routes: no endpoint, so a request the router did not move is a 503. */
export const UNROUTED_CLUSTER = 'flowgate_llm_unrouted';

/** Retries of a fallback chain are not capped by Envoy's default of 3 in flight: every request must reach its fallback. */
const FALLBACK_MAX_RETRIES = 1_000_000;

/** TLS to a provider: its name checked against the CA bundle, sent as SNI; HTTP/1.1 (no ALPN). */
function providerTls(p: LlmProviderIR): object {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: typed(UPSTREAM_TLS, {
      sni: p.sni,
      common_tls_context: {
        validation_context: { trusted_ca: { filename: p.ca }, match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: p.sni } }] },
      },
    }),
  };
}

/** What an LLM model version's cluster adds to the classic one. */
export function llmClusterFields(ir: GatewayIR, t: ClusterTarget): Record<string, unknown> {
  const llm = t.model.llm;
  if (!llm || !ir.filterService) return {};
  return {
    ...(llm.adapter && { typed_extension_protocol_options: llmAdapterOptions(ir.filterService) }),
    ...(llm.provider && { transport_socket: providerTls(llm.provider) }),
  };
}

/** The clusters a live version's requests try in order: itself, then its model's fallback chain (without itself). */
export function fallbackMembers(model: ModelIR, cluster: string): string[] {
  return [cluster, ...(model.llm?.fallback ?? []).map((f) => f.cluster).filter((c) => c !== cluster)];
}

function aggregate(ir: GatewayIR, model: ModelIR, name: string, members: readonly string[]): ResourceInput {
  const fs = ir.filterService;
  return {
    typeUrl: TypeUrl.Cluster,
    name,
    message: {
      name,
      connect_timeout: duration(model.settings.connectTimeoutMs),
      lb_policy: 'CLUSTER_PROVIDED',
      cluster_type: { name: 'envoy.clusters.aggregate', typed_config: typed(AGGREGATE, { clusters: [...members] }) },
      metadata: { filter_metadata: { flowgate: struct({ model: model.name, fallback: members.slice(1).join(',') }) } },
      circuit_breakers: { thresholds: [{ priority: 'DEFAULT', max_retries: { value: FALLBACK_MAX_RETRIES } }] },
      // Every attempt of a chain may land on a different kind of upstream: the adapter runs on all of them.
      ...(fs && { typed_extension_protocol_options: llmAdapterOptions(fs) }),
    },
  };
}

/** The aggregate clusters of every model with a fallback chain (one per live version, one for its cooldown), and the API's empty cluster. */
export function llmClusters(ir: GatewayIR): ResourceInput[] {
  if (!ir.openai || !ir.models.some((m) => m.llm)) return [];
  const out: ResourceInput[] = [];
  for (const m of ir.models) {
    const chain = m.llm?.fallback ?? [];
    if (chain.length === 0) continue;
    for (const l of m.live) out.push(aggregate(ir, m, fallbackClusterName(m.name, l.version), fallbackMembers(m, l.cluster)));
    out.push(aggregate(ir, m, cooldownClusterName(m.name), chain.map((f) => f.cluster)));
  }
  out.push({ typeUrl: TypeUrl.Cluster, name: UNROUTED_CLUSTER, message: { name: UNROUTED_CLUSTER, type: 'STATIC', connect_timeout: duration(1000), load_assignment: { cluster_name: UNROUTED_CLUSTER, endpoints: [] } } });
  return out;
}
