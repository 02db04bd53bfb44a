import type { GatewayIR, ModelIR } from './types.js';

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

/** Every broken invariant of the IR, as a sentence; empty when it is sound. */
export function irProblems(ir: GatewayIR): string[] {
  const problems: string[] = [];
  const listeners = new Set(ir.listeners.map((l) => l.name));
  const clusters = new Map<string, string>();
  const claim = (cluster: string, model: string): void => {
    const owner = clusters.get(cluster);
    if (owner !== undefined && owner !== model) problems.push(`cluster ${cluster} belongs to both ${owner} and ${model}`);
    clusters.set(cluster, model);
  };
  const names = new Set<string>();
  const targets = new Map<string, string>();
  const context = `${[...listeners].join('\u0000')}\u0001${ir.filterService !== undefined}`;
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
  if (ir.openai && !listeners.has(ir.openai.listener)) problems.push(`the OpenAI API is served on unknown listener ${ir.openai.listener}`);
  const llmNames = new Map<string, string>();
  for (const m of ir.models) {
    for (const n of m.llm?.names ?? []) {
      const owner = llmNames.get(n);
      if (owner !== undefined && owner !== m.name) problems.push(`LLM name ${n} names both ${owner} and ${m.name}`);
      llmNames.set(n, m.name);
    }
  }
  for (const p of ir.pipelines ?? []) {
    if (names.has(p.name)) problems.push(`pipeline ${p.name} has the name of a model or another pipeline`);
    names.add(p.name);
    for (const r of p.routes) if (!listeners.has(r.listener)) problems.push(`pipeline ${p.name} routes on unknown listener ${r.listener}`);
    for (const s of p.steps) {
      if (!ir.models.some((m) => m.name === s.model)) problems.push(`pipeline ${p.name}: step ${s.name} calls unknown model ${s.model}`);
      for (const r of p.routes) if (!s.targets.some((t) => t.listener === r.listener)) problems.push(`pipeline ${p.name}: step ${s.name} has no target on listener ${r.listener}`);
    }
    if (!ir.pipelineService || !ir.filterService) problems.push(`pipeline ${p.name} needs the pipeline and filter services, but the IR lacks them`);
  }
  return problems;
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
