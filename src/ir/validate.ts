import type { GatewayIR, ModelIR } from './types.js';
import { sharedChanges } from '../resources/window.js';

/**
 * The invariants every later stage relies on, checked on each IR before it is translated (and on the IR
 * files the translator goldens read): a broken one is a bug in the IR build, so nothing built from it is
 * published.
 */

export class InvalidIRError extends Error {
  override readonly name = 'InvalidIRError';
  readonly code = 'ir.invalid';
  constructor(readonly problems: readonly string[]) {
    super(`the gateway IR breaks its invariants: ${problems.slice(0, 10).join('; ')}`);
  }
}

/**
 * The models' claims (cluster and proxyless target owners, names) of the last IR whose models broke no
 * invariant: the next IR is checked by the models that changed (memoised models are kept objects).
 */
interface Claims {
  models: readonly ModelIR[];
  readonly context: string;
  readonly clusters: Map<string, string>;
  readonly targets: Map<string, string>;
  readonly names: Set<string>;
  /** Whether a model is an LLM model (known without a walk: checked whole, a model that becomes one is added). */
  readonly llm: boolean;
}
let lastClaims: Claims | undefined;

const claimedClusters = (m: ModelIR): string[] => [...m.live.map((l) => l.cluster), ...(m.mirror ? [m.mirror.cluster] : [])];

/** Every broken invariant of the IR, as a sentence; empty when it is sound. */
export function irProblems(ir: GatewayIR): string[] {
  const listeners = new Set(ir.listeners.map((l) => l.name));
  const context = `${[...listeners].join('\u0000')}\u0001${ir.filterService !== undefined}`;
  // LLM models' invariants read other models (fallback targets, shared names): those IRs are checked whole.
  const claims = lastClaims?.context === context && !lastClaims.llm && patchedClaims(ir, lastClaims, listeners, context);
  const problems: string[] = [];
  const names = claims ? claims.names : modelProblems(ir, listeners, context, problems);
  if (ir.openai && !listeners.has(ir.openai.listener)) problems.push(`the OpenAI API is served on unknown listener ${ir.openai.listener}`);
  const pipelineNames = new Set<string>();
  for (const p of ir.pipelines ?? []) {
    if (names.has(p.name) || pipelineNames.has(p.name)) problems.push(`pipeline ${p.name} has the name of a model or another pipeline`);
    pipelineNames.add(p.name);
    for (const r of p.routes) if (!listeners.has(r.listener)) problems.push(`pipeline ${p.name} routes on unknown listener ${r.listener}`);
    for (const s of p.steps) {
      if (!names.has(s.model)) problems.push(`pipeline ${p.name}: step ${s.name} calls unknown model ${s.model}`);
      for (const r of p.routes) if (!s.targets.some((t) => t.listener === r.listener)) problems.push(`pipeline ${p.name}: step ${s.name} has no target on listener ${r.listener}`);
    }
    if (!ir.pipelineService || !ir.filterService) problems.push(`pipeline ${p.name} needs the pipeline and filter services, but the IR lacks them`);
  }
  return problems;
}

/** The models' broken invariants, added to `problems`, walking every model; the models' names. */
function modelProblems(ir: GatewayIR, listeners: ReadonlySet<string>, context: string, problems: string[]): ReadonlySet<string> {
  const from = problems.length;
  const clusters = new Map<string, string>();
  const claim = (cluster: string, model: string): void => {
    const owner = clusters.get(cluster);
    if (owner !== undefined && owner !== model) problems.push(`cluster ${cluster} belongs to both ${owner} and ${model}`);
    clusters.set(cluster, model);
  };
  const names = new Set<string>();
  const targets = new Map<string, string>();
  for (const m of ir.models) {
    problems.push(...ownProblems(ir, m, listeners, context));
    for (const l of m.live) claim(l.cluster, m.name);
    if (m.mirror) claim(m.mirror.cluster, m.name);
    if (m.proxyless) {
      const owner = targets.get(m.proxyless.target);
      if (owner !== undefined) problems.push(`proxyless target ${m.proxyless.target} belongs to both ${owner} and ${m.name}`);
      targets.set(m.proxyless.target, m.name);
    }
    if (names.has(m.name)) problems.push(`model ${m.name} appears twice`);
    names.add(m.name);
    if (m.llm) problems.push(...llmProblems(ir, m));
  }
  const llmNames = new Map<string, string>();
  for (const m of ir.models) {
    for (const n of m.llm?.names ?? []) {
      const owner = llmNames.get(n);
      if (owner !== undefined && owner !== m.name) problems.push(`LLM name ${n} names both ${owner} and ${m.name}`);
      llmNames.set(n, m.name);
    }
  }
  lastClaims = problems.length === from ? { models: ir.models, context, clusters, targets, names, llm: ir.models.some((m) => m.llm) } : undefined;
  return names;
}

/**
 * The last IR's claims updated by the models that changed, when none of those breaks an invariant (the
 * others broke none, in the same context); undefined otherwise (the IR is then checked whole).
 */
function patchedClaims(ir: GatewayIR, claims: Claims, listeners: ReadonlySet<string>, context: string): Claims | undefined {
  const changes = sharedChanges(claims.models, ir.models);
  if (!changes) return undefined;
  // From here on the claims are changed in place: a problem found drops them (the whole check rebuilds them).
  lastClaims = undefined;
  for (const m of changes.removed) {
    for (const c of claimedClusters(m)) if (claims.clusters.get(c) === m.name) claims.clusters.delete(c);
    if (m.proxyless && claims.targets.get(m.proxyless.target) === m.name) claims.targets.delete(m.proxyless.target);
    claims.names.delete(m.name);
  }
  for (const m of changes.added) {
    if (m.llm || ownProblems(ir, m, listeners, context).length > 0 || claims.names.has(m.name)) return undefined;
    for (const c of claimedClusters(m)) {
      const owner = claims.clusters.get(c);
      if (owner !== undefined && owner !== m.name) return undefined;
      claims.clusters.set(c, m.name);
    }
    if (m.proxyless) {
      if (claims.targets.has(m.proxyless.target)) return undefined;
      claims.targets.set(m.proxyless.target, m.name);
    }
    claims.names.add(m.name);
  }
  claims.models = ir.models;
  lastClaims = claims;
  return claims;
}

/** A model's own invariants (what only it, the listeners and the filter service decide), once per model object and context. */
const ownMemo = new WeakMap<ModelIR, { readonly context: string; readonly problems: readonly string[] }>();

function ownProblems(ir: GatewayIR, m: ModelIR, listeners: ReadonlySet<string>, context: string): readonly string[] {
  const known = ownMemo.get(m);
  if (known && known.context === context) return known.problems;
  const problems: string[] = [];
  if (m.proxyless && m.protocol !== 'grpc') problems.push(`model ${m.name} is proxyless but speaks ${m.protocol}, not grpc`);
  for (const r of m.routes) if (!listeners.has(r.listener)) problems.push(`model ${m.name} routes on unknown listener ${r.listener}`);
  if (m.live.length > 0) {
    const total = m.live.reduce((sum, l) => sum + l.weight, 0);
    if (total !== 100) problems.push(`model ${m.name}: live weights add up to ${total}, not 100`);
    if (m.live[0]?.role !== 'stable') problems.push(`model ${m.name}: the first live version is not the stable one`);
    if (new Set(m.live.map((l) => l.version)).size !== m.live.length) problems.push(`model ${m.name}: a version is live twice`);
  }
  for (const [alias, version] of Object.entries(m.pinnableAliases)) {
    if (!m.live.some((l) => l.version === version)) problems.push(`model ${m.name}: alias ${alias} pins version ${version}, which is not live`);
  }
  if (m.filters && !ir.filterService) problems.push(`model ${m.name} calls the filter service, but the IR has none`);
  ownMemo.set(m, { context, problems });
  return problems;
}

function llmProblems(ir: GatewayIR, m: ModelIR): string[] {
  const problems: string[] = [];
  if (!ir.openai) problems.push(`model ${m.name} is an LLM model, but the IR serves no OpenAI API`);
  if (!ir.filterService) problems.push(`model ${m.name} is an LLM model, but the IR has no filter service to route it`);
  for (const f of m.llm?.fallback ?? []) {
    const target = ir.models.find((t) => t.name === f.model);
    if (!target?.live.some((l) => l.cluster === f.cluster && l.version === f.version)) problems.push(`model ${m.name}: fallback ${f.ref} names cluster ${f.cluster}, which is not live`);
  }
  return problems;
}

/** Throws InvalidIRError when the IR breaks an invariant; returns it otherwise. */
export function assertValidIR(ir: GatewayIR): GatewayIR {
  const problems = irProblems(ir);
  if (problems.length > 0) throw new InvalidIRError(problems);
  return ir;
}
