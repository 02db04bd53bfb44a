import { randomUUID } from 'node:crypto';
import { FILTER_POLICY_NAME, FILTER_POLICY_SCHEMA, type FilterPolicy, type LlmModelRules } from '../contract/filter-policy.js';
import type { GatewayIR, LiveVersion, MirrorTarget, ModelIR, ModelLlmIR } from '../ir/types.js';
import type { VersionProcessingRules } from '../contract/filter-policy.js';
import { canonicalJson } from '../policy/policy.js';
import { TypeUrl, type ResourceInput } from '../resources/types.js';
import { mapChanged, recordChanges, sharedChanges } from '../resources/window.js';
import { withTextParts, type Part } from '../proto/codec.js';
import { startsGroup } from '../resources/segments.js';

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
  const changes = { removed: [] as FilterPolicy['models'][number][], added: [] as FilterPolicy['models'][number][] };
  const rules = lastRules ? mapChanged(lastRules.models, lastRules.rules, ir.models, memoisedModelRules, changes) : ir.models.map(memoisedModelRules);
  // What changed is known here: the policy's text groups read it (sharedChanges) without comparing the lists again.
  if (lastRules) recordChanges(lastRules.rules, rules, changes);
  lastRules = { models: ir.models, rules };
  return rules;
}

function buildFilterPolicy(ir: GatewayIR): FilterPolicy {
  return {
    schema: FILTER_POLICY_SCHEMA,
    audit: ir.audit,
    jwtIssuers: [...ir.jwtIssuers],
    consumers: [...ir.consumers],
    // The rules list itself when there is no pipeline (never changed once made: policyParts compares it with the last).
    models: (ir.pipelines ?? []).length > 0 ? [...modelRulesOf(ir), ...pipelineRouteRules(ir)] : (modelRulesOf(ir) as FilterPolicy['models']),
    ...pipelineRules(ir),
    ...(ir.openai && { llm: { pathPrefix: ir.openai.pathPrefix } }),
  };
}

type ModelRules = FilterPolicy['models'][number];

function modelRules(m: ModelIR): ModelRules {
  // Set field by field rather than spread: one per model at every build (src/objects.ts).
  const rules: { -readonly [K in keyof ModelRules]: ModelRules[K] } = {
    name: m.name,
    failOpen: m.rules.failOpen,
    pinning: m.pinning,
    live: [],
    requestLimits: [...m.rules.requestLimits],
    tokenQuotas: [...m.rules.tokenQuotas],
  };
  if (m.rules.access) rules.access = m.rules.access;
  if (m.sticky) rules.sticky = { header: m.sticky.header };
  rules.live = m.live.map((l) => ({ version: l.version, aliases: [...l.aliases], weight: l.weight }));
  if (m.rules.masking) rules.masking = m.rules.masking;
  // The processing modes the routes' ext_proc filter uses, so the filter service knows what it will see.
  if (m.filters?.extProc) rules.bodies = { request: m.filters.extProc.requestBody ? 'buffered' : 'none', response: m.filters.extProc.responseBody };
  const processed = versionRules(m);
  if (processed.protocol !== undefined) rules.protocol = processed.protocol;
  if (processed.registeredModel !== undefined) rules.registeredModel = processed.registeredModel;
  if (processed.versions !== undefined) rules.versions = processed.versions;
  if (processed.maxBodyBytes !== undefined) rules.maxBodyBytes = processed.maxBodyBytes;
  if (m.llm) rules.llm = llmRules(m.llm, m.rules.llmUsage === true);
  if (m.rules.guardrails) rules.guardrails = m.rules.guardrails;
  return rules;
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

/**
 * The xDS resource carrying a filter policy: its JSON in canonical form (so equal policies have equal bytes),
 * given to the encoder as parts (policyParts), and readable as the text itself.
 */
export function filterPolicyResource(fp: FilterPolicy): ResourceInput {
  let r = resourceMemo.get(fp);
  if (!r) {
    const parts = policyParts(fp);
    let text: string | undefined;
    const message = { schema_version: fp.schema };
    // Joined only when read (the encoder splices the parts): a 2 MB text at 10,000 models.
    Object.defineProperty(message, 'policy_json', { enumerable: true, get: () => (text ??= Buffer.concat(parts.map((p) => p.bytes)).toString('utf8')) });
    r = { typeUrl: TypeUrl.FilterPolicy, name: FILTER_POLICY_NAME, message: withTextParts(message, 'policy_json', parts) };
    resourceMemo.set(fp, r);
  }
  return r;
}

/** Each model's rules as canonical JSON, once per rules object (an unchanged model keeps its object). */
const ruleTexts = new WeakMap<object, string>();

function ruleText(m: object): string {
  let text = ruleTexts.get(m);
  if (text === undefined) {
    text = canonicalJson(m);
    ruleTexts.set(m, text);
  }
  return text;
}

type Rules = FilterPolicy['models'][number];

/**
 * A run of the policy's models, from one whose name starts a group (startsGroup) to the next such: one kept
 * part of the policy's text (its models' texts joined by commas, UTF-8), with its digest made once.
 */
interface RulesGroup {
  readonly rules: readonly Rules[];
  readonly part: Part;
}

const rulesGroup = (rules: readonly Rules[]): RulesGroup => ({ rules, part: { bytes: Buffer.from(rules.map(ruleText).join(','), 'utf8'), kept: true } });

/** The groups of the last policy's models, and the group of each model name. */
let lastGroups: { readonly models: readonly Rules[]; readonly groups: readonly RulesGroup[]; readonly groupOf: ReadonlyMap<string, number> } | undefined;

/** The models cut into groups before each model whose name starts one. */
function allGroups(models: readonly Rules[]): { groups: RulesGroup[]; groupOf: Map<string, number> } {
  const runs: Rules[][] = [];
  const groupOf = new Map<string, number>();
  for (const m of models) {
    if (runs.length === 0 || startsGroup(m.name)) runs.push([]);
    (runs[runs.length - 1] as Rules[]).push(m);
    groupOf.set(m.name, runs.length - 1);
  }
  return { groups: runs.map(rulesGroup), groupOf };
}

/**
 * The groups of the last policy with the models that changed replaced in theirs. Only when every change is a
 * model replaced at its place by one of the same name (the lists are as long, so the i-th removed and added
 * are at one place): the cuts, which follow from the names, are then the same. Undefined otherwise.
 */
function patchedGroups(models: readonly Rules[]): { groups: RulesGroup[]; groupOf: ReadonlyMap<string, number> } | undefined {
  const last = lastGroups;
  if (!last || last.models.length !== models.length) return undefined;
  const changes = sharedChanges(last.models, models);
  if (!changes || changes.removed.length !== changes.added.length) return undefined;
  const groups = [...last.groups];
  const replaced = new Map<number, Rules[]>();
  for (let i = 0; i < changes.added.length; i++) {
    const was = changes.removed[i] as Rules;
    const now = changes.added[i] as Rules;
    const g = last.groupOf.get(was.name);
    if (was.name !== now.name || g === undefined) return undefined;
    let rules = replaced.get(g);
    if (!rules) {
      rules = [...(groups[g] as RulesGroup).rules];
      replaced.set(g, rules);
    }
    const k = rules.indexOf(was);
    if (k < 0) return undefined;
    rules[k] = now;
  }
  for (const [g, rules] of replaced) groups[g] = rulesGroup(rules);
  return { groups, groupOf: last.groupOf };
}

/** Stands in for the models array while the rest is written; random, so no policy text can contain it. */
const MODELS_SLOT = `models-${randomUUID()}`;

const COMMA: Part = { bytes: Buffer.from(',') };

/**
 * canonicalJson(fp) as UTF-8 parts: the text around the models array, and the models' groups (kept parts)
 * between commas. A change costs the groups it touches, not the whole text. canonicalJson writes an array
 * as its elements' texts joined by commas, so the parts joined are exactly canonicalJson(fp).
 */
function policyParts(fp: FilterPolicy): readonly Part[] {
  const { groups, groupOf } = patchedGroups(fp.models) ?? allGroups(fp.models);
  lastGroups = { models: fp.models, groups, groupOf };
  const [before, after] = canonicalJson({ ...fp, models: MODELS_SLOT }).split(JSON.stringify(MODELS_SLOT)) as [string, string];
  const parts: Part[] = [{ bytes: Buffer.from(`${before}[`, 'utf8') }];
  groups.forEach((g, i) => {
    if (i > 0) parts.push(COMMA);
    parts.push(g.part);
  });
  parts.push({ bytes: Buffer.from(`]${after}`, 'utf8') });
  return parts;
}

/** host, host:port, or [v6]:port, as an HTTP :authority. */
function authorityOf(host: string, port: number): string {
  const shown = host.includes(':') ? `[${host}]` : host;
  return port === 443 ? shown : `${shown}:${port}`;
}
