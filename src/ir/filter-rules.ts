import {
  WINDOW_MS,
  type AccessRules,
  type AuditRules,
  type ConsumerRules,
  type JwtIssuerRules,
  type LimitAlgorithm,
  type MaskingRules,
  type MaskMode,
  type ModelMaskingRules,
  type RequestLimitRule,
  type TokenKind,
  type TokenQuotaRule,
} from '../contract/filter-policy.js';
import type { ConsumerPolicy, GatewayPolicy, ModelPolicy, PipelinePolicy } from '../policy/schema/index.js';
import { guardrailRules } from './guardrails.js';
import { llmReadsUsage } from './llm.js';
import type { FilterServiceIR, InputValidation, ModelFilterRules, ModelFilters, PipelineServiceIR } from './types.js';

/**
 * The filter rules of the gateway, resolved: which access rules, request limits, token quotas and masking
 * apply to each model and consumer, and whether a model fails open. This is the one place their defaults are
 * decided; the FilterPolicy the filter service receives carries the result, and the filter service decides
 * nothing of its own.
 */

/** The masking mode of a rule that names none. */
export const DEFAULT_MASK_MODE: MaskMode = 'replace';
/** The largest body masking inspects; a larger one is refused (413). */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
/** Which tokens a quota counts when it does not say. */
export const DEFAULT_TOKEN_COUNT: TokenKind = 'total';
/** How limits and quotas count when they do not say. */
export const DEFAULT_LIMIT_ALGORITHM: LimitAlgorithm = 'sliding';
/** Whether requests pass when the filter service cannot decide, when neither the model nor the Gateway says. */
export const DEFAULT_FAIL_OPEN = false;
export const DEFAULT_JWT_ALGORITHMS: JwtIssuerRules['algorithms'] = ['RS256', 'ES256'];
export const DEFAULT_JWT_CLOCK_SKEW_MS = 30_000;
export const DEFAULT_JWT_CONSUMER_CLAIM = 'sub';
/** A token with no `exp` would be valid forever: refused unless the issuer says `requireExpiry: false`. */
export const DEFAULT_JWT_REQUIRE_EXPIRY = true;
/** How long one pipeline step may take, and a whole pipeline, when they do not say. */
export const DEFAULT_STEP_TIMEOUT_MS = 10_000;
export const DEFAULT_PIPELINE_TIMEOUT_MS = 30_000;
/** The port of the pipeline service beside the filter service, when filterService.pipelinesPort is absent. */
export const DEFAULT_PIPELINES_PORT = 18082;

type PolicyLimit = ModelPolicy['rateLimits'][number] & { readonly model?: string | undefined };
type PolicyQuota = ModelPolicy['tokenQuotas'][number] & { readonly model?: string | undefined };

function requestLimit(limit: PolicyLimit, name: string): RequestLimitRule {
  return {
    name,
    requests: limit.requests,
    per: limit.per,
    windowMs: WINDOW_MS[limit.per],
    algorithm: limit.algorithm ?? DEFAULT_LIMIT_ALGORITHM,
    ...(limit.model !== undefined && { model: limit.model }),
  };
}

function tokenQuota(quota: PolicyQuota, name: (count: TokenKind) => string): TokenQuotaRule {
  const count = quota.count ?? DEFAULT_TOKEN_COUNT;
  return {
    name: name(count),
    tokens: quota.tokens,
    per: quota.per,
    windowMs: WINDOW_MS[quota.per],
    count,
    algorithm: quota.algorithm ?? DEFAULT_LIMIT_ALGORITHM,
    ...(quota.model !== undefined && { model: quota.model }),
  };
}

function maskingRules(rules: NonNullable<NonNullable<ModelPolicy['masking']>['request']>): MaskingRules {
  const mode = rules.mode ?? DEFAULT_MASK_MODE;
  return {
    fields: rules.fields.map((f) => ({ path: f.path, mode: f.mode ?? mode })),
    patterns: [...rules.patterns],
    custom: rules.custom.map((c) => ({ name: c.name, regex: c.regex, mode: c.mode ?? mode })),
    mode,
  };
}

function masking(model: ModelPolicy): ModelMaskingRules | undefined {
  const m = model.masking;
  if (!m) return undefined;
  return {
    ...(m.request && { request: maskingRules(m.request) }),
    ...(m.response && { response: maskingRules(m.response) }),
    maxBodyBytes: m.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
  };
}

function access(model: ModelPolicy): AccessRules | undefined {
  const a = model.access;
  if (!a) return undefined;
  return {
    roles: [...a.roles],
    consumers: [...a.consumers],
    versions: a.versions.map((v) => ({ key: v.key, selector: { ...v.selector }, roles: [...v.roles], consumers: [...v.consumers] })),
  };
}

function validation(model: ModelPolicy): InputValidation | undefined {
  const v = model.validation;
  if (!v || v.input === 'none') return undefined;
  return { input: 'signature', maxBodyBytes: v.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES };
}

/** A model's filter rules with every default applied. */
export function modelFilterRules(model: ModelPolicy, gateway: GatewayPolicy): ModelFilterRules {
  const checked = validation(model);
  const rules: { -readonly [K in keyof ModelFilterRules]: ModelFilterRules[K] } = {
    failOpen: model.failOpen ?? gateway.filterService.failOpen ?? DEFAULT_FAIL_OPEN,
    access: access(model),
    requestLimits: model.rateLimits.map((l) => requestLimit(l, `Model ${model.name}: ${l.requests} per ${l.per} per consumer`)),
    tokenQuotas: model.tokenQuotas.map((q) => tokenQuota(q, (count) => `Model ${model.name}: ${q.tokens} ${count} tokens per ${q.per} per consumer`)),
    masking: masking(model),
  };
  // The optional fields set after, in this order, not spread in: one per model at every build (src/objects.ts).
  if (llmReadsUsage(model, gateway)) rules.llmUsage = true;
  if (checked) rules.validation = checked;
  const guardrails = guardrailRules(model, gateway.filterService.timeout);
  if (guardrails) rules.guardrails = guardrails;
  return rules;
}

/** The largest body a version's cluster reads (validation and protocol conversion buffer it whole). */
export function versionBodyLimit(model: ModelPolicy): number {
  return model.validation?.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
}

/** A consumer's identity and its own limits and quotas, resolved. */
export function consumerRules(consumer: ConsumerPolicy): ConsumerRules {
  const where = (model: string | undefined): string => (model === undefined ? 'across all models' : `on model ${model}`);
  return {
    name: consumer.name,
    roles: [...consumer.roles],
    apiKeys: consumer.apiKeys.map((k) => ({ id: k.id, sha256: k.sha256 })),
    ...(consumer.jwt && { jwt: { issuer: consumer.jwt.issuer, subject: consumer.jwt.subject } }),
    requestLimits: consumer.rateLimits.map((l) => requestLimit(l, `Consumer ${consumer.name}: ${l.requests} per ${l.per} ${where(l.model)}`)),
    tokenQuotas: consumer.tokenQuotas.map((q) =>
      tokenQuota(q, (count) => `Consumer ${consumer.name}: ${q.tokens} ${count} tokens per ${q.per} ${where(q.model)}`),
    ),
    ...(consumer.budgets.length > 0 && {
      budgets: consumer.budgets.map((b) => ({ name: `Consumer ${consumer.name}: ${b.amount} ${b.currency} per ${b.per}`, amount: b.amount, currency: b.currency, per: b.per })),
    }),
  };
}

/** The JWT issuers of the Gateway, resolved. */
export function jwtIssuerRules(gateway: GatewayPolicy): JwtIssuerRules[] {
  return gateway.auth.jwt.map((j) => ({
    name: j.name,
    issuer: j.issuer,
    audiences: [...j.audiences],
    ...(j.jwksUri !== undefined && { jwksUri: j.jwksUri }),
    ...(j.jwks !== undefined && { jwks: j.jwks }),
    algorithms: j.algorithms ?? DEFAULT_JWT_ALGORITHMS,
    clockSkewMs: j.clockSkew ?? DEFAULT_JWT_CLOCK_SKEW_MS,
    consumerClaim: j.consumerClaim ?? DEFAULT_JWT_CONSUMER_CLAIM,
    ...(j.rolesClaim !== undefined && { rolesClaim: j.rolesClaim }),
    requireExpiry: j.requireExpiry ?? DEFAULT_JWT_REQUIRE_EXPIRY,
  }));
}

/** Where audit lines go. */
export function auditRules(gateway: GatewayPolicy): AuditRules {
  return { sink: gateway.audit.sink, ...(gateway.audit.path !== undefined && { path: gateway.audit.path }) };
}

/**
 * Which filter-service calls a model's routes need. A route pays only for what its rules ask: no access rule,
 * limit or quota means no ext_authz call; no masking or token quota means no ext_proc stream.
 */
export function modelFilters(
  model: string,
  rules: ModelFilterRules,
  traffic: { readonly sticky: boolean; readonly pinning: boolean; readonly grpc?: boolean },
  consumers: readonly ConsumerRules[],
  rateLimitsVia: 'check' | 'envoy' = 'check',
): ModelFilters | undefined {
  const grpc = traffic.grpc === true;
  const applies = (rule: { readonly model?: string | undefined }): boolean => rule.model === undefined || rule.model === model;
  const consumerLimits = consumers.some((c) => c.requestLimits.some(applies));
  // Token quotas read JSON usage fields; a consumer's quota across all models has nothing to count on gRPC frames.
  const consumerQuotas = !grpc && consumers.some((c) => c.tokenQuotas.some(applies));
  const rateLimit = rules.requestLimits.length > 0 || consumerLimits;
  const quotas = rules.tokenQuotas.length > 0 || consumerQuotas;
  // Pricing and GenAI metrics read every answer's usage, as quotas do.
  const usage = quotas || rules.llmUsage === true;
  // Sticky splits need ext_authz too: it turns the caller's header into the hash Envoy's split reads.
  const authz = rules.access !== undefined || rateLimit || quotas || traffic.sticky;
  // Pins are judged by the filter service, never matched by Envoy on the client's headers (see filters/authz/pins.ts).
  const pinAuthz = traffic.pinning && !authz;
  const routesByVersion = traffic.pinning || (rules.access?.versions.length ?? 0) > 0;
  // Guardrails read the request for their input rules, and for output masks and services (a streamed request is refused there).
  const guardrailsRead = (rules.guardrails?.input.length ?? 0) > 0 || (rules.guardrails?.output.some((r) => r.action === 'mask' || r.service !== undefined) ?? false);
  const requestBody = rules.masking?.request !== undefined || usage || guardrailsRead;
  // Output guardrails buffer the answer (a JSON answer they refuse gets its own status); the filter service
  // turns a stream's processing to STREAMED when its headers arrive (src/ir/guardrails.ts).
  const outputGuardrails = (rules.guardrails?.output.length ?? 0) > 0;
  const responseBody: 'none' | 'buffered' | 'streamed' = rules.masking?.response !== undefined || outputGuardrails ? 'buffered' : usage ? 'streamed' : 'none';
  const extProc = requestBody || responseBody !== 'none' ? { requestBody, responseBody } : undefined;
  if (!authz && !pinAuthz && !rateLimit && !extProc) return undefined;
  // Gateway.rateLimits.via: envoy moves the limits to Envoy's rate-limit filter (ShouldRateLimit).
  return { authz, pinAuthz, routesByVersion, rateLimit, ...(rateLimit && rateLimitsVia === 'envoy' && { rateLimitFilter: true }), extProc, failOpen: rules.failOpen };
}

/** Where Envoys reach the filter service. */
export function filterServiceOf(gateway: GatewayPolicy): FilterServiceIR {
  const fs = gateway.filterService;
  return { address: fs.address, port: fs.port, timeoutMs: fs.timeout, tls: fs.tls };
}

/** A pipeline route's own access rules and limits (its steps are judged again, each as its Model). */
export function pipelineFilterRules(pipeline: PipelinePolicy, gateway: GatewayPolicy): ModelFilterRules {
  const a = pipeline.access;
  return {
    failOpen: pipeline.failOpen ?? gateway.filterService.failOpen ?? DEFAULT_FAIL_OPEN,
    access: a && { roles: [...a.roles], consumers: [...a.consumers], versions: [] },
    requestLimits: pipeline.rateLimits.map((l) => requestLimit(l, `Pipeline ${pipeline.name}: ${l.requests} per ${l.per} per consumer`)),
    tokenQuotas: [],
    masking: undefined,
  };
}

/** Where Envoys reach the pipeline service: beside the filter service, with its TLS. */
export function pipelineServiceOf(gateway: GatewayPolicy): PipelineServiceIR {
  const fs = gateway.filterService;
  return { address: fs.address, port: fs.pipelinesPort ?? DEFAULT_PIPELINES_PORT, tls: fs.tls };
}
