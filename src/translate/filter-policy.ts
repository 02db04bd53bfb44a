import { randomUUID } from 'node:crypto';
import { FILTER_POLICY_NAME, FILTER_POLICY_SCHEMA, type FilterPolicy, type LlmModelRules } from '../contract/filter-policy.js';
import type { GatewayIR, LiveVersion, MirrorTarget, ModelIR, ModelLlmIR } from '../ir/types.js';
import type { VersionProcessingRules } from '../contract/filter-policy.js';
import { canonicalJson } from '../policy/policy.js';
import { TypeUrl, type ResourceInput } from '../resources/types.js';
import { mapChanged } from '../resources/window.js';

/**
 * The FilterPolicy of an IR (every rule already resolved by the IR), and the xDS resource carrying it. It is
 * part of the same snapshot as the Envoy resources, so one edit reaches Envoys and filter services with one
 * version.
 */

const policyMemo = new WeakMap<GatewayIR, FilterPolicy>();
const resourceMemo = new WeakMap<FilterPolicy, ResourceInput>();
const modelRulesMemo = new WeakMap<ModelIR, FilterPolicy['models'][number]>();

/** The filter service's view of the gateway (one object per IR object: every xDS mode carries the same). */
export function filterPolicyOf(ir: GatewayIR): FilterPolicy {
  let fp = policyMemo.get(ir);
  if (!fp) {
    fp = buildFilterPolicy(ir);
    policyMemo.set(ir, fp);
  }
  return fp;
}

function memoisedModelRules(m: ModelIR): FilterPolicy['models'][number] {
  let rules = modelRulesMemo.get(m);
  if (!rules) {
    rules = modelRules(m);
    modelRulesMemo.set(m, rules);
  }
  return rules;
}

/** The models' rules of the last IR: a model that is the same object at the same place keeps its rules without a lookup. */
let lastRules: { readonly models: readonly ModelIR[]; readonly rules: readonly FilterPolicy['models'][number][] } | undefined;

function modelRulesOf(ir: GatewayIR): readonly FilterPolicy['models'][number][] {
  const rules = lastRules ? mapChanged(lastRules.models, lastRules.rules, ir.models, memoisedModelRules) : ir.models.map(memoisedModelRules);
  lastRules = { models: ir.models, rules };
  return rules;
}

function buildFilterPolicy(ir: GatewayIR): FilterPolicy {
  return {
    schema: FILTER_POLICY_SCHEMA,
    audit: ir.audit,
    jwtIssuers: [...ir.jwtIssuers],
    consumers: [...ir.consumers],
    models: [...modelRulesOf(ir), ...pipelineRouteRules(ir)],
    ...pipelineRules(ir),
    ...(ir.openai && { llm: { pathPrefix: ir.openai.pathPrefix } }),
  };
}

function modelRules(m: ModelIR): FilterPolicy['models'][number] {
  return {
    name: m.name,
    failOpen: m.rules.failOpen,
    pinning: m.pinning,
    ...(m.rules.access && { access: m.rules.access }),
    ...(m.sticky && { sticky: { header: m.sticky.header } }),
    live: m.live.map((l) => ({ version: l.version, aliases: [...l.aliases], weight: l.weight })),
    requestLimits: [...m.rules.requestLimits],
    tokenQuotas: [...m.rules.tokenQuotas],
    ...(m.rules.masking && { masking: m.rules.masking }),
    // The processing modes the routes' ext_proc filter uses, so the filter service knows what it will see.
    ...(m.filters?.extProc && { bodies: { request: m.filters.extProc.requestBody ? ('buffered' as const) : ('none' as const), response: m.filters.extProc.responseBody } }),
    ...versionRules(m),
    ...(m.llm && { llm: llmRules(m.llm, m.rules.llmUsage === true) }),
    ...(m.rules.guardrails && { guardrails: m.rules.guardrails }),
  };
}

/** The pipelines' steps, for the pipeline service. */
function pipelineRules(ir: GatewayIR): { pipelines?: FilterPolicy['pipelines'] } {
  const pipelines = ir.pipelines ?? [];
  if (pipelines.length === 0) return {};
  return {
    pipelines: pipelines.map((p) => ({
      name: p.name,
      mode: p.mode,
      timeoutMs: p.timeoutMs,
      maxBodyBytes: p.maxBodyBytes,
      steps: p.steps.map((s) => ({ name: s.name, model: s.model, timeoutMs: s.timeoutMs, ...(s.input !== undefined && { input: s.input }), targets: s.targets.map((t) => ({ ...t })) })),
      ...(p.output !== undefined && { output: p.output }),
    })),
    ...(ir.openai && { llm: { pathPrefix: ir.openai.pathPrefix } }),
  };
}

/** What the LLM router and adapter need of a model: never a key, only where the filter service reads it. */
function llmRules(l: ModelLlmIR, readsUsage: boolean): LlmModelRules {
  const p = l.provider;
  return {
    upstream: l.kind,
    names: [...l.names],
    endpoints: [...l.endpoints],
    upstreamModel: l.upstreamModel,
    versions: l.versions.map((v) => ({ version: v.version, upstreamModel: v.upstreamModel })),
    ...(p && {
      provider: {
        api: p.api,
        authority: authorityOf(p.host, p.port),
        basePath: p.basePath,
        ...(p.credential && { credential: p.credential }),
        ...(p.apiVersion !== undefined && { apiVersion: p.apiVersion }),
      },
    }),
    fallback: l.fallback.length > 0,
    cooldownMaxMs: l.maxCooldownMs,
    created: l.created,
    ownedBy: l.ownedBy,
    ...(l.cache && { cache: { ...l.cache } }),
    ...(readsUsage && { readsUsage: true }),
    ...(l.pricing && { pricing: { ...l.pricing, versions: l.pricing.versions.map((v) => ({ ...v })) } }),
    ...(l.genAi && { genAi: { ...l.genAi } }),
    ...(l.budgets.length > 0 && { budgets: l.budgets.map((b) => ({ ...b })) }),
    ...(l.pricing && { maxOutputTokens: l.maxOutputTokens }),
    ...(l.prompt && { prompt: l.prompt }),
  };
}

/**
 * The pipelines' own routes as entries of `models`: ext_authz and the rate limiter judge a pipeline route by
 * its name, as a model's (the two share one namespace).
 */
function pipelineRouteRules(ir: GatewayIR): FilterPolicy['models'] {
  return (ir.pipelines ?? []).map((p) => ({
    name: p.name,
    failOpen: p.rules.failOpen,
    pinning: false,
    ...(p.rules.access && { access: p.rules.access }),
    live: [],
    requestLimits: [...p.rules.requestLimits],
    tokenQuotas: [],
  }));
}

/** What the cluster-level ext_proc of each processed version reads; nothing for a model without any. */
function versionRules(m: ModelIR): { protocol?: 'mlflow' | 'oip'; registeredModel?: string; versions?: VersionProcessingRules[]; maxBodyBytes?: number } {
  const processed = [...m.live, ...(m.mirror ? [m.mirror] : [])].filter((v): v is (LiveVersion | MirrorTarget) & { processing: NonNullable<LiveVersion['processing']> } => v.processing !== undefined);
  if (processed.length === 0 || m.versionBodyLimitBytes === undefined) return {};
  const seen = new Set<string>();
  const versions = processed.filter((v) => !seen.has(v.version) && seen.add(v.version)).map((v) => ({
    version: v.version,
    protocol: v.processing.protocol,
    validateInput: v.processing.validateInput,
    ...(v.processing.signature.status === 'found' && { signature: v.processing.signature.signature }),
  }));
  if (m.protocol === 'grpc') return {};
  return { protocol: m.protocol, registeredModel: m.registeredModel, versions, maxBodyBytes: m.versionBodyLimitBytes };
}

/** The xDS resource carrying a filter policy (its JSON in canonical form, so equal policies have equal bytes). */
export function filterPolicyResource(fp: FilterPolicy): ResourceInput {
  let r = resourceMemo.get(fp);
  if (!r) {
    r = { typeUrl: TypeUrl.FilterPolicy, name: FILTER_POLICY_NAME, message: { schema_version: fp.schema, policy_json: policyJson(fp) } };
    resourceMemo.set(fp, r);
  }
  return r;
}

/** Each model's rules as canonical JSON, once per rules object (an unchanged model keeps its object). */
const ruleTexts = new WeakMap<object, string>();
/** The texts of the last policy's models, by place (the same rules object at the same place has the same text). */
let lastTexts: { readonly rules: readonly object[]; readonly texts: readonly string[] } | undefined;

function ruleText(m: object): string {
  let text = ruleTexts.get(m);
  if (text === undefined) {
    text = canonicalJson(m);
    ruleTexts.set(m, text);
  }
  return text;
}

/** Stands in for the models array while the rest is written; random, so no policy text can contain it. */
const MODELS_SLOT = `models-${randomUUID()}`;

/** canonicalJson(fp), with each model's text reused: a change costs the models it touches, not the whole text. */
function policyJson(fp: FilterPolicy): string {
  const models = lastTexts ? mapChanged(lastTexts.rules, lastTexts.texts, fp.models, ruleText) : fp.models.map(ruleText);
  lastTexts = { rules: fp.models, texts: models };
  // canonicalJson writes an array as its elements' texts joined by commas, so this is exactly canonicalJson(fp).
  return canonicalJson({ ...fp, models: MODELS_SLOT }).replace(JSON.stringify(MODELS_SLOT), () => `[${models.join(',')}]`);
}

/** host, host:port, or [v6]:port, as an HTTP :authority. */
function authorityOf(host: string, port: number): string {
  const shown = host.includes(':') ? `[${host}]` : host;
  return port === 443 ? shown : `${shown}:${port}`;
}
