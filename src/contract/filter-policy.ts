import { z } from 'zod';
import { signatureSchema } from './signature.js';
import { LLM_ENDPOINTS } from './filter-wire.js';
import { guardrailRulesSchema } from './guardrails.js';
import { promptRulesSchema } from './prompts.js';

/**
 * The FilterPolicy: everything the filter service decides with, resolved by the control plane's IR (every
 * default already applied), served over xDS as `flowgate.v1.FilterPolicy` in the same snapshot as the Envoy
 * resources. This file is the one definition both sides use: the control plane builds values of these types,
 * the filter service validates what it receives against the same schema and refuses (NACKs) a schema version
 * it does not know. Unknown fields are dropped on parsing, so a newer control plane may add fields within a schema
 * version; a change an older filter service would misread bumps FILTER_POLICY_SCHEMA.
 */

/** The schema version this code writes and reads. */
export const FILTER_POLICY_SCHEMA = 2;
/** The one FilterPolicy resource's name. */
export const FILTER_POLICY_NAME = 'flowgate';
/** Its xDS type URL. */
export const FILTER_POLICY_TYPE_URL = 'type.googleapis.com/flowgate.v1.FilterPolicy';

const name = z.string().min(1);
const count = z.number().int().nonnegative();
const positive = z.number().int().positive();
const strings = z.array(z.string());

export const WINDOWS = ['second', 'minute', 'hour', 'day'] as const;
export type WindowName = (typeof WINDOWS)[number];
/** Length of each rate-limit / quota window. */
export const WINDOW_MS: Readonly<Record<WindowName, number>> = { second: 1_000, minute: 60_000, hour: 3_600_000, day: 86_400_000 };

/** How a limit counts: fixed windows aligned to the clock, or a sliding window over the last `windowMs`. */
export const LIMIT_ALGORITHMS = ['fixed', 'sliding'] as const;
export type LimitAlgorithm = (typeof LIMIT_ALGORITHMS)[number];

const requestLimit = z.object({
  /** Where the limit is written, for people: `Model chat: 5 per minute per consumer`. */
  name,
  requests: positive,
  per: z.enum(WINDOWS),
  windowMs: positive,
  algorithm: z.enum(LIMIT_ALGORITHMS),
  /** On a Consumer: the one model it limits; absent, every model together. */
  model: name.optional(),
});

const TOKEN_KINDS = ['input', 'output', 'total'] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

const tokenQuota = z.object({
  name,
  tokens: positive,
  per: z.enum(WINDOWS),
  windowMs: positive,
  count: z.enum(TOKEN_KINDS),
  algorithm: z.enum(LIMIT_ALGORITHMS),
  model: name.optional(),
});

const versionAccess = z.object({
  /** The key as written under access.versions (`challenger`, `v3`). */
  key: z.string(),
  selector: z.union([z.object({ alias: name }), z.object({ version: name })]),
  roles: strings,
  consumers: strings,
});

const access = z.object({ roles: strings, consumers: strings, versions: z.array(versionAccess) });

export const MASK_MODES = ['remove', 'replace', 'last4', 'hash'] as const;
export type MaskMode = (typeof MASK_MODES)[number];
export const BUILTIN_PATTERNS = ['email', 'card', 'phone', 'ssn'] as const;

const maskMode = z.enum(MASK_MODES);
const maskingRules = z.object({
  fields: z.array(z.object({ path: z.string(), mode: maskMode })),
  patterns: z.array(z.enum(BUILTIN_PATTERNS)),
  custom: z.array(z.object({ name, regex: z.string(), mode: maskMode })),
  /** The mode of the built-in patterns. */
  mode: maskMode,
});

const liveVersion = z.object({ version: name, aliases: strings, weight: count });

/** Which bodies Envoy sends the filter service on a model's routes (ext_proc processing modes). */
const bodies = z.object({ request: z.enum(['none', 'buffered']), response: z.enum(['none', 'buffered', 'streamed']) });

/** The protocols a model is called by (`protocol` on the Model) and a version's server may speak. */
export const MODEL_PROTOCOLS = ['mlflow', 'oip'] as const;
export type ModelProtocol = (typeof MODEL_PROTOCOLS)[number];

/**
 * What the cluster-level ext_proc does for one version (its cluster's filter names the version): check
 * request bodies against the version's signature, and convert bodies between the model's public protocol
 * and the one the version speaks.
 */
const versionProcessing = z.object({
  version: name,
  /** The protocol the version's server speaks; when it is not the model's, requests and answers are converted. */
  protocol: z.enum(MODEL_PROTOCOLS),
  /** Refuse (400) a request body the signature does not accept, before the version is called. */
  validateInput: z.boolean(),
  /** The version's MLflow signature; absent when its MLmodel has none (or could not be read): bodies pass unchecked. */
  signature: signatureSchema.optional(),
});

/** Where an LLM model's versions are served: an OpenAI-compatible server, `mlflow models serve`, or an external provider. */
export const LLM_UPSTREAM_KINDS = ['openai', 'mlflow', 'provider'] as const;
export type LlmUpstreamKind = (typeof LLM_UPSTREAM_KINDS)[number];
/** What an external provider speaks. */
export const PROVIDER_APIS = ['openai', 'azure', 'anthropic'] as const;
export type ProviderApi = (typeof PROVIDER_APIS)[number];

/** Whose answers a cached answer may serve: the same consumer's, or every caller of the model. */
export const LLM_CACHE_SCOPES = ['consumer', 'model'] as const;
/** Where cached answers live: each filter-service replica's memory, or the shared Redis. */
export const LLM_CACHE_STORES = ['memory', 'redis'] as const;

/** Where the filter service reads a provider's key: an environment variable or a file of its own host. Never the key. */
const credentialRef = z.union([z.object({ env: name }), z.object({ file: name })]);

const llmProvider = z.object({
  api: z.enum(PROVIDER_APIS),
  /** The :authority the provider expects (host, with the port when it is not 443). */
  authority: name,
  /** Prepended to the endpoint path (`/v1` for OpenAI; Azure's deployments path is built below it). */
  basePath: z.string(),
  credential: credentialRef.optional(),
  /** Azure's api-version query parameter; Anthropic's anthropic-version header when the caller sends none. */
  apiVersion: z.string().optional(),
});

const price = z.number().nonnegative();

/** Prices per million tokens, in `currency`; a version listed here has its own. */
const llmPricing = z.object({
  currency: z.string().regex(/^[A-Z]{3}$/),
  inputPer1M: price,
  outputPer1M: price,
  versions: z.array(z.object({ version: name, inputPer1M: price, outputPer1M: price })),
});

export const BUDGET_PERIODS = ['day', 'week', 'month'] as const;
export type BudgetPeriod = (typeof BUDGET_PERIODS)[number];

/** A spending limit per calendar period (UTC); `name` says where it is written, for people. */
const budget = z.object({ name, amount: z.number().positive(), currency: z.string().regex(/^[A-Z]{3}$/), per: z.enum(BUDGET_PERIODS) });

const llmModel = z.object({
  upstream: z.enum(LLM_UPSTREAM_KINDS),
  /** Every name a request's `model` may use for this model (its own name first). */
  names: strings,
  endpoints: z.array(z.enum(LLM_ENDPOINTS)),
  /** The `model` the router writes into the body (each version may override it below). */
  upstreamModel: z.string(),
  /** The upstream model name of each version a cluster serves (live, mirror). */
  versions: z.array(z.object({ version: name, upstreamModel: z.string() })),
  provider: llmProvider.optional(),
  /** Whether the model has a fallback chain (its upstream's 429 + Retry-After then sends new requests to the fallback). */
  fallback: z.boolean(),
  /** The longest Retry-After honoured. */
  cooldownMaxMs: count,
  /** For GET /v1/models: seconds since the epoch, and the owner. */
  created: count,
  ownedBy: z.string(),
  /** The answer cache; absent: none (or a control plane older than this field). */
  cache: z
    .object({
      ttlMs: positive,
      maxEntries: positive,
      scope: z.enum(LLM_CACHE_SCOPES),
      store: z.enum(LLM_CACHE_STORES),
      cacheNonDeterministic: z.boolean(),
      chargeHits: z.boolean(),
    })
    .optional(),
  /**
   * Whether the model's routes read its answers' usage (token quotas, pricing, budgets, GenAI metrics): the
   * router then asks a stream's upstream for usage, and the route's ext_proc strips what the caller did not ask for.
   */
  readsUsage: z.boolean().optional(),
  /** The price table; absent: the model's answers have no cost. */
  pricing: llmPricing.optional(),
  /** GenAI metrics (OpenTelemetry semantic conventions) for this model; absent: none. */
  genAi: z.object({ providerName: name }).optional(),
  /** The model's spending limits (every caller together); absent: none. */
  budgets: z.array(budget).optional(),
  /** The output tokens a request without max_tokens is reserved for against budgets. */
  maxOutputTokens: positive.optional(),
  /** The prompt rendered into chat requests (src/contract/prompts.ts); absent: none (or an older control plane). */
  prompt: promptRulesSchema.optional(),
});

const model = z.object({
  name,
  /** Requests pass when the filter service or its store cannot decide. */
  failOpen: z.boolean(),
  /** Whether x-model-version / x-model-alias choose a version (and so bring version access rules in). */
  pinning: z.boolean(),
  access: access.optional(),
  sticky: z.object({ header: z.string() }).optional(),
  /** The versions Envoy routes to now, with their aliases and weights. */
  live: z.array(liveVersion),
  requestLimits: z.array(requestLimit),
  tokenQuotas: z.array(tokenQuota),
  masking: z.object({ request: maskingRules.optional(), response: maskingRules.optional(), maxBodyBytes: positive }).optional(),
  /** Absent when its routes make no ext_proc call (or from a control plane older than this field). */
  bodies: bodies.optional(),
  /** The public protocol callers use (absent: mlflow). */
  protocol: z.enum(MODEL_PROTOCOLS).optional(),
  /** The MLflow registered model, which names it in OIP paths (/v2/models/{registeredModel}/infer). */
  registeredModel: name.optional(),
  /** The versions processed by the cluster-level ext_proc (validation, protocol conversion); absent: none. */
  versions: z.array(versionProcessing).optional(),
  /** The largest body the cluster-level processing reads; a larger one is refused (413). */
  maxBodyBytes: positive.optional(),
  /** Present when the model is served on the OpenAI-compatible API. */
  llm: llmModel.optional(),
  /** The LLM guardrails on request and answer texts (src/contract/guardrails.ts); absent: none. */
  guardrails: guardrailRulesSchema.optional(),
});

const consumer = z.object({
  name,
  roles: strings,
  /** Hex SHA-256 digests of the keys; never a key. */
  apiKeys: z.array(z.object({ id: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) })),
  jwt: z.object({ issuer: name, subject: name }).optional(),
  requestLimits: z.array(requestLimit),
  tokenQuotas: z.array(tokenQuota),
  /** The consumer's spending limits across LLM models; absent: none. */
  budgets: z.array(budget).optional(),
});

/**
 * The most a JSON Web Key Set may hold, inline in the policy or fetched from `jwksUri`: real issuers publish a
 * few keys in a few KB; a set past these is refused whole (its issuer's tokens are refused) instead of parsed,
 * because a 20 MB set stalls the filter service's event loop for every request it serves.
 */
export const JWKS_LIMITS = { maxBytes: 256 * 1024, maxKeys: 100 } as const;

const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

const jwtIssuer = z.object({
  name,
  issuer: name,
  audiences: strings,
  jwksUri: z.string().optional(),
  jwks: z.object({ keys: z.array(z.object({ kty: z.string() })).max(JWKS_LIMITS.maxKeys) }).optional(),
  algorithms: z.array(z.enum(JWT_ALGORITHMS)).min(1),
  clockSkewMs: count,
  consumerClaim: name,
  rolesClaim: name.optional(),
  /**
   * Refuse tokens without `exp`. The IR always writes it; a policy from a control plane that predates the field
   * reads as true, the safe side, since such a control plane never meant to accept tokens that never expire.
   */
  requireExpiry: z.boolean().default(true),
});

const audit = z.object({ sink: z.enum(['stdout', 'file']), path: z.string().optional() });

/** Where the pipeline service sends one step: back to the calling Envoy, on this listener's port and path. */
const stepTarget = z.object({ listener: name, port: z.number().int().min(1).max(65_535), path: z.string().startsWith('/'), host: z.string() });

const pipelineStep = z.object({
  name,
  /** The policy Model the step calls (through Envoy, so it is judged as that Model). */
  model: name,
  timeoutMs: positive,
  /** The body template (src/contract/pipeline-template.ts); absent: the previous answer or the request. */
  input: z.unknown().optional(),
  targets: z.array(stepTarget),
});

/** A Pipeline as the pipeline service runs it; its route's own access and limits are in `models` under its name. */
const pipeline = z.object({
  name,
  mode: z.enum(['sequential', 'parallel']),
  timeoutMs: positive,
  maxBodyBytes: positive,
  steps: z.array(pipelineStep).min(1),
  output: z.unknown().optional(),
});

export const FilterPolicySchema = z.object({
  schema: z.literal(FILTER_POLICY_SCHEMA),
  audit,
  jwtIssuers: z.array(jwtIssuer),
  models: z.array(model),
  consumers: z.array(consumer),
  /** Absent: no pipelines. */
  pipelines: z.array(pipeline).optional(),
  /** Present when a Gateway serves the OpenAI-compatible API. */
  llm: z.object({ pathPrefix: z.string() }).optional(),
});

export type FilterPolicy = z.output<typeof FilterPolicySchema>;
export type ModelRules = FilterPolicy['models'][number];
export type ConsumerRules = FilterPolicy['consumers'][number];
export type JwtIssuerRules = FilterPolicy['jwtIssuers'][number];
export type AccessRules = NonNullable<ModelRules['access']>;
export type VersionAccessRule = AccessRules['versions'][number];
export type RequestLimitRule = ModelRules['requestLimits'][number];
export type TokenQuotaRule = ModelRules['tokenQuotas'][number];
export type MaskingRules = z.output<typeof maskingRules>;
export type ModelMaskingRules = NonNullable<ModelRules['masking']>;
export type LiveVersionRule = ModelRules['live'][number];
export type BodyModes = z.output<typeof bodies>;
export type AuditRules = FilterPolicy['audit'];
export type VersionProcessingRules = NonNullable<ModelRules['versions']>[number];
export type PipelineRules = NonNullable<FilterPolicy['pipelines']>[number];
export type PipelineStepRules = PipelineRules['steps'][number];
export type LlmModelRules = NonNullable<ModelRules['llm']>;
export type LlmProviderRules = NonNullable<LlmModelRules['provider']>;
export type LlmCacheRules = NonNullable<LlmModelRules['cache']>;
export type LlmPricingRules = NonNullable<LlmModelRules['pricing']>;
export type BudgetRule = z.output<typeof budget>;
export type CredentialRef = NonNullable<LlmProviderRules['credential']>;
export type LlmApiRules = NonNullable<FilterPolicy['llm']>;

/** A refused FilterPolicy: the reason goes back to the control plane in the NACK. */
export class FilterPolicyError extends Error {
  override readonly name = 'FilterPolicyError';
}

/**
 * Reads a FilterPolicy received over xDS (its schema version and JSON text). Throws FilterPolicyError naming
 * what is wrong: an unknown schema version, text that is not JSON, or a field of the wrong shape.
 */
export function parseFilterPolicy(schemaVersion: number, json: string): FilterPolicy {
  if (schemaVersion !== FILTER_POLICY_SCHEMA) {
    throw new FilterPolicyError(`filter policy schema ${schemaVersion} is not supported (this filter service reads schema ${FILTER_POLICY_SCHEMA}); upgrade the filter service`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch {
    throw new FilterPolicyError('filter policy is not valid JSON');
  }
  const parsed = FilterPolicySchema.safeParse(doc);
  if (!parsed.success) {
    const detail = parsed.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ');
    throw new FilterPolicyError(`filter policy is malformed: ${detail}`);
  }
  return parsed.data;
}
