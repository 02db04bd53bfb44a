/**
 * The names the control plane and the filter service must agree on: headers Envoy and the filter service
 * read or write, the metadata and context keys Envoy sends per route, the rate-limit domain and descriptor
 * keys, and the names of Flowgate's HTTP filters. Both sides import them from here, so a name renamed on one
 * side cannot silently break the other. This module imports nothing.
 */

/** Request and response headers with a meaning to Flowgate. */
export const Header = {
  /** The authenticated consumer, set by ext_authz for the upstream, the rate-limit descriptors and ext_proc. */
  consumer: 'x-flowgate-consumer',
  /** The number Envoy's weighted split of a sticky model reads; set by ext_authz from the caller's sticky key. */
  stickyHash: 'x-flowgate-sticky-hash',
  /** A caller's pin of a model version by number. */
  pinVersion: 'x-model-version',
  /** A caller's pin of a model version by registry alias. */
  pinAlias: 'x-model-alias',
  /** On every answer a model version produced: which version. */
  servedVersion: 'x-flowgate-model-version',
  /**
   * The live version Envoy must route this request to: set by ext_authz (from a valid pin, or because the
   * caller may use only some live versions), matched by the route table. Clients can never send it.
   */
  routeVersion: 'x-flowgate-route-version',
  /** Envoy's request id, carried into the audit log. */
  requestId: 'x-request-id',
  /** On a pipeline route, set by Envoy: the local address the caller reached, where the steps come back. */
  pipelineCallback: 'x-flowgate-pipeline-callback',
  /** On a pipeline route, set by Envoy: the listener the call came in on. */
  pipelineListener: 'x-flowgate-pipeline-listener',
  /**
   * The policy Model an LLM API request is for: set by the LLM router (ext_proc) from the body's `model`,
   * matched by the OpenAI listener's routes. Clients can never send it.
   */
  llmModel: 'x-flowgate-llm-model',
  /** Set by the LLM router while a model's upstream asked to be left alone (a 429 with Retry-After): its routes start at the fallback. */
  llmCooldown: 'x-flowgate-llm-cooldown',
  /** On every LLM answer an upstream produced: the policy Model that served it (after fallback, the fallback's). */
  servedModel: 'x-flowgate-model',
  /** On every answer of a model with `llm.cache`: hit (served from the cache), miss (from the model, maybe stored), bypass (not cached). */
  llmCache: 'x-flowgate-cache',
  /**
   * Set by the LLM router when it asked a stream's upstream for usage (`stream_options.include_usage`) that the
   * caller did not ask for: the route's ext_proc then strips the usage-only chunk from what the caller sees,
   * and removes this header before the request goes upstream. Clients can never send it.
   */
  llmUsageAdded: 'x-flowgate-llm-usage-added',
  /** On LLM answers whose route's ext_proc read them: the filter service's own processing time, in milliseconds. */
  overheadMs: 'x-flowgate-overhead-ms',
  /**
   * The prompt the LLM router rendered into the request, `NAME/VERSION`: set on the request by the router
   * (clients can never send it), copied by Envoy onto the answer.
   */
  promptVersion: 'x-flowgate-prompt-version',
} as const;

/** The values of Header.llmCache. */
export const LLM_CACHE_RESULTS = ['hit', 'miss', 'bypass'] as const;
export type LlmCacheResult = (typeof LLM_CACHE_RESULTS)[number];

/** Every header whose name starts with this is Flowgate's own. */
export const INTERNAL_HEADER_PREFIX = 'x-flowgate-';

/**
 * The request headers only Flowgate may set: every listener removes them from what a client sends, before
 * routing and before any filter runs, so none can be forged on any route, filtered or not.
 */
export const INTERNAL_REQUEST_HEADERS: readonly string[] = [
  Header.consumer,
  Header.stickyHash,
  Header.routeVersion,
  Header.pipelineCallback,
  Header.pipelineListener,
  Header.llmModel,
  Header.llmCooldown,
  Header.llmUsageAdded,
  Header.promptVersion,
];

/** The request headers that carry a caller's credential; the gateway consumes them and never forwards them. */
export const CREDENTIAL_HEADERS = ['authorization', 'x-api-key'] as const;

/** The gRPC initial metadata key Envoy's ext_proc sends per route (ExtProcPerRoute): the model name. */
export const MODEL_METADATA_KEY = 'x-flowgate-model';

/**
 * The gRPC initial metadata key of the cluster-level ext_proc filter (one per version cluster): the model
 * version that cluster serves. Its presence is what tells a version's stream from a route's.
 */
export const VERSION_METADATA_KEY = 'x-flowgate-version';

/** The ext_authz context extension Envoy sends per route (ExtAuthzPerRoute check_settings): the model name. */
export const MODEL_CONTEXT_KEY = 'model';

/**
 * The API a route serves, so the filter service shapes its refusals as that API's clients expect: sent as the
 * ext_authz context extension `api` and the ext_proc initial metadata `x-flowgate-api`. Absent: Flowgate's own.
 */
export const API_CONTEXT_KEY = 'api';

/**
 * The ext_authz context extension that makes Check decide the route's request rate limits itself (one call
 * instead of Check then ShouldRateLimit): the value is RATE_LIMIT_IN_CHECK. Absent (a route whose limits go
 * through Envoy's rate-limit filter, or an Envoy on an older config), Check counts nothing.
 */
export const RATE_LIMIT_CONTEXT_KEY = 'ratelimit';
export const RATE_LIMIT_IN_CHECK = 'check';
export const API_METADATA_KEY = 'x-flowgate-api';

/** The APIs whose error shapes the gateway speaks (src/contract/api-errors.ts). */
export const API_KINDS = ['flowgate', 'openai', 'anthropic'] as const;
export type ApiKind = (typeof API_KINDS)[number];

/** Reads an API kind sent by Envoy; anything unknown is Flowgate's own. */
export function apiKindOf(value: unknown): ApiKind {
  return typeof value === 'string' && (API_KINDS as readonly string[]).includes(value) ? (value as ApiKind) : 'flowgate';
}

/**
 * The ext_proc initial metadata naming which of Flowgate's ext_proc filters a stream comes from: the LLM router
 * in front of the OpenAI listener's routes, or the LLM adapter in an LLM cluster's upstream filters. Absent:
 * the body processors of a model's routes (masking, usage).
 */
export const EXTPROC_ROLE_METADATA_KEY = 'x-flowgate-extproc';
export const ExtprocRole = { llmRouter: 'llm-router', llmUpstream: 'llm-upstream' } as const;

/** The ext_proc initial metadata telling the LLM router which endpoint a request is for (sent by the endpoint's entry route). */
export const LLM_ENDPOINT_METADATA_KEY = 'x-flowgate-llm-endpoint';

/** The ext_proc attributes the LLM adapter asks Envoy for: the picked endpoint's metadata and the route's name. */
export const LLM_UPSTREAM_ATTRIBUTES = ['xds.upstream_host_metadata', 'xds.route_name'] as const;

/** The endpoint metadata namespace and keys naming the model version an endpoint serves. */
export const ENDPOINT_METADATA = { namespace: 'flowgate', model: 'model', version: 'version' } as const;

/** The endpoints of the OpenAI-compatible API (and Anthropic's messages), by name, with their paths below the API prefix. */
export const LLM_ENDPOINTS = ['chat', 'completions', 'embeddings', 'messages'] as const;
export type LlmEndpoint = (typeof LLM_ENDPOINTS)[number];
export const LLM_ENDPOINT_PATHS: Readonly<Record<LlmEndpoint, string>> = {
  chat: '/chat/completions',
  completions: '/completions',
  embeddings: '/embeddings',
  messages: '/messages',
};

/**
 * The name of an LLM route: `llm:<endpoint>:<model>:<what>`. The LLM adapter reads the endpoint from it (the
 * request path may already have been rewritten by an earlier attempt of the same request), and local replies
 * pick their error shape from it.
 */
export function llmRouteName(endpoint: LlmEndpoint | 'models' | 'unknown', model: string, what: string): string {
  return `llm:${endpoint}:${model}:${what}`;
}

/** The endpoint an LLM route name stands for, or undefined for any other route. */
export function llmRouteEndpoint(routeName: string): LlmEndpoint | undefined {
  const m = /^llm:([a-z]+):/.exec(routeName);
  const endpoint = m?.[1];
  return endpoint !== undefined && (LLM_ENDPOINTS as readonly string[]).includes(endpoint) ? (endpoint as LlmEndpoint) : undefined;
}

/**
 * The ext_proc dynamic metadata the filter service attaches to an LLM answer, which Envoy's access log (ALS,
 * or %DYNAMIC_METADATA(flowgate.llm:cost)%) carries: the request's cost in the price table's currency units
 * and the tokens it was priced on. The routes' ext_proc filter lists the namespace in
 * metadata_options.receiving_namespaces, without which Envoy drops it.
 */
export const LLM_METADATA = { namespace: 'flowgate.llm', cost: 'cost', currency: 'currency', inputTokens: 'input_tokens', outputTokens: 'output_tokens' } as const;

/** The rate-limit domain of every descriptor Flowgate's routes send. */
export const RATE_LIMIT_DOMAIN = 'flowgate';

/** The keys of the entries in a rate-limit descriptor. */
export const DescriptorKey = {
  model: 'model',
  consumer: 'consumer',
} as const;

/** How a filter behaves when the filter service cannot answer: refuse (closed) or let the request pass (open). */
export type FailureMode = 'closed' | 'open';

const suffix = (mode: FailureMode): string => (mode === 'open' ? '.open' : '');

/** The names of Flowgate's HTTP filters in an Envoy listener; each exists once per failure mode. */
export const FilterName = {
  authz: (mode: FailureMode): string => `flowgate.authz${suffix(mode)}`,
  rateLimit: (mode: FailureMode): string => `flowgate.ratelimit${suffix(mode)}`,
  extProc: (mode: FailureMode): string => `flowgate.extproc${suffix(mode)}`,
  /** The cluster-level ext_proc of a version's cluster (signature validation, protocol conversion). */
  versionExtProc: 'flowgate.version-extproc',
  /** The LLM router: always fail closed (a request it cannot route has nowhere to go). */
  llmRouter: 'flowgate.llm-router',
  /** The LLM adapter in the upstream filters of LLM clusters. */
  llmUpstream: 'flowgate.llm-upstream',
} as const;

/** The rate-limit stage the filter of a failure mode acts on (a route's rate_limits name their stage). */
export function rateLimitStage(mode: FailureMode): number {
  return mode === 'open' ? 1 : 0;
}
