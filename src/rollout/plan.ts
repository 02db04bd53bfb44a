import type { RolloutMetricBound, RolloutPlan } from '../ir/types.js';
import type { ModelPolicy, RolloutPolicy } from '../policy/schema/index.js';

/**
 * The one place a Rollout document's defaults are decided (Flagger's and Argo's where they agree): the IR
 * build calls rolloutPlanOf, and everything after it (analyzer, controller, console) reads the plan.
 */

export const ROLLOUT_DEFAULTS = {
  canaryAlias: 'challenger',
  stepWeight: 10,
  maxWeight: 50,
  intervalMs: 60_000,
  threshold: 3,
  minRequests: 20,
  /** Argo's default: the first inconclusive check pauses. */
  inconclusiveLimit: 0,
  webhookTimeoutMs: 5_000,
  /** Two fast versions differ by noise; a relative latency check ignores differences below this. */
  latencyToleranceMs: 5,
  /** Without metrics, a rollout judges the canary's own 5xx rate: at most 1%. */
  metrics: [{ name: 'error_rate', relative: false, max: 1, include4xx: false, toleranceMs: 5 }] satisfies RolloutMetricBound[],
} as const;

/** The resolved plan of `rollout` for `model`: steps from steps or stepWeight/maxWeight, every default filled. */
export function rolloutPlanOf(rollout: RolloutPolicy, model: ModelPolicy): RolloutPlan {
  return {
    canary: rollout.canary ?? { alias: ROLLOUT_DEFAULTS.canaryAlias },
    steps: rollout.steps ? [...rollout.steps] : linearSteps(rollout.stepWeight ?? ROLLOUT_DEFAULTS.stepWeight, rollout.maxWeight ?? ROLLOUT_DEFAULTS.maxWeight),
    intervalMs: rollout.interval ?? ROLLOUT_DEFAULTS.intervalMs,
    threshold: rollout.threshold ?? ROLLOUT_DEFAULTS.threshold,
    minRequests: rollout.minRequests ?? ROLLOUT_DEFAULTS.minRequests,
    inconclusiveLimit: rollout.inconclusiveLimit ?? ROLLOUT_DEFAULTS.inconclusiveLimit,
    metrics: rollout.metrics
      ? rollout.metrics.map((m) => ({
          name: m.name,
          relative: m.relative,
          max: m.max,
          include4xx: m.include4xx ?? false,
          toleranceMs: m.toleranceMs ?? ROLLOUT_DEFAULTS.latencyToleranceMs,
        }))
      : ROLLOUT_DEFAULTS.metrics.map((m) => ({ ...m })),
    webhooks: {
      confirmPromotion: rollout.webhooks?.confirmPromotion && { url: rollout.webhooks.confirmPromotion.url, timeoutMs: rollout.webhooks.confirmPromotion.timeout ?? ROLLOUT_DEFAULTS.webhookTimeoutMs },
      check: rollout.webhooks?.check && { url: rollout.webhooks.check.url, timeoutMs: rollout.webhooks.check.timeout ?? ROLLOUT_DEFAULTS.webhookTimeoutMs },
    },
    onSuccess: rollout.onSuccess ?? 'promote',
    stableAlias: model.traffic && 'alias' in model.traffic.stable ? model.traffic.stable.alias : undefined,
  };
}

/** stepWeight, 2×stepWeight, … up to maxWeight (maxWeight itself last when it is not a multiple). */
export function linearSteps(stepWeight: number, maxWeight: number): number[] {
  const steps: number[] = [];
  for (let w = stepWeight; w < maxWeight; w += stepWeight) steps.push(w);
  steps.push(maxWeight);
  return steps;
}

/** The shortest time a healthy rollout takes to promote: one interval per step (Flagger's interval × steps). */
export function fastestPromotionMs(plan: RolloutPlan): number {
  return plan.intervalMs * plan.steps.length;
}
