import { z } from 'zod';
import { aliasName, duration, httpUrl, parseDuration, resourceName, versionNumber, wholeNumber } from '../fields.js';
import { shown } from '../issues.js';

/**
 * The Rollout document: an automated progressive rollout of one Model's canary version (Flagger / Argo
 * Rollouts semantics: steps, interval, threshold, inconclusive -> pause), judged on live traffic. Absent
 * fields stay absent here; src/rollout/plan.ts (called by the IR build) decides every default.
 */

export const ROLLOUT_METRICS = ['error_rate', 'latency_p50', 'latency_p99', 'ttft_p95', 'cost_per_request'] as const;
export type RolloutMetricName = (typeof ROLLOUT_METRICS)[number];

/**
 * One metric bound after parsing: `max` is a percent (error_rate), milliseconds (absolute latency), currency
 * units per request (absolute cost_per_request) or a ratio to the stable version (relative latency and cost).
 */
export interface RolloutMetricSpec {
  readonly name: RolloutMetricName;
  /** Compared with the stable version over the same window instead of with a fixed bound. */
  readonly relative: boolean;
  readonly max: number;
  /** error_rate only: 4xx answers count as errors too (absent: the plan's default, false). */
  readonly include4xx: boolean | undefined;
  /** Relative latency only: a difference under it never fails (absent: the plan's default). */
  readonly toleranceMs: number | undefined;
}

const metric = z
  .strictObject({
    name: z.enum(ROLLOUT_METRICS),
    relative: z.boolean().default(false),
    max: z.union([z.number(), z.string()], { error: (iss) => (iss.input === undefined ? undefined : `must be a number or a duration (got ${shown(iss.input)})`) }),
    include4xx: z.boolean().optional(),
    tolerance: duration({ min: 0, max: 60_000 }).optional(),
  })
  .transform((m, ctx): RolloutMetricSpec => {
    const fail = (path: string, message: string): never => {
      ctx.addIssue({ code: 'custom', path: [path], message });
      return z.NEVER;
    };
    if (m.include4xx !== undefined && m.name !== 'error_rate') return fail('include4xx', 'only error_rate counts 4xx answers');
    if (m.tolerance !== undefined && (m.name === 'error_rate' || m.name === 'cost_per_request' || !m.relative)) return fail('tolerance', 'only a relative latency metric has a tolerance');
    let max: number;
    if (m.name === 'error_rate') {
      // Relative: points above the stable version's rate; absolute: the rate itself, in percent.
      if (typeof m.max !== 'number' || !(m.max >= 0 && m.max <= 100)) return fail('max', `must be a percentage between 0 and 100 (got ${shown(m.max)})`);
      max = m.max;
    } else if (m.relative) {
      if (typeof m.max !== 'number' || !(m.max >= 1 && m.max <= 1000)) {
        return fail('max', `a relative ${m.name === 'cost_per_request' ? 'cost' : 'latency'} bound is a ratio to the stable version, between 1 and 1000, e.g. 1.5 (got ${shown(m.max)})`);
      }
      max = m.max;
    } else if (m.name === 'cost_per_request') {
      // In the currency of the model's price table (llm.pricing), per request.
      if (typeof m.max !== 'number' || !(m.max >= 0 && m.max <= 1_000_000)) return fail('max', `an absolute cost bound is the most a request may cost on average, in the price table's currency, e.g. 0.002 (got ${shown(m.max)})`);
      max = m.max;
    } else {
      const ms = typeof m.max === 'string' ? parseDuration(m.max) : undefined;
      if (ms === undefined || ms < 1 || ms > 600_000) return fail('max', `an absolute latency bound is a duration between 1ms and 10m, e.g. 500ms (got ${shown(m.max)})`);
      max = ms;
    }
    return { name: m.name, relative: m.relative, max, include4xx: m.include4xx, toleranceMs: m.tolerance };
  });

const webhook = z.strictObject({ url: httpUrl, timeout: duration({ max: 60_000 }).optional() });

/** The canary a Rollout ramps up: one version named by alias or number (stages are for stable versions). */
const canarySelector = z
  .strictObject({ alias: aliasName.optional(), version: versionNumber.optional() })
  .transform((s, ctx): { readonly alias: string } | { readonly version: string } => {
    if (s.alias !== undefined && s.version === undefined) return { alias: s.alias };
    if (s.version !== undefined && s.alias === undefined) return { version: s.version };
    ctx.addIssue({ code: 'custom', message: `must name the canary by exactly one of alias or version (found ${s.alias === undefined ? 'none' : 'both'})` });
    return z.NEVER;
  });

export const RolloutSchema = z
  .strictObject({
    kind: z.literal('Rollout'),
    /** The Model (by its policy name) whose canary this rolls out; one Rollout per Model. */
    model: resourceName,
    canary: canarySelector.optional(),
    /** Canary weights in percent, in order (Flagger's stepWeights; Argo's setWeight steps). */
    steps: z.array(wholeNumber(1, 100)).min(1).max(100).optional(),
    stepWeight: wholeNumber(1, 100).optional(),
    maxWeight: wholeNumber(1, 100).optional(),
    interval: duration({ min: 500, max: 86_400_000 }).optional(),
    threshold: wholeNumber(1, 1000).optional(),
    minRequests: wholeNumber(0, 1_000_000_000).optional(),
    inconclusiveLimit: wholeNumber(0, 1000).optional(),
    metrics: z.array(metric).min(1).optional(),
    webhooks: z.strictObject({ confirmPromotion: webhook.optional(), check: webhook.optional() }).optional(),
    onSuccess: z.enum(['promote', 'pause']).optional(),
  })
  .superRefine((r, ctx) => {
    if (r.steps && (r.stepWeight !== undefined || r.maxWeight !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['steps'], message: 'give either steps or stepWeight/maxWeight, not both' });
    }
    r.steps?.forEach((w, i) => {
      const before = r.steps?.[i - 1];
      if (before !== undefined && w <= before) ctx.addIssue({ code: 'custom', path: ['steps', i], message: `steps must increase (${w} follows ${before})` });
    });
    if (r.maxWeight !== undefined && r.stepWeight !== undefined && r.stepWeight > r.maxWeight) {
      ctx.addIssue({ code: 'custom', path: ['stepWeight'], message: `stepWeight ${r.stepWeight} is above maxWeight ${r.maxWeight}` });
    }
    const seen = new Set<string>();
    r.metrics?.forEach((m, i) => {
      const key = `${m.name}/${m.relative ? 'relative' : 'absolute'}`;
      if (seen.has(key)) ctx.addIssue({ code: 'custom', path: ['metrics', i], message: `${m.relative ? 'relative' : 'absolute'} ${m.name} is bounded twice` });
      seen.add(key);
    });
  });

export type RolloutPolicy = z.output<typeof RolloutSchema>;
