import type { RolloutCommand, RolloutMetricBound, RolloutPlan, RolloutState } from '../ir/types.js';
import type { VersionWindow } from '../traffic/window-stats.js';
import { isFinished } from './state.js';

/**
 * The rollout analyzer: a pure function from (plan, state, the canary's and the stable version's traffic
 * over the last interval, webhook answers, now) to the next decision. Flagger's and Argo's semantics:
 * every interval one check; all bounds held -> next step (after the last: promote, or pause when the plan
 * says so); a bound broken -> one failed check, `threshold` of them -> rollback to weight 0; too little
 * traffic to judge -> inconclusive, and past `inconclusiveLimit` in a row -> pause for a person.
 */

export type CheckVerdict = 'pass' | 'fail' | 'inconclusive';

/** A webhook's answer: a 2xx is ok; anything else (or no answer) is not. */
export interface WebhookOutcome {
  readonly ok: boolean;
  readonly detail: string;
}

export interface MetricResult {
  readonly name: RolloutMetricBound['name'];
  readonly relative: boolean;
  readonly max: number;
  /** The canary's value (percent or ms); null without data. */
  readonly canary: number | null;
  readonly stable: number | null;
  readonly verdict: CheckVerdict;
  /** "error_rate 21.3% > 1%", for reasons and logs. */
  readonly text: string;
}

/** One check: what was measured and judged. */
export interface CheckResult {
  readonly at: number;
  readonly verdict: CheckVerdict;
  readonly metrics: readonly MetricResult[];
  readonly canary: VersionWindow;
  readonly stable: VersionWindow;
  readonly webhook: WebhookOutcome | undefined;
  /** One line: why the check came out so. */
  readonly summary: string;
}

export type Decision =
  | { readonly kind: 'start'; readonly next: RolloutState }
  | { readonly kind: 'hold'; readonly reason: string }
  /** A check that changed nothing but the counters (failed below threshold, inconclusive within the limit, promotion not confirmed). */
  | { readonly kind: 'check'; readonly next: RolloutState; readonly check: CheckResult }
  | { readonly kind: 'step'; readonly next: RolloutState; readonly check: CheckResult }
  | { readonly kind: 'pause'; readonly next: RolloutState; readonly check?: CheckResult }
  | { readonly kind: 'resume'; readonly next: RolloutState }
  | { readonly kind: 'rollback'; readonly next: RolloutState; readonly check: CheckResult }
  | { readonly kind: 'abort'; readonly next: RolloutState }
  | { readonly kind: 'promote'; readonly next: RolloutState; readonly check?: CheckResult };

export interface AnalysisInput {
  readonly plan: RolloutPlan;
  readonly state: RolloutState | undefined;
  readonly now: number;
  /** The fencing generation of the lease the decision is written under. */
  readonly generation: number;
  readonly stableVersion: string;
  /** The traffic of [now - interval, now]; required when checkDue(). */
  readonly window?: { readonly canary: VersionWindow; readonly stable: VersionWindow } | undefined;
  /** The per-check webhook's answer, when the plan has one. */
  readonly checkWebhook?: WebhookOutcome | undefined;
  /** The confirm-promotion gate's answer, when the plan has one and the last step is being judged. */
  readonly confirmPromotion?: WebhookOutcome | undefined;
}

/** When the next check is due: one interval after the step began or the last check, whichever is later. */
export function nextCheckAt(plan: RolloutPlan, state: RolloutState): number {
  return Math.max(state.stepStartedAt, state.checkedAt) + plan.intervalMs;
}

/** True when a progressing rollout's next check is due at `now`. */
export function checkDue(plan: RolloutPlan, state: RolloutState | undefined, now: number): boolean {
  return state !== undefined && state.phase === 'progressing' && now >= nextCheckAt(plan, state);
}

/**
 * True when a pass over a rollout in `state` (as the last registry poll read it) could decide anything at
 * `now`: it has not started, a command is pending, a promotion is to finish, or a check is due. Otherwise the
 * controller leaves MLflow alone: reading every paused or finished rollout's version at every tick costs
 * MLflow more than all the decisions' writes, and those writes then wait behind the reads.
 */
export function passMayDecide(plan: RolloutPlan, state: RolloutState | undefined, now: number): boolean {
  if (!state || state.command !== undefined || state.phase === 'succeeded') return true;
  return checkDue(plan, state, now);
}

/** True when the check due now judges the last step, so a passing one promotes (the confirm gate is asked first). */
export function judgingLastStep(plan: RolloutPlan, state: RolloutState | undefined): boolean {
  return state !== undefined && state.step >= plan.steps.length - 1;
}

const pct = (n: number): string => `${Number(n.toFixed(2))}%`;
const ms = (n: number): string => `${Number(n.toFixed(1))}ms`;
const money = (n: number): string => `${Number(n.toPrecision(4))}/request`;

function errorRate(w: VersionWindow, include4xx: boolean): number | null {
  if (w.requests === 0) return null;
  return (100 * (w.errors5xx + (include4xx ? w.errors4xx : 0))) / w.requests;
}

function valueOf(w: VersionWindow, name: RolloutMetricBound['name']): number | null {
  if (name === 'cost_per_request') return w.costPerRequest;
  if (name === 'latency_p50') return w.latencyP50Ms;
  if (name === 'latency_p99') return w.latencyP99Ms;
  return w.ttftP95Ms;
}

/** One bound over one window pair. */
export function judgeMetric(bound: RolloutMetricBound, canary: VersionWindow, stable: VersionWindow, minRequests: number): MetricResult {
  const base = { name: bound.name, relative: bound.relative, max: bound.max };
  const isRate = bound.name === 'error_rate';
  const isCost = bound.name === 'cost_per_request';
  const c = isRate ? errorRate(canary, bound.include4xx) : valueOf(canary, bound.name);
  const s = isRate ? errorRate(stable, bound.include4xx) : valueOf(stable, bound.name);
  const show = isRate ? pct : isCost ? money : ms;
  const lacking = canary.requests < minRequests ? `canary ${canary.requests} requests` : bound.relative && stable.requests < minRequests ? `stable ${stable.requests} requests` : undefined;
  if (lacking !== undefined || c === null || (bound.relative && s === null)) {
    const why = lacking !== undefined ? `${lacking} < minRequests ${minRequests}` : 'no samples';
    return { ...base, canary: c, stable: s, verdict: 'inconclusive', text: `${bound.name}: inconclusive (${why})` };
  }
  let ok: boolean;
  let text: string;
  if (!bound.relative) {
    ok = c <= bound.max;
    text = `${bound.name} ${show(c)} ${ok ? '<=' : '>'} ${show(bound.max)}`;
  } else if (isRate) {
    const limit = (s as number) + bound.max;
    ok = c <= limit;
    text = `${bound.name} ${show(c)} ${ok ? '<=' : '>'} stable ${show(s as number)} + ${bound.max} points`;
  } else {
    const limit = (s as number) * bound.max;
    // A cost has no noise floor: a cheaper-or-equal canary passes, a dearer one by more than the ratio fails.
    ok = c <= limit || (!isCost && c - (s as number) <= bound.toleranceMs);
    text = `${bound.name} ${show(c)} ${ok ? '<=' : '>'} ${bound.max} x stable ${show(s as number)}`;
  }
  return { ...base, canary: c, stable: s, verdict: ok ? 'pass' : 'fail', text };
}

/** A whole check: a broken bound fails it (even beside inconclusive ones), then too little data, then the webhook. */
export function judge(plan: RolloutPlan, canary: VersionWindow, stable: VersionWindow, now: number, webhook?: WebhookOutcome): CheckResult {
  const metrics = plan.metrics.map((m) => judgeMetric(m, canary, stable, plan.minRequests));
  const failed = metrics.filter((m) => m.verdict === 'fail');
  const unsure = metrics.filter((m) => m.verdict === 'inconclusive');
  let verdict: CheckVerdict;
  let summary: string;
  if (failed.length > 0) {
    verdict = 'fail';
    summary = failed.map((m) => m.text).join('; ');
  } else if (unsure.length > 0) {
    verdict = 'inconclusive';
    summary = unsure.map((m) => m.text).join('; ');
  } else if (webhook && !webhook.ok) {
    verdict = 'fail';
    summary = `check webhook: ${webhook.detail}`;
  } else {
    verdict = 'pass';
    summary = metrics.map((m) => m.text).join('; ');
  }
  return { at: now, verdict, metrics, canary, stable, webhook, summary };
}

/** The state of a rollout that starts now, at its first step. */
export function startState(plan: RolloutPlan, now: number, generation: number, stableVersion: string): RolloutState {
  return {
    phase: 'progressing',
    step: 0,
    weight: plan.steps[0] ?? 0,
    failedChecks: 0,
    inconclusiveChecks: 0,
    generation,
    startedAt: now,
    stepStartedAt: now,
    checkedAt: 0,
    updatedAt: now,
    stableVersion,
    reason: undefined,
    command: undefined,
  };
}

/** The next decision for a rollout (manual commands go through applyCommand first). */
export function analyze(input: AnalysisInput): Decision {
  const { plan, state, now, generation } = input;
  if (!state) return { kind: 'start', next: startState(plan, now, generation, input.stableVersion) };
  if (state.phase === 'paused') return { kind: 'hold', reason: `paused: ${state.reason ?? 'no reason given'}` };
  if (isFinished(state.phase)) return { kind: 'hold', reason: `finished: ${state.phase}` };
  if (!checkDue(plan, state, now)) return { kind: 'hold', reason: `next check at ${new Date(nextCheckAt(plan, state)).toISOString()}` };
  if (!input.window) return { kind: 'hold', reason: 'no traffic window to judge' };

  const check = judge(plan, input.window.canary, input.window.stable, now, input.checkWebhook);
  // Checks keep to the interval's grid (a late tick does not push every later check back), unless the
  // rollout fell more than an interval behind (a lease handover, MLflow down): then the grid restarts now.
  const due = nextCheckAt(plan, state);
  const checkedAt = now - due < plan.intervalMs ? due : now;
  const touched = { ...state, generation, checkedAt, updatedAt: now };
  if (check.verdict === 'fail') {
    const failedChecks = state.failedChecks + 1;
    if (failedChecks >= plan.threshold) {
      const reason = `rolled back after ${failedChecks} failed checks (threshold ${plan.threshold}): ${check.summary}`;
      return { kind: 'rollback', next: { ...touched, phase: 'failed', weight: 0, failedChecks, inconclusiveChecks: 0, reason }, check };
    }
    return { kind: 'check', next: { ...touched, failedChecks, inconclusiveChecks: 0, reason: `failed check ${failedChecks} of ${plan.threshold}: ${check.summary}` }, check };
  }
  if (check.verdict === 'inconclusive') {
    const inconclusiveChecks = state.inconclusiveChecks + 1;
    if (inconclusiveChecks > plan.inconclusiveLimit) {
      const reason = `inconclusive: ${check.summary}; resume or promote by hand`;
      return { kind: 'pause', next: { ...touched, phase: 'paused', inconclusiveChecks, reason }, check };
    }
    return { kind: 'check', next: { ...touched, inconclusiveChecks, reason: `inconclusive check ${inconclusiveChecks}: ${check.summary}` }, check };
  }
  const passed = { ...touched, inconclusiveChecks: 0, reason: undefined };
  if (state.step < plan.steps.length - 1) {
    const step = state.step + 1;
    return { kind: 'step', next: { ...passed, step, weight: plan.steps[step] ?? state.weight, stepStartedAt: checkedAt }, check };
  }
  if (plan.onSuccess === 'pause') {
    return { kind: 'pause', next: { ...passed, phase: 'paused', reason: 'every step passed; promote by hand' }, check };
  }
  if (plan.webhooks.confirmPromotion && !input.confirmPromotion?.ok) {
    const detail = input.confirmPromotion?.detail ?? 'not asked';
    return { kind: 'check', next: { ...passed, reason: `waiting for the confirm-promotion webhook: ${detail}` }, check };
  }
  return { kind: 'promote', next: { ...passed, phase: 'succeeded', weight: 100, reason: 'every step passed' }, check };
}

/** A manual command applied to a rollout, or why it does not apply. `by` says who asked (for the reason). */
export function applyCommand(plan: RolloutPlan, state: RolloutState | undefined, command: RolloutCommand, now: number, generation: number, stableVersion: string, by: string): Decision {
  // A command before the start: the rollout starts paused at weight 0 (pause), or as commanded.
  const current = state ?? { ...startState(plan, now, generation, stableVersion), weight: command === 'pause' ? 0 : (plan.steps[0] ?? 0) };
  const base = { ...current, generation, updatedAt: now, command: undefined };
  if (isFinished(current.phase)) return { kind: 'hold', reason: `${command} ignored: the rollout has ${current.phase}` };
  switch (command) {
    case 'pause':
      if (current.phase === 'paused') return { kind: 'hold', reason: 'already paused' };
      return { kind: 'pause', next: { ...base, phase: 'paused', reason: `paused by ${by}` } };
    case 'resume':
      if (current.phase !== 'paused') return { kind: 'hold', reason: 'not paused' };
      // The step starts over: the paused time's traffic is not this step's evidence.
      return { kind: 'resume', next: { ...base, phase: 'progressing', weight: plan.steps[current.step] ?? current.weight, stepStartedAt: now, inconclusiveChecks: 0, reason: `resumed by ${by}` } };
    case 'promote':
      return { kind: 'promote', next: { ...base, phase: 'succeeded', weight: 100, reason: `promoted by ${by}` } };
    case 'abort':
      return { kind: 'abort', next: { ...base, phase: 'aborted', weight: 0, reason: `aborted by ${by}` } };
  }
}
