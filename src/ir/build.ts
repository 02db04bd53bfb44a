import type { Policy } from '../policy/policy.js';
import { edgeSettings } from './edge.js';
import { auditRules, consumerRules, filterServiceOf, jwtIssuerRules, modelFilterRules, modelFilters, pipelineServiceOf, versionBodyLimit } from './filter-rules.js';
import { buildPipelines } from './pipelines.js';
import { DEFAULT_LLM_TIMEOUT_MS, modelLlm, openaiApiOf, providerLiveVersion, providerOf, withFallbacks } from './llm.js';
import { policyIssue } from '../policy/policy.js';
import { isPromptModel } from '../registry/snapshot.js';
import { promptRulesOf } from './prompts.js';
import type { PolicyIssue } from '../policy/issues.js';
import { modelRoutes } from '../policy/routes.js';
import type { ConsumerRules } from '../contract/filter-policy.js';
import type { ModelPolicy, UpstreamSettings, VersionSelector } from '../policy/schema/index.js';
import type { ModelVersion, RegisteredModel, RegistrySnapshot } from '../registry/types.js';
import { signatureKey, type SignatureMap } from '../registry/signatures.js';
import { changeLimit, listChanges } from '../resources/window.js';
import { MODEL_PROTOCOLS } from '../contract/filter-policy.js';
import {
  clusterName,
  type GatewayAlert,
  type GatewayIR,
  type LiveVersion,
  type MirrorTarget,
  type ModelIR,
  type ModelProtocol,
  type ModelSettings,
  type RolloutIR,
  type RolloutPlan,
  type SignatureState,
  type UpstreamAddress,
  type VersionProcessing,
} from './types.js';
import { rolloutPlanOf } from '../rollout/plan.js';
import { servedWeight, stateFromTags } from '../rollout/state.js';
import { upstreamGuard, type ReservedAddress, type UpstreamGuard } from './upstream-guard.js';
import { untrusted } from '../observability/untrusted.js';

/**
 * The join of policy and registry into the Gateway IR. Pure: the same inputs give the same IR.
 *
 * Safety rules:
 * - only READY versions with a known address are ever live, and only at an address the upstream guard allows
 *   (src/ir/upstream-guard.ts: never Envoy's admin, Flowgate's own ports, metadata services; alert address_refused);
 * - a canary that does not resolve leaves the stable version at 100% (alert);
 * - a stable version that does not resolve keeps the model's previous live versions (alert), so a registry
 *   mistake never takes a model offline; a model that never had one answers 503.
 */

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 2_000;

// gRPC versions are checked with grpc.health.v1 (the translator emits a gRPC health check); the path says which call.
const HEALTH_PATH: Readonly<Record<ModelProtocol, string>> = { mlflow: '/ping', oip: '/v2/health/ready', grpc: '/grpc.health.v1.Health/Check' };

/** The version tag that says which protocol a version's server speaks (absent: the model's own). */
export const PROTOCOL_TAG = 'flowgate.protocol';

/** vLLM's and TGI's health path (an OpenAI-compatible server has no standard one). */
const OPENAI_HEALTH_PATH = '/health';

export interface BuildResult {
  readonly ir: GatewayIR;
  /**
   * Policy faults only the registry can reveal (a Model naming a registered model MLflow does not have),
   * placed at their file and line. The caller rejects a policy edit that has any; for a registry change they
   * are alerts only.
   */
  readonly issues: readonly PolicyIssue[];
}

/** The hash of an IR built without a registry. */
export const NO_REGISTRY = 'none';

/** What the IR is built with besides policy and registry. */
export interface BuildOptions {
  /** The control plane's own listen addresses: no model version may be served there. */
  readonly reserved?: readonly ReservedAddress[];
  /** Model-version signatures read from MLflow so far (input validation and protocol conversion read them). */
  readonly signatures?: SignatureMap | undefined;
}

/**
 * The IR of a policy and a registry snapshot; `previous` keeps a model's last live versions through a
 * registry mistake.
 */
export function buildGatewayIR(policy: Policy, registry: RegistrySnapshot | undefined, previous?: GatewayIR, options: BuildOptions = {}): BuildResult {
  const guard = upstreamGuard(policy.gateway, options.reserved);
  const consumers = consumerRulesOf(policy);
  // The previous IR by name, made only when a model reads it (a change reuses most models' entries).
  let priorByName: Map<string, ModelIR> | undefined;
  const priorOf = (name: string, at: number): ModelIR | undefined => {
    // Most often the model is at the same place in the previous IR (names are unique in an IR).
    const guess = previous?.models[at];
    if (guess?.name === name) return guess;
    return (priorByName ??= new Map(previous?.models.map((m) => [m.name, m]) ?? [])).get(name);
  };
  const reservedKey = JSON.stringify(options.reserved ?? []);
  const inputs: BuildInputs = { policy, registry, priorOf, consumers, guard, signatures: options.signatures, reservedKey };
  const policyModels = [...policy.models.values()];
  const rollouts = [...policy.rollouts.values()];
  const registryModels = registry ? [...registry.models.values()] : [];
  const last =
    lastBuild &&
    lastBuild.gateway === policy.gateway &&
    lastBuild.consumers === consumers &&
    lastBuild.reservedKey === reservedKey &&
    lastBuild.signatures === options.signatures &&
    lastBuild.withRegistry === (registry !== undefined) &&
    lastBuild.entries.length === policyModels.length
      ? lastBuild
      : undefined;
  const built = (last && patchedBuild(inputs, last, policyModels, rollouts, registryModels)) ?? walkedBuild(inputs, last, policyModels, registryModels);
  lastBuild = built.state;
  const { models, alerts, issues } = built;
  // After a build every model of the policy has its memo: more memos than models means some left the policy.
  if (modelMemo.size > policy.models.size) for (const name of modelMemo.keys()) if (!policy.models.has(name)) modelMemo.delete(name);
  const edge = edgeSettings(policy.gateway);
  const openai = openaiApiOf(policy.gateway, edge.streamIdleTimeoutMs);
  // Without an LLM model there is no chain to fill (counted, not looked for: this runs on every change).
  const resolved = built.state.llm > 0 ? withFallbacks(models, policy.models, alerts) : models;
  const pipelines = buildPipelines(policy, resolved, consumers);
  return {
    ir: {
      policyHash: policy.hash,
      registryHash: registry?.hash ?? NO_REGISTRY,
      listeners: policy.gateway.listeners.map((l) => ({ name: l.name, address: l.address, port: l.port })),
      edge,
      models: resolved,
      alerts,
      // The OpenAI API's router is the filter service's, whatever the models' own rules.
      filterService:
        built.state.filtered > 0 || pipelines.length > 0 || (openai && built.state.llm > 0)
          ? filterServiceOf(policy.gateway)
          : undefined,
      tracing: policy.gateway.tracing
        ? { address: policy.gateway.tracing.otlp.address, port: policy.gateway.tracing.otlp.port, serviceName: policy.gateway.tracing.serviceName, samplingPercent: policy.gateway.tracing.samplingPercent }
        : undefined,
      consumers,
      jwtIssuers: jwtIssuerRules(policy.gateway),
      audit: auditRules(policy.gateway),
      openai,
      ...(pipelines.length > 0 && { pipelines, pipelineService: pipelineServiceOf(policy.gateway) }),
      ...(policy.gateway.traffic?.split === 'endpoints' && { trafficSplit: 'endpoints' as const }),
    },
    issues,
  };
}

/** The version a selector names, or why it names none. */
export function selectVersion(registered: RegisteredModel | undefined, selector: VersionSelector): { version: ModelVersion } | { reason: string } {
  if (!registered) return { reason: 'the registered model does not exist' };
  let found: ModelVersion | undefined;
  let what: string;
  if ('alias' in selector) {
    what = `alias '${selector.alias}'`;
    const v = registered.aliases[selector.alias];
    found = v === undefined ? undefined : registered.versions.find((mv) => mv.version === v);
    if (!found) return { reason: `${what} is not set` };
  } else if ('stage' in selector) {
    what = `stage ${selector.stage}`;
    // MLflow's own reading of a stage: its newest version; only READY ones count here.
    const inStage = registered.versions.filter((mv) => mv.stage === selector.stage && mv.status === 'READY');
    found = inStage.at(-1);
    if (!found) return { reason: `no READY version is in ${what}` };
  } else {
    what = `version ${selector.version}`;
    found = registered.versions.find((mv) => mv.version === selector.version);
    if (!found) return { reason: `${what} does not exist` };
  }
  if (found.status !== 'READY') return { reason: `${what} is version ${found.version}, which is ${found.status}, not READY` };
  return { version: found };
}

/** Where a version is served, from the policy's address template or the version's tag. */
export function versionAddress(model: ModelPolicy, version: ModelVersion): UpstreamAddress | { reason: string } {
  const upstream = model.upstream;
  if (!upstream) return { reason: 'the model names no upstream' };
  let text: string;
  if ('addressTemplate' in upstream) {
    text = upstream.addressTemplate.replaceAll('{name}', model.registeredModel).replaceAll('{version}', version.version);
  } else {
    const tag = version.tags[upstream.versionTag];
    if (tag === undefined) return { reason: `version ${version.version} has no '${upstream.versionTag}' tag` };
    text = tag.trim();
  }
  const address = parseHostPort(text);
  // The tag is the registry writer's text: cut, since the message is logged and served on /debug/ir.
  return address ?? { reason: `version ${version.version}: '${untrusted(text, 100) ?? ''}' is not host:port` };
}

/** host:port or [v6]:port. */
export function parseHostPort(text: string): UpstreamAddress | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: (m[1] ?? m[2]) as string, port };
}

/** The protocol a version's server speaks: its `flowgate.protocol` tag, else the model's. */
export function versionProtocol(model: ModelPolicy, version: ModelVersion): ModelProtocol | { reason: string } {
  const tag = version.tags[PROTOCOL_TAG]?.trim();
  if (tag === undefined || tag === '' || model.protocol === 'grpc') return model.protocol;
  if ((MODEL_PROTOCOLS as readonly string[]).includes(tag)) return tag as ModelProtocol;
  return { reason: `version ${version.version}: tag ${PROTOCOL_TAG} is '${tag}', not one of ${MODEL_PROTOCOLS.join(', ')}` };
}

type Resolved = { version: ModelVersion; address: UpstreamAddress; protocol: ModelProtocol } | { reason: string };

/** The version a selector names, where it is served and the protocol it speaks (before the address guard). */
function resolveVersion(model: ModelPolicy, registered: RegisteredModel | undefined, selector: VersionSelector): Resolved {
  const selected = selectVersion(registered, selector);
  if ('reason' in selected) return selected;
  const address = versionAddress(model, selected.version);
  if ('reason' in address) return address;
  const protocol = versionProtocol(model, selected.version);
  if (typeof protocol === 'object') return protocol;
  return { version: selected.version, address, protocol };
}

/** The signature state of a routed version, from the map the control plane fills. */
function signatureOf(version: ModelVersion, signatures: SignatureMap | undefined): SignatureState {
  const found = signatures?.get(signatureKey(version));
  if (!found) return { status: 'pending' };
  return found.status === 'found' ? { status: 'found', signature: found.signature } : found;
}

/** What a version's cluster does with each request, or undefined when it passes them as they are. */
function processingOf(
  model: ModelPolicy,
  resolved: { version: ModelVersion; protocol: ModelProtocol },
  options: { validate: boolean; healthDefaulted: boolean },
  signatures: SignatureMap | undefined,
): VersionProcessing | undefined {
  // gRPC versions carry frames, not JSON bodies: nothing to validate or convert.
  if (resolved.protocol === 'grpc' || model.protocol === 'grpc') return undefined;
  const convert = resolved.protocol !== model.protocol;
  const validate = options.validate;
  if (!validate && !convert) return undefined;
  const healthDefaulted = options.healthDefaulted;
  return {
    protocol: resolved.protocol,
    validateInput: validate,
    convert,
    signature: signatureOf(resolved.version, signatures),
    ...(convert && healthDefaulted && { healthCheckPath: HEALTH_PATH[resolved.protocol] }),
  };
}

interface ModelInputs {
  readonly policy: Policy;
  readonly model: ModelPolicy;
  readonly registered: RegisteredModel | undefined;
  readonly prior: ModelIR | undefined;
  readonly alerts: GatewayAlert[];
  readonly consumers: readonly ConsumerRules[];
  readonly guard: UpstreamGuard;
  readonly signatures: SignatureMap | undefined;
}

/** The last consumers' rules and the consumer objects they came from (a model's memo compares the rules by identity). */
let consumerMemo: { readonly from: readonly unknown[]; readonly rules: readonly ConsumerRules[] } | undefined;

/** The consumers' rules: the same array as last time while every consumer is the same (unchanged files keep their objects). */
function consumerRulesOf(policy: Policy): readonly ConsumerRules[] {
  const from = [...policy.consumers.values()];
  const memo = consumerMemo;
  if (memo && memo.from.length === from.length && memo.from.every((c, i) => c === from[i])) return memo.rules;
  const rules = from.map(consumerRules);
  consumerMemo = { from, rules };
  return rules;
}

/** What the last build made of one model (in policy order), and what from. */
interface ModelEntry {
  readonly model: ModelPolicy;
  readonly provider: boolean;
  readonly registered: RegisteredModel | undefined;
  readonly rollout: unknown;
  /** The model's IR before the fallback chains are filled, and the alerts it raised. */
  readonly ir: ModelIR;
  readonly alerts: readonly GatewayAlert[];
  /** False when the entry read more than its own inputs (it is then built again every time). */
  readonly reusable: boolean;
}

/** What every model's entry is built with besides its own inputs. */
interface BuildInputs {
  readonly policy: Policy;
  readonly registry: RegistrySnapshot | undefined;
  readonly priorOf: (name: string, at: number) => ModelIR | undefined;
  readonly consumers: readonly ConsumerRules[];
  readonly guard: UpstreamGuard;
  readonly signatures: SignatureMap | undefined;
  readonly reservedKey: string;
}

/**
 * The last build: its gateway-wide inputs, its entries (in policy order) and what the next build compares
 * to find what changed (the policy's models, rollouts and the registry's models, as lists of objects).
 */
interface BuildState {
  readonly gateway: Policy['gateway'];
  readonly consumers: readonly ConsumerRules[];
  readonly reservedKey: string;
  readonly signatures: SignatureMap | undefined;
  readonly withRegistry: boolean;
  readonly entries: readonly ModelEntry[];
  readonly policyModels: readonly ModelPolicy[];
  readonly rollouts: readonly unknown[];
  readonly registryModels: readonly RegisteredModel[];
  /** Entry indices by registered model name. */
  readonly byRegistered: ReadonlyMap<string, readonly number[]>;
  /** Indices of the entries that are not reusable (built every time). */
  readonly rebuilt: readonly number[];
  readonly models: readonly ModelIR[];
  /** The entries' alerts, in order. */
  readonly alerts: readonly GatewayAlert[];
  /** How many models are LLM models, and how many call the filter service (a filter, or a version's body limit). */
  readonly llm: number;
  readonly filtered: number;
}

let lastBuild: BuildState | undefined;

interface Built {
  readonly models: ModelIR[];
  readonly alerts: GatewayAlert[];
  readonly issues: PolicyIssue[];
  readonly state: BuildState;
}

const isFiltered = (m: ModelIR): boolean => m.filters !== undefined || m.versionBodyLimitBytes !== undefined;

/** One model's entry, built; its policy issues are added to `issues`. */
function buildEntry(inputs: BuildInputs, model: ModelPolicy, at: number, rollout: unknown, issues: PolicyIssue[]): ModelEntry {
  const { policy, registry, consumers, guard, signatures, reservedKey } = inputs;
  const alerts: GatewayAlert[] = [];
  const issuesFrom = issues.length;
  const provider = providerOf(model);
  const registered = provider ? undefined : registry?.models.get(model.registeredModel);
  if (registry && !registered && !provider) {
    issues.push(
      policyIssue(policy, 'Model', model.name, [model.registeredModel === model.name ? 'name' : 'registeredModel'], `registered model '${model.registeredModel}' does not exist in the MLflow registry`),
    );
    alerts.push({ code: 'unknown_registered_model', model: model.name, message: `registered model '${model.registeredModel}' is not in the registry` });
  }
  if (registered && isPromptModel(registered)) {
    issues.push(
      policyIssue(policy, 'Model', model.name, [model.registeredModel === model.name ? 'name' : 'registeredModel'], `'${model.registeredModel}' is a prompt of MLflow's Prompt Registry, not a model: name it under llm.prompt`),
    );
  }
  const prior = inputs.priorOf(model.name, at);
  const resolvedModel = memoisedModel({ policy, model, registered, prior, alerts, consumers, guard, signatures }, reservedKey);
  const prompt = promptRulesOf(model, registry, prior?.llm?.prompt);
  if (prompt.problem && registry) {
    issues.push(policyIssue(policy, 'Model', model.name, prompt.problem.path, prompt.problem.message));
    const kept = prompt.rules?.template;
    alerts.push({ code: 'prompt_unresolved', model: model.name, message: kept ? `${prompt.problem.message}; still serving ${kept.name}/${kept.version}` : `${prompt.problem.message}; chat requests are refused` });
  }
  const ir = resolvedModel.llm && prompt.rules ? { ...resolvedModel, llm: { ...resolvedModel.llm, prompt: prompt.rules } } : resolvedModel;
  // Reusable when it read only the model, its registered model and its rollout: not the previous IR (the
  // stable version did not resolve), not the Prompt Registry, and raised no policy issue (placed by file).
  const reusable = modelMemo.get(model.name)?.usedPrior === false && prompt.rules === undefined && issues.length === issuesFrom;
  return { model, provider: provider !== undefined, registered, rollout, ir, alerts, reusable };
}

/** The state of a build of `entries`, with the lists the next build compares. */
function stateOf(inputs: BuildInputs, entries: readonly ModelEntry[], policyModels: readonly ModelPolicy[], registryModels: readonly RegisteredModel[], models: readonly ModelIR[], alerts: readonly GatewayAlert[]): BuildState {
  const byRegistered = new Map<string, number[]>();
  const rebuilt: number[] = [];
  let llm = 0;
  let filtered = 0;
  entries.forEach((e, i) => {
    const at = byRegistered.get(e.model.registeredModel);
    if (at) at.push(i);
    else byRegistered.set(e.model.registeredModel, [i]);
    if (!e.reusable) rebuilt.push(i);
    if (e.ir.llm) llm++;
    if (isFiltered(e.ir)) filtered++;
  });
  return {
    gateway: inputs.policy.gateway,
    consumers: inputs.consumers,
    reservedKey: inputs.reservedKey,
    signatures: inputs.signatures,
    withRegistry: inputs.registry !== undefined,
    entries,
    policyModels,
    rollouts: [...inputs.policy.rollouts.values()],
    registryModels,
    byRegistered,
    rebuilt,
    models,
    alerts,
    llm,
    filtered,
  };
}

/** Every model walked: an entry whose own inputs are the same objects as the last build's at its place is reused. */
function walkedBuild(inputs: BuildInputs, last: BuildState | undefined, policyModels: readonly ModelPolicy[], registryModels: readonly RegisteredModel[]): Built {
  const { policy, registry } = inputs;
  const models: ModelIR[] = [];
  const alerts: GatewayAlert[] = [];
  const issues: PolicyIssue[] = [];
  const entries = policyModels.map((model, i) => {
    const rollout = policy.rollouts.get(model.name);
    const kept = last?.entries[i];
    const reused =
      kept && kept.reusable && kept.model === model && kept.rollout === rollout && kept.registered === (kept.provider ? undefined : registry?.models.get(model.registeredModel)) ? kept : undefined;
    const entry = reused ?? buildEntry(inputs, model, i, rollout, issues);
    models.push(entry.ir);
    for (const a of entry.alerts) alerts.push(a);
    return entry;
  });
  // A copy of the alerts: the fallback chains' are added to the build's own.
  return { models, alerts, issues, state: stateOf(inputs, entries, policyModels, registryModels, models, [...alerts]) };
}

/**
 * The last build patched by what changed, found without reading every model: the policy's models and
 * rollouts and the registry's models are compared with the last build's as lists of objects (an unchanged
 * model keeps its object in both). Undefined when the change is not a patch (models added, removed or
 * reordered, a rollout changed): the build then walks every model.
 */
function patchedBuild(inputs: BuildInputs, last: BuildState, policyModels: readonly ModelPolicy[], rollouts: readonly unknown[], registryModels: readonly RegisteredModel[]): Built | undefined {
  if (rollouts.length !== last.rollouts.length || rollouts.some((r, i) => r !== last.rollouts[i])) return undefined;
  const dirty = new Set<number>(last.rebuilt);
  for (let i = 0; i < policyModels.length; i++) {
    const model = policyModels[i] as ModelPolicy;
    if (model === last.policyModels[i]) continue;
    // Another model at this place: the order changed.
    if (model.name !== (last.policyModels[i] as ModelPolicy).name) return undefined;
    dirty.add(i);
  }
  const changed = listChanges(last.registryModels, registryModels, changeLimit(registryModels.length));
  if (!changed) return undefined;
  for (const r of [...changed.removed, ...changed.added]) for (const i of last.byRegistered.get(r.name) ?? []) dirty.add(i);
  const entries = [...last.entries];
  const models = [...last.models];
  const issues: PolicyIssue[] = [];
  let llm = last.llm;
  let filtered = last.filtered;
  let alertsMoved = false;
  const rebuilt: number[] = [];
  for (const i of [...dirty].sort((a, b) => a - b)) {
    const before = entries[i] as ModelEntry;
    const model = policyModels[i] as ModelPolicy;
    const rollout = inputs.policy.rollouts.get(model.name);
    const registered = before.provider ? undefined : inputs.registry?.models.get(model.registeredModel);
    const entry = before.reusable && before.model === model && before.rollout === rollout && before.registered === registered ? before : buildEntry(inputs, model, i, rollout, issues);
    // A model's registered model is its own: the index by name stays right while the models' order does.
    if (entry.model.registeredModel !== before.model.registeredModel) return undefined;
    entries[i] = entry;
    models[i] = entry.ir;
    if (!entry.reusable) rebuilt.push(i);
    llm += (entry.ir.llm ? 1 : 0) - (before.ir.llm ? 1 : 0);
    filtered += (isFiltered(entry.ir) ? 1 : 0) - (isFiltered(before.ir) ? 1 : 0);
    if (entry.alerts.length > 0 || before.alerts.length > 0) alertsMoved = true;
  }
  const alerts = alertsMoved ? entries.flatMap((e) => e.alerts) : [...last.alerts];
  return {
    models,
    alerts,
    issues,
    state: { ...last, entries, policyModels, rollouts, registryModels, rebuilt, models, alerts: [...alerts], llm, filtered },
  };
}

/** What a model's IR was last built from, what it was and the alerts it raised. */
interface ModelMemo {
  readonly model: ModelPolicy;
  readonly registered: RegisteredModel | undefined;
  readonly gateway: Policy['gateway'];
  readonly rollout: unknown;
  readonly consumers: readonly ConsumerRules[];
  readonly reservedKey: string;
  /** Compared only when the IR read them: the previous IR (the stable version did not resolve), signatures (a version is processed). */
  readonly prior: ModelIR | undefined;
  readonly usedPrior: boolean;
  readonly signatures: SignatureMap | undefined;
  readonly usedSignatures: boolean;
  readonly output: ModelIR;
  readonly alerts: readonly GatewayAlert[];
}

/**
 * Each model's last build, by name. A model whose inputs are the same objects as last time (the registry
 * reuses an unchanged model's object, the policy loader an unchanged file's) gets the same ModelIR object
 * back, and the translators and the encoder reuse what they made of it: a change costs the models it touches.
 */
const modelMemo = new Map<string, ModelMemo>();

function memoisedModel(inputs: ModelInputs, reservedKey: string): ModelIR {
  const { policy, model, registered, prior, alerts, consumers, signatures } = inputs;
  const rollout = policy.rollouts.get(model.name);
  const memo = modelMemo.get(model.name);
  if (
    memo &&
    memo.model === model &&
    memo.registered === registered &&
    memo.gateway === policy.gateway &&
    memo.rollout === rollout &&
    memo.consumers === consumers &&
    memo.reservedKey === reservedKey &&
    (!memo.usedPrior || memo.prior === prior) &&
    (!memo.usedSignatures || memo.signatures === signatures)
  ) {
    alerts.push(...memo.alerts);
    return memo.output;
  }
  const own: GatewayAlert[] = [];
  // The model's own alerts are collected apart (kept with its memo); its inputs are passed as they are, not copied.
  const { ir, usedPrior } = resolveModel(inputs, own);
  alerts.push(...own);
  const usedSignatures = [...ir.live, ...(ir.mirror ? [ir.mirror] : [])].some((v) => v.processing !== undefined);
  modelMemo.set(model.name, { model, registered, gateway: policy.gateway, rollout, consumers, reservedKey, prior, usedPrior, signatures, usedSignatures, output: ir, alerts: own });
  return ir;
}

function resolveModel({ policy, model, registered, prior, consumers, guard, signatures }: ModelInputs, alerts: GatewayAlert[]): { ir: ModelIR; usedPrior: boolean } {
  const alert = (code: GatewayAlert['code'], message: string): void => {
    // One refused address named by several selectors (stable and mirror) is one alert.
    if (!alerts.some((a) => a.model === model.name && a.code === code && a.message === message)) alerts.push({ code, model: model.name, message });
  };
  const resolve = (selector: VersionSelector): Resolved => {
    const resolved = resolveVersion(model, registered, selector);
    if ('reason' in resolved) return resolved;
    const refusal = guard.refusal(resolved.address);
    if (refusal !== undefined) {
      const reason = `version ${resolved.version.version}: ${refusal}`;
      alert('address_refused', reason);
      return { reason };
    }
    return resolved;
  };
  const rules = modelFilterRules(model, policy.gateway);
  const hc = model.healthCheck !== undefined ? model.healthCheck : policy.gateway.defaults.healthCheck;
  const options = { validate: rules.validation !== undefined, healthDefaulted: hc !== undefined && hc.path === undefined };
  const process = (r: { version: ModelVersion; protocol: ModelProtocol }): VersionProcessing | undefined => processingOf(model, r, options, signatures);
  const live: LiveVersion[] = [];
  const provider = providerOf(model);
  const traffic = model.traffic;
  const stable: Resolved = provider ? { reason: 'provider' } : traffic ? resolve(traffic.stable) : { reason: 'the model names no traffic plan' };
  const rolloutPolicy = policy.rollouts.get(model.name);
  const rollout = rolloutPolicy ? resolveRollout(rolloutPlanOf(rolloutPolicy, model), resolve, stable) : undefined;
  // What was live before is kept only where the guard still allows it (a deny rule may have been added since).
  const keepable = prior?.live.filter((l) => guard.refusal(l.address) === undefined) ?? [];
  let keptLastLive = false;
  if (provider) {
    live.push(providerLiveVersion(model, provider));
  } else if ('version' in stable) {
    // A Rollout owns the canary: its weight comes from the canary version's tags, never from the policy.
    const canarySpec = rollout ? { ...rollout.ir.plan.canary, weight: rollout.ir.weight } : traffic?.canary;
    const canary = rollout ? rollout.canary : canarySpec ? resolve(canarySpec) : undefined;
    if (!rollout && canarySpec && canary && 'reason' in canary) alert('canary_unresolved', `canary not routed (${canary.reason}); the stable version takes 100%`);
    const canaryLive = canarySpec && canary && 'version' in canary && canary.version.version !== stable.version.version ? canary : undefined;
    const canaryWeight = canaryLive && canarySpec ? canarySpec.weight : 0;
    live.push(liveVersion(model, stable.version, stable.address, 'stable', 100 - canaryWeight, process(stable)));
    // A rollout's canary at weight 0 (not started, failed, aborted) is not live: no traffic, no pin.
    if (canaryLive && (!rollout || canaryWeight > 0)) live.push(liveVersion(model, canaryLive.version, canaryLive.address, 'canary', canaryWeight, process(canaryLive)));
  } else if (prior && keepable.length === prior.live.length && keepable.length > 0) {
    keptLastLive = true;
    live.push(...prior.live);
    alert('kept_last_live', `stable version not resolved (${stable.reason}); keeping the last live versions ${prior.live.map((l) => l.version).join(', ')}`);
  } else if (keepable[0]) {
    // Some of the last live versions are refused now: the first one left takes all the traffic.
    keptLastLive = true;
    live.push({ ...keepable[0], role: 'stable', weight: 100 });
    alert('kept_last_live', `stable version not resolved (${stable.reason}); keeping the last live version ${keepable[0].version} (others are refused now)`);
  } else {
    alert('no_live_version', `no live version (${stable.reason}); its routes answer 503`);
  }

  let mirror: MirrorTarget | undefined;
  const mirrorSpec = traffic?.mirror;
  if (mirrorSpec) {
    const m = resolve(mirrorSpec);
    if ('reason' in m) alert('mirror_unresolved', `mirror not sent (${m.reason})`);
    else {
      const processing = process(m);
      mirror = { version: m.version.version, cluster: clusterName(model.name, m.version.version), address: m.address, percent: mirrorSpec.percent, ...(processing && { processing }) };
    }
  }
  for (const v of [...live, ...(mirror ? [mirror] : [])]) {
    const sig = v.processing?.validateInput ? v.processing.signature : undefined;
    if (sig && sig.status !== 'found') {
      const why = sig.status === 'pending' ? 'its signature has not been read from MLflow yet' : sig.status === 'none' ? 'its MLmodel declares no signature' : `its signature is unreadable (${sig.reason})`;
      alert('no_signature', `version ${v.version}: ${why}; its requests pass unchecked`);
    }
  }
  const processed = [...live, ...(mirror ? [mirror] : [])].some((v) => v.processing !== undefined);

  const pinnableAliases: Record<string, string> = {};
  for (const l of live) for (const a of l.aliases) pinnableAliases[a] = l.version;

  const ir: ModelIR = {
    name: model.name,
    registeredModel: model.registeredModel,
    protocol: model.protocol,
    ...(model.protocol === 'grpc' && model.grpc?.service !== undefined && { grpcService: model.grpc.service }),
    ...(model.proxyless && { proxyless: { target: model.proxyless.target } }),
    routes: modelRoutes(model, policy.gateway).map((r) => ({ listener: r.listener, host: r.host, pathPrefix: r.pathPrefix })),
    live,
    pinnableAliases,
    // A provider's model has one version: nothing to pin.
    pinning: model.pinning && !provider,
    sticky: traffic?.sticky ? { header: traffic.sticky.header } : undefined,
    mirror,
    settings: settingsOf(model, policy.gateway.defaults),
    keptLastLive,
    rules,
    filters: modelFilters(model.name, rules, { sticky: traffic?.sticky !== undefined, pinning: model.pinning && !provider, grpc: model.protocol === 'grpc' }, consumers, policy.gateway.rateLimits?.via),
    llm: modelLlm(model, registered, [...live.map((l) => l.version), ...(mirror ? [mirror.version] : [])], policy.gateway),
    ...(rollout && { rollout: rollout.ir }),
    ...(processed && { versionBodyLimitBytes: versionBodyLimit(model) }),
  };
  // The previous IR is read only when the stable version does not resolve.
  return { ir, usedPrior: !provider && !('version' in stable) };
}

/** A Model's rollout: the canary its plan names, and the state and weight its tags give. */
function resolveRollout(plan: RolloutPlan, resolve: (selector: VersionSelector) => Resolved, stable: Resolved): { ir: RolloutIR; canary: Resolved } {
  const canary = resolve(plan.canary);
  const stableVersion = 'version' in stable ? stable.version.version : undefined;
  let idle: string | undefined;
  if ('reason' in canary) idle = `no canary: ${canary.reason}`;
  else if (stableVersion === undefined) idle = 'the stable version does not resolve';
  else if (canary.version.version === stableVersion) idle = `the canary is the stable version (${stableVersion})`;
  const state = 'version' in canary ? stateFromTags(canary.version.tags) : undefined;
  return {
    canary,
    ir: {
      plan,
      canaryVersion: idle === undefined && 'version' in canary ? canary.version.version : undefined,
      stableVersion,
      state,
      weight: idle === undefined ? servedWeight(state) : 0,
      idle,
    },
  };
}

function liveVersion(model: ModelPolicy, version: ModelVersion, address: UpstreamAddress, role: LiveVersion['role'], weight: number, processing: VersionProcessing | undefined): LiveVersion {
  const live: { -readonly [K in keyof LiveVersion]: LiveVersion[K] } = { version: version.version, aliases: [...version.aliases].sort(), weight, role, cluster: clusterName(model.name, version.version), address };
  if (processing) live.processing = processing;
  return live;
}

/** A Model's own setting replaces the Gateway default's whole block. */
function settingsOf(model: ModelPolicy, defaults: UpstreamSettings): ModelSettings {
  const pick = <K extends keyof UpstreamSettings>(key: K): UpstreamSettings[K] => (model[key] !== undefined ? model[key] : defaults[key]);
  // A provider's health is not ours to probe; it answers for itself (and fallback covers its failures).
  const hc = model.llm?.upstream === 'provider' ? undefined : pick('healthCheck');
  const retries = pick('retries');
  const cb = pick('circuitBreakers');
  const od = pick('outlierDetection');
  return {
    timeoutMs: pick('timeout') ?? (model.llm ? DEFAULT_LLM_TIMEOUT_MS : DEFAULT_TIMEOUT_MS),
    connectTimeoutMs: pick('connectTimeout') ?? DEFAULT_CONNECT_TIMEOUT_MS,
    retries: retries && { attempts: retries.attempts, on: [...retries.on], perTryTimeoutMs: retries.perTryTimeout },
    loadBalancer: pick('loadBalancer') ?? 'least_request',
    circuitBreakers: cb && { maxConnections: cb.maxConnections, maxPendingRequests: cb.maxPendingRequests, maxRequests: cb.maxRequests, maxRetries: cb.maxRetries },
    outlierDetection: od && { consecutive5xx: od.consecutive5xx, intervalMs: od.interval, baseEjectionTimeMs: od.baseEjectionTime, maxEjectionPercent: od.maxEjectionPercent },
    healthCheck: hc && {
      path: hc.path ?? (model.llm && model.llm.upstream !== 'mlflow' ? OPENAI_HEALTH_PATH : HEALTH_PATH[model.protocol]),
      intervalMs: hc.interval,
      timeoutMs: hc.timeout,
      healthyThreshold: hc.healthyThreshold,
      unhealthyThreshold: hc.unhealthyThreshold,
    },
  };
}
