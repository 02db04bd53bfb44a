import { z } from 'zod';
import { BUDGET_PERIODS, LLM_CACHE_SCOPES, LLM_CACHE_STORES, LLM_UPSTREAM_KINDS, PROVIDER_APIS } from '../../contract/filter-policy.js';
import { LLM_ENDPOINTS } from '../../contract/filter-wire.js';
import { duration, numberIn, patterned, pathPrefix, shortName, wholeNumber } from '../fields.js';
import { shown } from '../issues.js';
import { guardrailsBlock } from './guardrails.js';
import { messagesBlock, promptBlock } from './prompt.js';

/**
 * The LLM blocks of the policy: `Gateway.openai` (where the OpenAI-compatible API is served) and a Model's
 * `llm` (what its upstream speaks, the names a request's `model` may use, the endpoints it serves, the
 * upstream model name, an external provider, a fallback chain). Absent fields stay absent: the IR decides
 * every default (src/ir/llm.ts).
 */

const absolutePath = z.string().startsWith('/', { error: 'must be an absolute path' });

/** A public model name as OpenAI-style clients write it (`gpt-4o`, `meta-llama/Llama-3-8B`): no `@`, which starts an alias. */
export const llmModelName = patterned(/^[A-Za-z0-9][A-Za-z0-9._:/-]*$/, "letters, digits, '.', '_', ':', '/' or '-', starting with a letter or digit", 256);

/** A reference to a model, as a request's `model` writes it: `name`, `name@alias` or `name/VERSION`. */
export const llmModelRef = patterned(
  /^[A-Za-z0-9][A-Za-z0-9._:/-]*(@[A-Za-z0-9_-]+)?$/,
  "a model name, optionally with '@alias' or '/VERSION' (e.g. support-bot@champion, support-bot/3, gpt-4o-mini)",
  512,
);

/** An environment variable name (of the filter service's process). */
const envName = patterned(/^[A-Za-z_][A-Za-z0-9_]*$/, "letters, digits and '_', not starting with a digit", 128);

const httpsUrl = z.string().superRefine((s, ctx) => {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    ctx.addIssue({ code: 'custom', message: `must be an https URL like https://api.openai.com/v1 (got ${shown(s)})` });
    return;
  }
  if (url.protocol !== 'https:') ctx.addIssue({ code: 'custom', message: `must be https: a provider's key never travels in clear text (got ${shown(s)})` });
  else if (url.username !== '' || url.password !== '') ctx.addIssue({ code: 'custom', message: 'must not carry credentials; name them under credential' });
  else if (url.search !== '' || url.hash !== '') ctx.addIssue({ code: 'custom', message: 'must not have a query or fragment' });
});

const credential = z.union([z.strictObject({ env: envName }), z.strictObject({ file: absolutePath })], {
  error: 'must be { env: VARIABLE } or { file: /absolute/path }: where the filter service reads the key, never the key itself',
});

const provider = z.strictObject({
  /** https://host[:port][/base/path] of the provider's API. */
  url: httpsUrl,
  /** Absent: openai. */
  api: z.enum(PROVIDER_APIS).optional(),
  /** Absent: the provider needs no key. */
  credential: credential.optional(),
  /** CA bundle on the Envoy hosts; absent: the IR's default (the system bundle). */
  ca: absolutePath.optional(),
  /** The name the provider's certificate must carry; absent: the URL's host. */
  sni: z.string().min(1).max(253).optional(),
  /** Azure's api-version, or the anthropic-version sent when a caller sends none. */
  apiVersion: z.string().min(1).max(64).optional(),
});

const modelNameOverride = z.union([llmModelName, z.strictObject({ versionTag: patterned(/^[\w.\-/ ]+$/, 'an MLflow tag key', 250) })], {
  error: 'must be an upstream model name, or { versionTag: TAG } to read it from each version',
});

/** `llm.cache`: exact-match answer cache (filters/llm/cache.ts). Absent fields: the IR's defaults. */
const llmCache = z.strictObject({
  /** How long an answer is served from the cache. */
  ttl: duration({ min: 1000, max: 7 * 24 * 3_600_000 }).optional(),
  /** Per filter-service replica (memory store): the most answers kept, least recently used evicted first. */
  maxEntries: wholeNumber(1, 1_000_000).optional(),
  /** consumer: each consumer has its own answers; model: every caller of the model shares them. */
  scope: z.enum(LLM_CACHE_SCOPES).optional(),
  /** memory: per replica; redis: the filter service's Redis, shared by every replica. */
  store: z.enum(LLM_CACHE_STORES).optional(),
  /** Cache requests without `temperature: 0` too. */
  cacheNonDeterministic: z.boolean().optional(),
  /** Charge a cached answer's tokens to the caller's token quotas. */
  chargeHits: z.boolean().optional(),
});

/** A price per million tokens, in the price table's currency units (0 for a free model). */
const perMillion = numberIn(0, 1_000_000);

/** An ISO-4217-like currency code: three capital letters (USD, EUR). */
export const currencyCode = patterned(/^[A-Z]{3}$/, 'three capital letters, an ISO 4217 code such as USD or EUR', 3);

/** `llm.pricing`: what the model's tokens cost, per million; a version may have its own prices (same currency). */
const llmPricing = z.strictObject({
  inputPer1M: perMillion,
  outputPer1M: perMillion,
  currency: currencyCode,
  /** Per MLflow version: its own prices, in the model's currency; absent versions use the model's. */
  versions: z
    .record(z.string(), z.strictObject({ inputPer1M: perMillion, outputPer1M: perMillion }))
    .superRefine((versions, ctx) => {
      for (const key of Object.keys(versions)) {
        if (!/^[1-9][0-9]{0,11}$/.test(key)) ctx.addIssue({ code: 'custom', path: [key], message: `must be keyed by MLflow version numbers such as "3" (got ${shown(key)}); an alias moves, a price does not` });
      }
    })
    .optional(),
});

/** A spending limit: `amount` of `currency` per calendar period (UTC). */
export const budgetShape = {
  amount: numberIn(0, 1_000_000_000, { exclusiveMin: true }),
  currency: currencyCode,
  per: z.enum(BUDGET_PERIODS),
};
export const budgetList = z.array(z.strictObject(budgetShape)).max(8);

export const llmBlock = z
  .strictObject({
    /** Absent: openai (an OpenAI-compatible server such as vLLM or Ollama). */
    upstream: z.enum(LLM_UPSTREAM_KINDS).optional(),
    /** More names a request's `model` may use for this model; the Model's name always works. */
    names: z.array(llmModelName).default([]),
    /** Absent: the IR's default for the upstream kind. */
    endpoints: z.array(z.enum(LLM_ENDPOINTS)).min(1).optional(),
    /** The model name the upstream expects; absent: the registered model's name. */
    modelNameOverride: modelNameOverride.optional(),
    provider: provider.optional(),
    /** Tried in order when this model's upstream fails (connect failure, 5xx, 429, no byte for idleTimeout). */
    fallback: z.array(llmModelRef).max(4).default([]),
    /** Per attempt: an upstream that sends no byte for this long is given up (and the next in the chain tried). */
    idleTimeout: duration({ min: 100, max: 3_600_000 }).optional(),
    /** The longest Retry-After honoured as a cooldown; absent: the IR's default. */
    maxCooldown: duration({ min: 0, max: 3_600_000 }).optional(),
    /** owned_by in GET /v1/models; absent: the registered model's `owner` tag, else the IR's default. */
    ownedBy: z.string().min(1).max(128).optional(),
    /** Answers served again, without calling the model, to the same request. */
    cache: llmCache.optional(),
    /** Rules on the request's and the answer's texts (src/policy/schema/guardrails.ts). */
    guardrails: guardrailsBlock.optional(),
    /** What the model's tokens cost: the cost metric, the access log's cost, budgets. */
    pricing: llmPricing.optional(),
    /** Spending limits of the model, every caller together; they need `pricing`, in its currency. */
    budgets: budgetList.default([]),
    /** The output a request without max_tokens is reserved for against budgets; absent: the IR's default. */
    maxOutputTokens: wholeNumber(1, 10_000_000).optional(),
    /** A prompt of MLflow's Prompt Registry rendered into every chat request (src/policy/schema/prompt.ts). */
    prompt: promptBlock.optional(),
    /** Fixed messages put before and after the caller's. */
    messages: messagesBlock.optional(),
  })
  .superRefine((l, ctx) => {
    const isProvider = l.upstream === 'provider';
    if (isProvider && !l.provider) ctx.addIssue({ code: 'custom', path: ['provider'], message: 'is required when upstream is provider' });
    if (!isProvider && l.provider) ctx.addIssue({ code: 'custom', path: ['provider'], message: 'is only used when upstream is provider' });
    if (l.modelNameOverride !== undefined && typeof l.modelNameOverride !== 'string' && isProvider) {
      ctx.addIssue({ code: 'custom', path: ['modelNameOverride'], message: 'a provider model has no MLflow versions to read a tag from: name the provider model' });
    }
    if (l.budgets.length > 0 && !l.pricing) ctx.addIssue({ code: 'custom', path: ['budgets'], message: 'need llm.pricing: a budget is spent at the price table\'s rates' });
    l.budgets.forEach((b, i) => {
      if (l.pricing && b.currency !== l.pricing.currency) ctx.addIssue({ code: 'custom', path: ['budgets', i, 'currency'], message: `must be the price table's currency (${l.pricing.currency}); Flowgate converts no currencies` });
    });
    const endpoints = l.endpoints;
    if ((l.prompt || l.messages) && endpoints && !endpoints.includes('chat')) {
      ctx.addIssue({ code: 'custom', path: [l.prompt ? 'prompt' : 'messages'], message: 'prompts are rendered into chat requests: the model must serve chat' });
    }
    l.names.forEach((n, i) => {
      if (l.names.indexOf(n) !== i) ctx.addIssue({ code: 'custom', path: ['names', i], message: `name '${n}' is listed twice` });
    });
  });

export type LlmBlock = z.output<typeof llmBlock>;

/** Gateway.openai: the listener serving the OpenAI-compatible API, and its path prefix. */
export const openaiApi = z.strictObject({
  listener: shortName,
  /** Absent: the IR's default (/v1). */
  pathPrefix: pathPrefix.optional(),
  /** The largest request body the API reads (it must read the body to route); absent: the IR's default. */
  maxBodyBytes: wholeNumber(1024, 64 * 1024 * 1024).optional(),
  /** An answer that sends no byte for this long is ended; absent: Gateway.edge.streamIdleTimeout. */
  streamIdleTimeout: duration({ min: 1000, max: 3_600_000 }).optional(),
  /** GenAI metrics (OpenTelemetry semantic conventions) for every LLM model; absent: the IR's default (on). */
  genAiMetrics: z.boolean().optional(),
});
