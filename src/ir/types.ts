import type { PromptRules } from '../contract/prompts.js';
import type { GuardrailRules } from '../contract/guardrails.js';
import type {
  BudgetRule,
  AccessRules,
  AuditRules,
  ConsumerRules,
  CredentialRef,
  JwtIssuerRules,
  LlmUpstreamKind,
  ModelMaskingRules,
  ModelProtocol as BodyProtocol,
  ProviderApi,
  RequestLimitRule,
  TokenQuotaRule,
} from '../contract/filter-policy.js';
import type { LlmEndpoint } from '../contract/filter-wire.js';
import type { Signature } from '../contract/signature.js';

/**
 * Gateway IR: the joined, resolved view of policy + registry that every translator reads. All defaulting
 * and cross-checking happens when it is built (build.ts); translators only map it to Envoy resources.
 */

/** Where a model version is served. */
export interface UpstreamAddress {
  readonly host: string;
  readonly port: number;
}

/** What the IR knows of a version's MLflow signature. */
export type SignatureState =
  | { readonly status: 'found'; readonly signature: Signature }
  /** Its MLmodel declares none. */
  | { readonly status: 'none' }
  | { readonly status: 'unreadable'; readonly reason: string }
  /** Not read yet (the control plane asks MLflow once the version is routed to). */
  | { readonly status: 'pending' };

/**
 * The work the version's own cluster does on each request (a cluster-level ext_proc, since only there is
 * the version known): check bodies against the signature, convert between the model's public protocol and
 * the one the version speaks.
 */
export interface VersionProcessing {
  /** The protocol the version's server speaks (its `flowgate.protocol` tag; absent, the model's). */
  readonly protocol: BodyProtocol;
  readonly validateInput: boolean;
  /** The version speaks another protocol than the model's public one. */
  readonly convert: boolean;
  readonly signature: SignatureState;
  /** The health-check path of the version's protocol, when the policy named none and it differs from the model's. */
  readonly healthCheckPath?: string;
}

/** One model version that receives traffic, with its share and its Envoy cluster. */
export interface LiveVersion {
  readonly version: string;
  /** Aliases pointing at this version in the registry (sorted). */
  readonly aliases: readonly string[];
  /** Percent of unpinned traffic, 0..100; the live versions of a model add up to 100. */
  readonly weight: number;
  readonly role: 'stable' | 'canary';
  readonly cluster: string;
  readonly address: UpstreamAddress;
  /** Absent: requests reach the version as they are. */
  readonly processing?: VersionProcessing;
}

/** A shadow copy of live traffic to a version whose answers are discarded. */
export interface MirrorTarget {
  readonly version: string;
  readonly cluster: string;
  readonly address: UpstreamAddress;
  readonly percent: number;
  readonly processing?: VersionProcessing;
}

/** Envoy's retry policy for a model's routes. */
export interface RetryPolicyIR {
  readonly attempts: number;
  /** Envoy retry_on conditions. */
  readonly on: readonly string[];
  readonly perTryTimeoutMs: number | undefined;
}

export interface CircuitBreakersIR {
  readonly maxConnections: number | undefined;
  readonly maxPendingRequests: number | undefined;
  readonly maxRequests: number | undefined;
  readonly maxRetries: number | undefined;
}

export interface OutlierDetectionIR {
  readonly consecutive5xx: number | undefined;
  readonly intervalMs: number | undefined;
  readonly baseEjectionTimeMs: number | undefined;
  readonly maxEjectionPercent: number | undefined;
}

/** An active HTTP health check of every version's endpoints. */
export interface HealthCheckIR {
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
}

/** The upstream settings of a model after Gateway.defaults are applied. */
export interface ModelSettings {
  readonly timeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly retries: RetryPolicyIR | undefined;
  readonly loadBalancer: 'least_request' | 'round_robin' | 'random';
  readonly circuitBreakers: CircuitBreakersIR | undefined;
  readonly outlierDetection: OutlierDetectionIR | undefined;
  /** With the path filled from the protocol when the policy gave none. */
  readonly healthCheck: HealthCheckIR | undefined;
}

/** One (listener, host, path prefix) on which a model is published. */
export interface PublicRoute {
  readonly listener: string;
  readonly host: string;
  readonly pathPrefix: string;
}

/** How callers speak to a model: MLflow scoring, OIP v2 (both convertible per version), or gRPC. */
export type ModelProtocol = 'mlflow' | 'oip' | 'grpc';

/** How proxyless gRPC clients reach a model: the name they dial as xds:///<target>. */
export interface ProxylessTarget {
  readonly target: string;
}

/** An exposed model, resolved. */
export interface ModelIR {
  readonly name: string;
  readonly registeredModel: string;
  readonly protocol: ModelProtocol;
  /** For protocol grpc: the one gRPC service routed; undefined routes every service (and for other protocols). */
  readonly grpcService?: string | undefined;
  /** Set when proxyless gRPC clients get the model too (src/translate/proxyless.ts). */
  readonly proxyless?: ProxylessTarget | undefined;
  readonly routes: readonly PublicRoute[];
  /** Live versions, stable first; empty when the model has never had one (its routes answer 503). */
  readonly live: readonly LiveVersion[];
  /** Aliases that pin to a live version (alias -> version). */
  readonly pinnableAliases: Readonly<Record<string, string>>;
  readonly pinning: boolean;
  readonly sticky: { readonly header: string } | undefined;
  readonly mirror: MirrorTarget | undefined;
  readonly settings: ModelSettings;
  /** True when the registry gave no live version and the last known ones are kept. */
  readonly keptLastLive: boolean;
  /** Its access rules, limits, quotas, masking and failure mode, with every default applied. */
  readonly rules: ModelFilterRules;
  /** The filter-service calls its routes make; undefined for none. */
  readonly filters: ModelFilters | undefined;
  /** Set when a version's cluster processes bodies (VersionProcessing): the largest body it reads. */
  readonly versionBodyLimitBytes?: number;
  /** Its automated progressive rollout (a Rollout document), with the state read from the canary's tags. */
  readonly rollout?: RolloutIR | undefined;
  /** How it is served on the OpenAI-compatible API; undefined for a model that is not (src/ir/llm.ts). */
  readonly llm: ModelLlmIR | undefined;
}

/** The analysis a rollout runs, with every default applied (src/rollout/plan.ts). */
export interface RolloutPlan {
  /** How the canary version is named in the registry. */
  readonly canary: { readonly alias: string } | { readonly version: string };
  /** Canary weights in percent, increasing; the last one is followed by promotion (or a pause). */
  readonly steps: readonly number[];
  /** Time between checks; each check judges the traffic of the interval before it. */
  readonly intervalMs: number;
  /** Failed checks that roll the canary back. */
  readonly threshold: number;
  /** Canary requests (and stable ones, for relative metrics) a window needs to judge; fewer is inconclusive. */
  readonly minRequests: number;
  /** Inconclusive checks in a row tolerated before the rollout pauses. */
  readonly inconclusiveLimit: number;
  readonly metrics: readonly RolloutMetricBound[];
  readonly webhooks: { readonly confirmPromotion: RolloutWebhook | undefined; readonly check: RolloutWebhook | undefined };
  readonly onSuccess: 'promote' | 'pause';
  /** The alias promotion moves to the canary (the Model's stable alias); undefined when it names no alias. */
  readonly stableAlias: string | undefined;
}

export type RolloutMetricName = 'error_rate' | 'latency_p50' | 'latency_p99' | 'ttft_p95' | 'cost_per_request';

/** One bound a check applies: absolute, or relative to the stable version over the same window. */
export interface RolloutMetricBound {
  readonly name: RolloutMetricName;
  readonly relative: boolean;
  /** error_rate: percent (relative: points above stable); latency: ms; cost_per_request: currency units (relative: ratio to stable). */
  readonly max: number;
  /** error_rate: 4xx answers count as errors. */
  readonly include4xx: boolean;
  /** Relative latency: a difference under it never fails. */
  readonly toleranceMs: number;
}

export interface RolloutWebhook {
  readonly url: string;
  readonly timeoutMs: number;
}

export type RolloutPhase = 'progressing' | 'paused' | 'succeeded' | 'failed' | 'aborted';
export type RolloutCommand = 'pause' | 'resume' | 'promote' | 'abort';

/** A rollout's state as the `flowgate.rollout.*` tags of its canary version say (src/rollout/state.ts). */
export interface RolloutState {
  readonly phase: RolloutPhase;
  /** Index into the plan's steps. */
  readonly step: number;
  /** The canary's weight in percent as last written (phase decides what is served: see servedWeight). */
  readonly weight: number;
  readonly failedChecks: number;
  /** Inconclusive checks in a row. */
  readonly inconclusiveChecks: number;
  /** The fencing generation of the lease holder that wrote it last. */
  readonly generation: number;
  /** Epoch ms. */
  readonly startedAt: number;
  readonly stepStartedAt: number;
  /** The last check, or 0 before the first. */
  readonly checkedAt: number;
  readonly updatedAt: number;
  /** The stable version the canary was judged against. */
  readonly stableVersion: string | undefined;
  /** Why the rollout paused, failed or was aborted, with the numbers. */
  readonly reason: string | undefined;
  /** A manual command waiting for the lease holder (set by the admin API or by hand in MLflow). */
  readonly command: RolloutCommand | undefined;
}

/** A Model's rollout in the IR: its plan, the versions it judges, and the weight every replica serves. */
export interface RolloutIR {
  readonly plan: RolloutPlan;
  /** The canary version, when it resolves to a READY version with an address other than the stable one. */
  readonly canaryVersion: string | undefined;
  readonly stableVersion: string | undefined;
  /** From the canary version's tags; undefined before the rollout started. */
  readonly state: RolloutState | undefined;
  /** The canary weight served, derived from the state alone. */
  readonly weight: number;
  /** Why nothing is rolling out (no canary, the canary is the stable version), else undefined. */
  readonly idle: string | undefined;
}

/** An external provider's API (TLS to host:port, a key the filter service reads). */
export interface LlmProviderIR {
  readonly api: ProviderApi;
  readonly host: string;
  readonly port: number;
  readonly basePath: string;
  /** The name its certificate must carry (sent as SNI). */
  readonly sni: string;
  /** CA bundle on the Envoy hosts. */
  readonly ca: string;
  readonly credential: CredentialRef | undefined;
  readonly apiVersion: string | undefined;
}

/** One step of a fallback chain: the model version tried when the ones before it failed. */
export interface LlmFallbackIR {
  /** As written in the policy (`support-bot@champion`). */
  readonly ref: string;
  readonly model: string;
  readonly version: string;
  readonly cluster: string;
}

/** `llm.cache` resolved. */
export interface LlmCacheIR {
  readonly ttlMs: number;
  readonly maxEntries: number;
  readonly scope: 'consumer' | 'model';
  readonly store: 'memory' | 'redis';
  readonly cacheNonDeterministic: boolean;
  readonly chargeHits: boolean;
}

/** A model on the OpenAI-compatible API, resolved. */
export interface ModelLlmIR {
  readonly kind: LlmUpstreamKind;
  /** Every name a request's `model` may use: the model's own name first, then its public names. */
  readonly names: readonly string[];
  readonly endpoints: readonly LlmEndpoint[];
  /** The `model` written into requests (a version may override it). */
  readonly upstreamModel: string;
  /** The upstream model name of every version with a cluster (live and mirror), by version order. */
  readonly versions: readonly { readonly version: string; readonly upstreamModel: string }[];
  readonly provider: LlmProviderIR | undefined;
  /** Resolved, in order, without the model's own versions and without repeats. */
  readonly fallback: readonly LlmFallbackIR[];
  /** Per attempt: no byte from the upstream for this long ends the attempt. */
  readonly idleTimeoutMs: number;
  readonly maxCooldownMs: number;
  /** Whether its version clusters run the LLM adapter (upstream ext_proc): MLflow and provider upstreams, or a per-version model name. */
  readonly adapter: boolean;
  /** The answer cache, with its defaults; undefined: none. */
  readonly cache: LlmCacheIR | undefined;
  /** The prompt rendered into chat requests (src/ir/prompts.ts); undefined: none. */
  readonly prompt: PromptRules | undefined;
  /** GET /v1/models: seconds since the epoch (the registered model's first version) and the owner. */
  readonly created: number;
  readonly ownedBy: string;
  /** The price table, with per-version prices resolved; undefined: no cost. */
  readonly pricing: LlmPricingIR | undefined;
  /** GenAI metrics for this model (`gen_ai.provider.name`); undefined: off (Gateway.openai.genAiMetrics: false). */
  readonly genAi: { readonly providerName: string } | undefined;
  /** The model's spending limits, every caller together (they need `pricing`). */
  readonly budgets: readonly BudgetRule[];
  /** The output tokens a request without max_tokens is reserved for against budgets. */
  readonly maxOutputTokens: number;
}

/** Prices per million tokens in one currency; the versions listed have their own. */
export interface LlmPricingIR {
  readonly currency: string;
  readonly inputPer1M: number;
  readonly outputPer1M: number;
  readonly versions: readonly { readonly version: string; readonly inputPer1M: number; readonly outputPer1M: number }[];
}

/** The OpenAI-compatible API of the gateway. */
export interface OpenaiApiIR {
  readonly listener: string;
  readonly pathPrefix: string;
  readonly maxBodyBytes: number;
  readonly streamIdleTimeoutMs: number;
  /** GenAI metrics for every LLM model (their routes then read every answer). */
  readonly genAiMetrics: boolean;
}

/** What the filter service enforces for one model (src/ir/filter-rules.ts decides every default). */
export interface ModelFilterRules {
  /** Requests pass when the filter service or its store cannot decide. */
  readonly failOpen: boolean;
  readonly access: AccessRules | undefined;
  readonly requestLimits: readonly RequestLimitRule[];
  readonly tokenQuotas: readonly TokenQuotaRule[];
  readonly masking: ModelMaskingRules | undefined;
  /** An LLM model whose answers are read for usage beyond token quotas (pricing, budgets, GenAI metrics). */
  readonly llmUsage?: boolean;
  /** Request bodies checked against each version's signature; absent: not checked. */
  readonly validation?: InputValidation;
  /** LLM guardrails (src/ir/guardrails.ts); absent: none. */
  readonly guardrails?: GuardrailRules;
}

/** `validation` of a Model, resolved. */
export interface InputValidation {
  readonly input: 'signature';
  /** The largest body the version's cluster reads (validation and protocol conversion); a larger one is a 413. */
  readonly maxBodyBytes: number;
}

/** The filter-service calls a model's routes make (src/ir/filters.ts). */
export interface ModelFilters {
  /** ext_authz on every request: credentials, access rules, token-quota admission; sets x-flowgate-consumer. */
  readonly authz: boolean;
  /**
   * ext_authz on pinned requests only (a model whose every request needs no check): it reads the pins
   * strictly and tells Envoy, through an internal header, the one version to route to.
   */
  readonly pinAuthz: boolean;
  /** The route table routes on the internal route-version header (pins, or version access rules). */
  readonly routesByVersion: boolean;
  /** Request rate limits apply: decided inside ext_authz's Check (one filter call per request) unless rateLimitFilter. */
  readonly rateLimit: boolean;
  /**
   * Decide the rate limits through Envoy's rate-limit filter (ShouldRateLimit with (model, consumer)
   * descriptors, a second call per request) rather than inside Check; for a rate-limit service other than
   * the filter service's own Check. Set by `Gateway.rateLimits.via: envoy`, on models that have limits.
   */
  readonly rateLimitFilter?: boolean;
  /** ext_proc: request body for masking or input-token estimates; response body for masking (buffered) or usage (streamed). */
  readonly extProc: { readonly requestBody: boolean; readonly responseBody: 'none' | 'buffered' | 'streamed' } | undefined;
  /** Requests pass when the filter service cannot be reached. */
  readonly failOpen: boolean;
}

/** Where Envoys reach the filter service. */
export interface FilterServiceIR {
  readonly address: string;
  readonly port: number;
  readonly timeoutMs: number;
  readonly tls: { readonly ca: string; readonly cert?: string | undefined; readonly key?: string | undefined; readonly sni?: string | undefined } | undefined;
}

export interface ListenerIR {
  readonly name: string;
  readonly address: string;
  readonly port: number;
}

/** Envoy's edge-proxy protections, applied to every listener (src/ir/edge.ts). */
export interface EdgeIR {
  readonly headersWithUnderscores: 'reject' | 'drop' | 'allow';
  readonly streamIdleTimeoutMs: number;
  readonly requestHeadersTimeoutMs: number;
  readonly connectionIdleTimeoutMs: number;
  /** Per connection (listeners and model clusters); routes that read whole bodies raise it for themselves. */
  readonly bufferLimitBytes: number;
  readonly xffNumTrustedHops: number;
  readonly http2: { readonly maxConcurrentStreams: number; readonly initialStreamWindowSize: number; readonly initialConnectionWindowSize: number };
}

/** Something an operator must know about: logged and counted by the control plane. */
export interface GatewayAlert {
  readonly code: 'no_live_version' | 'kept_last_live' | 'canary_unresolved' | 'mirror_unresolved' | 'no_address' | 'unknown_registered_model' | 'address_refused' | 'no_signature' | 'fallback_unresolved' | 'prompt_unresolved';
  readonly model: string;
  readonly message: string;
}

/** Where one pipeline step is called: the step model's route on the listener the pipeline was called on. */
export interface StepTarget {
  readonly listener: string;
  /** The listener's port: the step goes back to the Envoy (address) that called the pipeline, on this port. */
  readonly port: number;
  /** The model's route prefix plus the step's path. */
  readonly path: string;
  /** The route's host pattern ('*' for any): sent as the step's Host when it is a name. */
  readonly host: string;
}

export interface PipelineStepIR {
  readonly name: string;
  /** The policy Model it calls. */
  readonly model: string;
  readonly timeoutMs: number;
  /** The body template; absent: the previous answer (sequential) or the request (parallel). */
  readonly input?: unknown;
  readonly targets: readonly StepTarget[];
}

/** A Pipeline, resolved: its routes, its steps and where each is called, its own access rules and limits. */
export interface PipelineIR {
  readonly name: string;
  readonly routes: readonly PublicRoute[];
  readonly mode: 'sequential' | 'parallel';
  readonly timeoutMs: number;
  readonly maxBodyBytes: number;
  readonly steps: readonly PipelineStepIR[];
  /** The answer template; absent: the last answer (sequential) or {step: answer} (parallel). */
  readonly output?: unknown;
  /** Access and limits on the pipeline route itself (each step is judged again as its Model). */
  readonly rules: ModelFilterRules;
  readonly filters: ModelFilters | undefined;
}

/** Where Envoys reach the pipeline service (an HTTP server in the filter-service process). */
export interface PipelineServiceIR {
  readonly address: string;
  readonly port: number;
  readonly tls: FilterServiceIR['tls'];
}

export interface GatewayIR {
  readonly policyHash: string;
  readonly registryHash: string;
  readonly listeners: readonly ListenerIR[];
  readonly edge: EdgeIR;
  /** By name, sorted. */
  readonly models: readonly ModelIR[];
  readonly alerts: readonly GatewayAlert[];
  /** Set when any model's routes call the filter service. */
  readonly filterService: FilterServiceIR | undefined;
  /** Envoy's OpenTelemetry tracer, when the Gateway turns it on. */
  readonly tracing: TracingIR | undefined;
  /** Every consumer's identity, limits and quotas (for the filter service). */
  readonly consumers: readonly ConsumerRules[];
  readonly jwtIssuers: readonly JwtIssuerRules[];
  readonly audit: AuditRules;
  /** The OpenAI-compatible API, when the Gateway serves it. */
  readonly openai: OpenaiApiIR | undefined;
  /** By name, sorted; absent when the policy has none. */
  readonly pipelines?: readonly PipelineIR[];
  /** Set when there are pipelines. */
  readonly pipelineService?: PipelineServiceIR;
  /** Gateway.traffic.split: endpoints (src/translate/eds-split.ts); absent: weighted clusters in the routes. */
  readonly trafficSplit?: 'endpoints';
}

export interface TracingIR {
  readonly address: string;
  readonly port: number;
  readonly serviceName: string;
  readonly samplingPercent: number;
}

/** The Envoy cluster name of a model version: model_{model}_v{version} (parsed back by the access-log sink). */
export function clusterName(model: string, version: string): string {
  return `model_${model}_v${version}`;
}

/** The aggregate cluster trying a model version, then its fallback chain. */
export function fallbackClusterName(model: string, version: string): string {
  return `llm_fallback_${model}_v${version}`;
}

/** The aggregate cluster of a model's fallback chain alone (while the model cools down after a 429). */
export function cooldownClusterName(model: string): string {
  return `llm_fallback_${model}_cooldown`;
}

/** The model and version a cluster name stands for, or undefined for other clusters. */
export function parseClusterName(cluster: string): { model: string; version: string } | undefined {
  const m = /^model_(.+)_v(\d+)$/.exec(cluster);
  return m?.[1] && m[2] ? { model: m[1], version: m[2] } : undefined;
}
