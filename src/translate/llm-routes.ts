import { API_METADATA_KEY, FilterName, Header, LLM_ENDPOINT_METADATA_KEY, LLM_ENDPOINT_PATHS, LLM_ENDPOINTS, llmRouteName, type ApiKind, type LlmEndpoint } from '../contract/filter-wire.js';
import { cooldownClusterName, fallbackClusterName, type GatewayIR, type ModelIR, type OpenaiApiIR } from '../ir/types.js';
import { duration, typed } from '../proto/codec.js';
import { perRouteDisables } from './http-filters/index.js';
import { UNROUTED_CLUSTER } from './llm-clusters.js';
import { header, jsonError, modelRoutes, type RouteShape } from './routes.js';

/**
 * The OpenAI API's routes on its listener. A request first matches an entry route of its endpoint
 * (`/v1/chat/completions`, ...), which switches on the LLM router and, so that Envoy creates them for this
 * request, every other Flowgate filter of the listener. The router names the model in `x-flowgate-llm-model`
 * and clears the route cache; the request then matches the model's own routes for that endpoint, built like
 * its classic routes (version routes, pin routes judged by ext_authz, the weighted split, the mirror), which
 * switch off again the filters the model does not use. A model with a fallback chain sends each version's
 * requests to an aggregate cluster (the version, then the chain) and retries on connect failures, resets,
 * 5xx, 429 and silent upstreams, moving one priority down each time; Envoy never retries once the answer has
 * started, so a stream that began is never replayed.
 */

const EXT_PROC_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute';
const PREVIOUS_PRIORITIES = 'type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig';

/** Whose error shape an endpoint's callers expect. */
export function endpointApi(endpoint: LlmEndpoint): ApiKind {
  return endpoint === 'messages' ? 'anthropic' : 'openai';
}

/** The retry policy walking a fallback chain: each retry goes to the next priority (the next model in the chain). */
function fallbackRetries(model: ModelIR): object | undefined {
  const llm = model.llm;
  if (!llm || llm.fallback.length === 0) return undefined;
  return {
    retry_on: 'connect-failure,refused-stream,reset,5xx,retriable-status-codes',
    retriable_status_codes: [429],
    num_retries: { value: llm.fallback.length },
    per_try_idle_timeout: duration(llm.idleTimeoutMs),
    retry_priority: { name: 'envoy.retry_priorities.previous_priorities', typed_config: typed(PREVIOUS_PRIORITIES, { update_frequency: 1 }) },
  };
}

function llmShape(api: OpenaiApiIR, model: ModelIR, endpoint: LlmEndpoint, disables: Readonly<Record<string, object>>): RouteShape {
  const chain = model.llm?.fallback ?? [];
  return {
    name: (suffix) => llmRouteName(endpoint, model.name, suffix),
    prefixRewrite: undefined,
    api: endpointApi(endpoint),
    target: (l) => (chain.length > 0 ? fallbackClusterName(model.name, l.version) : l.cluster),
    retryPolicy: fallbackRetries(model),
    action: { idle_timeout: duration(api.streamIdleTimeoutMs) },
    // The prompt version the router rendered (its request header; Envoy adds nothing when it is empty).
    responseHeaders: [header(Header.servedModel, '%UPSTREAM_METADATA(flowgate:model)%'), ...(model.llm?.prompt?.template ? [header(Header.promptVersion, `%REQ(${Header.promptVersion})%`)] : [])],
    removeHeaders: [Header.llmModel, Header.llmCooldown, Header.llmUsageAdded],
    cooldown: chain.length > 0 ? { header: Header.llmCooldown, cluster: cooldownClusterName(model.name) } : undefined,
    finish: (route) => ({
      ...route,
      typed_per_filter_config: { ...disables, ...(route.typed_per_filter_config as Record<string, object> | undefined) },
      per_request_buffer_limit_bytes: { value: api.maxBodyBytes },
    }),
  };
}

/** An entry route: the LLM router on (told the API), every other disabled filter created but off. */
/**
 * An entry route: the LLM router on (told the API, and for an endpoint which one), every other disabled
 * filter created but off. The router must see the request headers too: Envoy applies the body answer's header
 * changes (the model's routing header) only to headers it still holds.
 */
function entryRoute(api: OpenaiApiIR, name: string, match: object, apiKind: ApiKind, disables: Readonly<Record<string, object>>, endpoint?: LlmEndpoint): object {
  const metadata = [{ key: API_METADATA_KEY, value: apiKind }, ...(endpoint ? [{ key: LLM_ENDPOINT_METADATA_KEY, value: endpoint }] : [])];
  return {
    name,
    match,
    route: { cluster: UNROUTED_CLUSTER, timeout: duration(0) },
    typed_per_filter_config: {
      ...disables,
      [FilterName.llmRouter]: typed(EXT_PROC_ROUTE, { overrides: { grpc_initial_metadata: metadata } }),
    },
    per_request_buffer_limit_bytes: { value: api.maxBodyBytes },
  };
}

/** The answers an endpoint gives before any model is read: a method it does not take, a POST without a body. */
function endpointRefusals(path: string, endpoint: LlmEndpoint): object[] {
  const apiKind = endpointApi(endpoint);
  const refuse = (what: string, match: object, status: number, code: string, message: string, extra: object[] = []): object => {
    const reply = jsonError(status, code, message, {}, apiKind) as { response_headers_to_add: object[] };
    return { name: llmRouteName(endpoint, '*', what), match, ...reply, response_headers_to_add: [...reply.response_headers_to_add, ...extra] };
  };
  return [
    refuse('method-not-allowed', { path, headers: [{ name: ':method', string_match: { exact: 'POST' }, invert_match: true }] }, 405, 'method_not_allowed', `${path} takes POST`, [header('allow', 'POST')]),
    refuse('no-body', { path, headers: [{ name: 'content-length', string_match: { exact: '0' } }] }, 400, 'invalid_request', 'the request has no body; send a JSON object with a model'),
  ];
}

/** The OpenAI API's routes, first in every virtual host of its listener; `listenerFilters` are that listener's HTTP filters. */
export function llmRoutes(ir: GatewayIR, listenerFilters: readonly object[]): object[] {
  const api = ir.openai;
  const models = ir.models.filter((m) => m.llm);
  if (!api || models.length === 0) return [];
  const disables = perRouteDisables(listenerFilters);
  const prefix = api.pathPrefix === '/' ? '' : api.pathPrefix;
  const out: object[] = [];
  for (const endpoint of LLM_ENDPOINTS) {
    const serving = models.filter((m) => m.llm?.endpoints.includes(endpoint));
    if (serving.length === 0) continue;
    const path = prefix + LLM_ENDPOINT_PATHS[endpoint];
    for (const m of serving) {
      out.push(...modelRoutes(m, { path, headers: [{ name: Header.llmModel, string_match: { exact: m.name } }] }, llmShape(api, m, endpoint, disables)));
    }
    out.push(...endpointRefusals(path, endpoint));
    out.push(entryRoute(api, llmRouteName(endpoint, '*', 'entry'), { path }, endpointApi(endpoint), disables, endpoint));
  }
  out.push(entryRoute(api, llmRouteName('models', '*', 'list'), { path: `${prefix}/models` }, 'openai', disables));
  out.push(entryRoute(api, llmRouteName('models', '*', 'get'), { prefix: `${prefix}/models/` }, 'openai', disables));
  out.push({
    name: llmRouteName('unknown', '*', 'no-route'),
    match: { prefix: `${prefix}/` },
    ...jsonError(404, 'unknown_url', `unknown request URL: this gateway serves ${prefix}/chat/completions, ${prefix}/completions, ${prefix}/embeddings, ${prefix}/messages and ${prefix}/models`, {}, 'openai'),
  });
  return out;
}
