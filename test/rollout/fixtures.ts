import type { RolloutPlan, RolloutState } from '../../src/ir/types.js';
import type { VersionWindow } from '../../src/traffic/window-stats.js';

/** Plans, states and windows for the analyzer's unit tests. */

export function plan(over: Partial<RolloutPlan> = {}): RolloutPlan {
  return {
    canary: { alias: 'challenger' },
    steps: [10, 50],
    intervalMs: 10_000,
    threshold: 2,
    minRequests: 20,
    inconclusiveLimit: 0,
    metrics: [{ name: 'error_rate', relative: false, max: 1, include4xx: false, toleranceMs: 5 }],
    webhooks: { confirmPromotion: undefined, check: undefined },
    onSuccess: 'promote',
    stableAlias: 'champion',
    ...over,
  };
}

export function state(over: Partial<RolloutState> = {}): RolloutState {
  return {
    phase: 'progressing',
    step: 0,
    weight: 10,
    failedChecks: 0,
    inconclusiveChecks: 0,
    generation: 1,
    startedAt: 1_000_000,
    stepStartedAt: 1_000_000,
    checkedAt: 0,
    updatedAt: 1_000_000,
    stableVersion: '1',
    reason: undefined,
    command: undefined,
    ...over,
  };
}

export function win(over: Partial<VersionWindow> = {}): VersionWindow {
  return { requests: 100, errors5xx: 0, errors4xx: 0, latencyP50Ms: 10, latencyP99Ms: 20, ttftP95Ms: null, costPerRequest: null, ...over };
}
