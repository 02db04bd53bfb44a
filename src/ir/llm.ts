import type { LlmEndpoint } from '../contract/filter-wire.js';
import { resolveModelRef } from '../contract/model-ref.js';
import type { ProviderApi } from '../contract/filter-policy.js';
import type { GatewayPolicy, ModelPolicy } from '../policy/schema/index.js';
import type { RegisteredModel } from '../registry/types.js';
import { clusterName, type GatewayAlert, type LiveVersion, type LlmCacheIR, type LlmFallbackIR, type LlmPricingIR, type LlmProviderIR, type ModelIR, type ModelLlmIR, type OpenaiApiIR } from './types.js';

/**
 * The OpenAI-compatible API resolved: where it is served, and for each model with an `llm` block its upstream
 * kind, names, endpoints, upstream model names per version, provider and fallback chain. Every LLM default is
 * decided here, once.
 */

export const DEFAULT_OPENAI_PATH_PREFIX = '/v1';
/** Requests are read whole to route them; longer conversations than this are refused (413). */
export const DEFAULT_LLM_MAX_BODY_BYTES = 4 * 1024 * 1024;
/** LLM answers stream for minutes: no overall timeout unless the policy sets one; idle timeouts guard instead. */
export const DEFAULT_LLM_TIMEOUT_MS = 0;
/** Per attempt: an upstream silent this long is given up (and, with a fallback chain, the next one tried). */
export const DEFAULT_LLM_IDLE_TIMEOUT_MS = 60_000;
export const DEFAULT_LLM_MAX_COOLDOWN_MS = 300_000;
/** Debian's and Ubuntu's system CA bundle, on the Envoy hosts. */
export const DEFAULT_PROVIDER_CA = '/etc/ssl/certs/ca-certificates.crt';
export const DEFAULT_AZURE_API_VERSION = '2024-10-21';
export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';
/** owned_by of a registry model with no `owner` tag. */
export const DEFAULT_OWNED_BY = 'mlflow';
export const DEFAULT_LLM_CACHE_TTL_MS = 300_000;
export const DEFAULT_LLM_CACHE_MAX_ENTRIES = 1000;
/**
 * GenAI metrics are on unless Gateway.openai.genAiMetrics is false. They make every LLM model's routes read
 * their answers (a streamed ext_proc response), which costs a few milliseconds per request.
 */
export const DEFAULT_GENAI_METRICS = true;
/**
 * The output a request without max_tokens (or max_completion_tokens) is reserved for against budgets: 4096
 * tokens, the output cap many hosted chat models have by default (Anthropic requires max_tokens; OpenAI's
 * and vLLM's caps are the context left). Set llm.maxOutputTokens to the model's own cap.
 */
export const DEFAULT_LLM_MAX_OUTPUT_TOKENS = 4096;

/** `gen_ai.provider.name` (OpenTelemetry GenAI semantic conventions) of a model's upstream. */
export function genAiProviderName(model: ModelPolicy): string {
  const l = model.llm;
  if (l?.provider) return l.provider.api === 'azure' ? 'azure.ai.openai' : (l.provider.api ?? 'openai');
  // Self-hosted servers are no provider the conventions name: the kind of server, in Flowgate's words.
  return l?.upstream === 'mlflow' ? 'mlflow' : 'openai_compatible';
}

/** Whether GenAI metrics are on (the Gateway's switch, with its default). */
export function genAiMetricsOn(gateway: GatewayPolicy): boolean {
  return gateway.openai !== undefined && (gateway.openai.genAiMetrics ?? DEFAULT_GENAI_METRICS);
}

/**
 * Whether an LLM model's answers are read for what they report beyond token quotas: its cost (pricing),
 * or GenAI metrics. Its routes then stream answers through ext_proc, and the router asks streams for usage.
 */
export function llmReadsUsage(model: ModelPolicy, gateway: GatewayPolicy): boolean {
  if (!model.llm || !gateway.openai) return false;
  return model.llm.pricing !== undefined || genAiMetricsOn(gateway);
}

/** `llm.pricing` resolved: the versions' own prices as a list, by version order. */
export function llmPricingOf(model: ModelPolicy): LlmPricingIR | undefined {
  const p = model.llm?.pricing;
  if (!p) return undefined;
  return {
    currency: p.currency,
    inputPer1M: p.inputPer1M,
    outputPer1M: p.outputPer1M,
    versions: Object.entries(p.versions ?? {})
      .sort(([a], [b]) => Number(a) - Number(b))
      .map(([version, v]) => ({ version, inputPer1M: v.inputPer1M, outputPer1M: v.outputPer1M })),
  };
}

/** `llm.cache` with its defaults, or undefined when the model caches nothing. */
export function llmCacheOf(model: ModelPolicy): LlmCacheIR | undefined {
  const c = model.llm?.cache;
  if (!c) return undefined;
  return {
    ttlMs: c.ttl ?? DEFAULT_LLM_CACHE_TTL_MS,
    maxEntries: c.maxEntries ?? DEFAULT_LLM_CACHE_MAX_ENTRIES,
    scope: c.scope ?? 'consumer',
    store: c.store ?? 'memory',
    cacheNonDeterministic: c.cacheNonDeterministic ?? false,
    chargeHits: c.chargeHits ?? false,
  };
}

/** The one version of a provider's model (it has no MLflow versions). */
export const PROVIDER_VERSION = '1';

const DEFAULT_ENDPOINTS: Readonly<Record<'openai' | 'mlflow' | ProviderApi, readonly LlmEndpoint[]>> = {
  openai: ['chat', 'completions', 'embeddings'],
  // `mlflow models serve` answers a ChatModel's chat only.
  mlflow: ['chat'],
  azure: ['chat', 'completions', 'embeddings'],
  anthropic: ['messages', 'chat'],
};

/** The Gateway's OpenAI API with its defaults, or undefined when it serves none. */
export function openaiApiOf(gateway: GatewayPolicy, edgeStreamIdleTimeoutMs: number): OpenaiApiIR | undefined {
  const o = gateway.openai;
  if (!o) return undefined;
  return {
    listener: o.listener,
    pathPrefix: o.pathPrefix ?? DEFAULT_OPENAI_PATH_PREFIX,
    maxBodyBytes: o.maxBodyBytes ?? DEFAULT_LLM_MAX_BODY_BYTES,
    streamIdleTimeoutMs: o.streamIdleTimeout ?? edgeStreamIdleTimeoutMs,
    genAiMetrics: o.genAiMetrics ?? DEFAULT_GENAI_METRICS,
  };
}

/** A provider model's upstream, from its URL. */
export function providerOf(model: ModelPolicy): LlmProviderIR | undefined {
  const p = model.llm?.provider;
  if (!p) return undefined;
  const url = new URL(p.url);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const api = p.api ?? 'openai';
  return {
    api,
    host,
    port: url.port === '' ? 443 : Number(url.port),
    basePath: url.pathname.replace(/\/+$/, ''),
    sni: p.sni ?? host,
    ca: p.ca ?? DEFAULT_PROVIDER_CA,
    credential: p.credential,
    apiVersion: p.apiVersion ?? (api === 'azure' ? DEFAULT_AZURE_API_VERSION : api === 'anthropic' ? DEFAULT_ANTHROPIC_VERSION : undefined),
  };
}

/** The one live version of a provider's model. */
export function providerLiveVersion(model: ModelPolicy, provider: LlmProviderIR): LiveVersion {
  return { version: PROVIDER_VERSION, aliases: [], weight: 100, role: 'stable', cluster: clusterName(model.name, PROVIDER_VERSION), address: { host: provider.host, port: provider.port } };
}

/** The model's LLM view (its fallback chain is filled once every model is resolved, by withFallbacks). */
export function modelLlm(model: ModelPolicy, registered: RegisteredModel | undefined, served: readonly string[], gateway: GatewayPolicy): ModelLlmIR | undefined {
  const l = model.llm;
  if (!l) return undefined;
  const provider = providerOf(model);
  const cache = llmCacheOf(model);
  const kind = l.upstream ?? 'openai';
  const fixed = typeof l.modelNameOverride === 'string' ? l.modelNameOverride : undefined;
  const tag = typeof l.modelNameOverride === 'object' ? l.modelNameOverride.versionTag : undefined;
  const upstreamModel = fixed ?? (provider ? model.name : model.registeredModel);
  const versions = [...new Set(served)]
    .sort((a, b) => Number(a) - Number(b))
    .map((version) => {
      const tagged = tag === undefined ? undefined : registered?.versions.find((v) => v.version === version)?.tags[tag]?.trim();
      return { version, upstreamModel: tagged !== undefined && tagged !== '' ? tagged : upstreamModel };
    });
  const firstCreated = registered?.versions.reduce((min, v) => (v.createdAt > 0 && v.createdAt < min ? v.createdAt : min), Number.MAX_SAFE_INTEGER);
  return {
    kind,
    names: [model.name, ...l.names.filter((n) => n !== model.name)],
    endpoints: l.endpoints ?? DEFAULT_ENDPOINTS[provider ? (provider.api === 'openai' ? 'openai' : provider.api) : kind === 'mlflow' ? 'mlflow' : 'openai'],
    upstreamModel,
    versions,
    provider,
    fallback: [],
    idleTimeoutMs: l.idleTimeout ?? DEFAULT_LLM_IDLE_TIMEOUT_MS,
    maxCooldownMs: l.maxCooldown ?? DEFAULT_LLM_MAX_COOLDOWN_MS,
    // The cache is looked up by the adapter, the one place that knows which version Envoy picked.
    adapter: kind !== 'openai' || versions.some((v) => v.upstreamModel !== upstreamModel) || cache !== undefined,
    cache,
    // Resolved against the Prompt Registry by buildGatewayIR (src/ir/prompts.ts).
    prompt: undefined,
    created: firstCreated === undefined || firstCreated === Number.MAX_SAFE_INTEGER ? 0 : Math.floor(firstCreated / 1000),
    ownedBy: l.ownedBy ?? registered?.tags.owner ?? (provider ? provider.api : DEFAULT_OWNED_BY),
    pricing: llmPricingOf(model),
    genAi: genAiMetricsOn(gateway) ? { providerName: genAiProviderName(model) } : undefined,
    budgets: l.budgets.map((b) => ({ name: `Model ${model.name}: ${b.amount} ${b.currency} per ${b.per}`, amount: b.amount, currency: b.currency, per: b.per })),
    maxOutputTokens: l.maxOutputTokens ?? DEFAULT_LLM_MAX_OUTPUT_TOKENS,
  };
}

/** Name -> model of every LLM model, for reading `model` strings. */
export function llmNameIndex(models: readonly ModelIR[]): Map<string, string> {
  const index = new Map<string, string>();
  for (const m of models) for (const n of m.llm?.names ?? []) if (!index.has(n)) index.set(n, m.name);
  return index;
}

/**
 * The models with their fallback chains resolved to live clusters: an entry naming an alias or version that
 * is not live, or a model with no live version, is left out (alert); repeats are dropped, since trying a
 * cluster twice in one chain only doubles the wait. An entry may name another live version of the model itself
 * (a canary falling back to the champion); the version being tried is never its own fallback (translator).
 */
export function withFallbacks(models: readonly ModelIR[], policyModels: ReadonlyMap<string, ModelPolicy>, alerts: GatewayAlert[]): ModelIR[] {
  // Without an LLM model there is no chain to fill and nothing to index (this runs on every build).
  if (!models.some((m) => m.llm)) return [...models];
  const index = llmNameIndex(models);
  const byName = new Map(models.map((m) => [m.name, m]));
  const chained = models.map((m) => {
    const refs = policyModels.get(m.name)?.llm?.fallback ?? [];
    if (!m.llm || refs.length === 0) return m;
    const chain: LlmFallbackIR[] = [];
    for (const ref of refs) {
      const resolved = resolveModelRef(ref, (n) => index.get(n));
      const target = resolved && byName.get(resolved.model);
      const pin = resolved?.pin;
      const version = !target ? undefined : !pin ? target.live[0]?.version : 'alias' in pin ? target.pinnableAliases[pin.alias] : target.live.find((l) => l.version === pin.version)?.version;
      const live = target?.live.find((l) => l.version === version);
      if (!target || !live) {
        alerts.push({ code: 'fallback_unresolved', model: m.name, message: `fallback '${ref}' is not tried: it names no live version` });
        continue;
      }
      if (chain.some((c) => c.cluster === live.cluster)) continue;
      chain.push({ ref, model: target.name, version: live.version, cluster: live.cluster });
    }
    return { ...m, llm: { ...m.llm, fallback: chain } };
  });
  // A cached model's x-flowgate-cache is set or removed by the adapter of every attempt (token quotas trust
  // it), so the models its chain falls back to run the adapter too.
  const reachedFromCache = new Set(chained.flatMap((m) => (m.llm?.cache ? m.llm.fallback.map((f) => f.model) : [])));
  return chained.map((m) => (m.llm && !m.llm.adapter && reachedFromCache.has(m.name) ? { ...m, llm: { ...m.llm, adapter: true } } : m));
}
