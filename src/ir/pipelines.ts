import type { ConsumerRules } from '../contract/filter-policy.js';
import { pipelineRoutes } from '../policy/routes.js';
import type { Policy } from '../policy/policy.js';
import type { PipelinePolicy } from '../policy/schema/index.js';
import { DEFAULT_MAX_BODY_BYTES, DEFAULT_PIPELINE_TIMEOUT_MS, DEFAULT_STEP_TIMEOUT_MS, modelFilters, pipelineFilterRules } from './filter-rules.js';
import type { ModelIR, PipelineIR, PipelineStepIR, StepTarget } from './types.js';

/**
 * Pipelines in the IR: each step's target on every listener the pipeline is published on (the step model's
 * route there, so the step goes back through the same listener and is judged as that Model), and the
 * pipeline route's own rules. Pure.
 */

/** The path below a model's route prefix a step calls when it names none: its protocol's inference call. */
const INFERENCE_PATH = { mlflow: '/invocations', oip: '/infer' } as const;

function target(model: ModelIR, listener: { name: string; port: number }, path: string | undefined): StepTarget | undefined {
  // A step sends a JSON body: a gRPC model is no step target.
  if (model.protocol === 'grpc') return undefined;
  const routes = model.routes.filter((r) => r.listener === listener.name);
  // A route for any host first: the step can then keep the caller's Host.
  const route = routes.find((r) => r.host === '*') ?? routes[0];
  if (!route) return undefined;
  const prefix = route.pathPrefix === '/' ? '' : route.pathPrefix;
  return { listener: listener.name, port: listener.port, path: `${prefix}${path ?? INFERENCE_PATH[model.protocol]}`, host: route.host };
}

function pipelineIR(policy: Policy, p: PipelinePolicy, models: readonly ModelIR[], consumers: readonly ConsumerRules[]): PipelineIR {
  const routes = pipelineRoutes(p, policy.gateway).map((r) => ({ listener: r.listener, host: r.host, pathPrefix: r.pathPrefix }));
  const listeners = policy.gateway.listeners.filter((l) => routes.some((r) => r.listener === l.name));
  const steps = p.steps.map((s): PipelineStepIR => {
    const model = models.find((m) => m.name === s.model);
    const targets = model ? listeners.flatMap((l) => target(model, l, s.path) ?? []) : [];
    return { name: s.name, model: s.model, timeoutMs: s.timeout ?? DEFAULT_STEP_TIMEOUT_MS, ...(s.input !== undefined && { input: s.input }), targets };
  });
  const rules = pipelineFilterRules(p, policy.gateway);
  return {
    name: p.name,
    routes,
    mode: p.mode,
    timeoutMs: p.timeout ?? DEFAULT_PIPELINE_TIMEOUT_MS,
    maxBodyBytes: p.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    steps,
    ...(p.output !== undefined && { output: p.output }),
    rules,
    filters: modelFilters(p.name, rules, { sticky: false, pinning: false }, consumers, policy.gateway.rateLimits?.via),
  };
}

/** The pipelines of a policy, by name. */
export function buildPipelines(policy: Policy, models: readonly ModelIR[], consumers: readonly ConsumerRules[]): PipelineIR[] {
  return [...policy.pipelines.values()].map((p) => pipelineIR(policy, p, models, consumers));
}
