import { z } from 'zod';
import { LIMIT_ALGORITHMS, WINDOWS } from '../../contract/filter-policy.js';
import { aliasName, duration, httpPath, numberIn, versionNumber, wholeNumber } from '../fields.js';

/**
 * Blocks more than one document kind uses: version selectors, the upstream settings a Model sets and
 * Gateway.defaults defaults, and the shapes of request limits and token quotas. Schemas fill no default that
 * the IR decides (masking modes, token count kinds, limit algorithms, failOpen): absent stays absent here.
 * Durations come out as milliseconds.
 */

const STAGES = ['Production', 'Staging'] as const;
const stage = z.enum(STAGES);

const selectorShape = { alias: aliasName.optional(), stage: stage.optional(), version: versionNumber.optional() };

/** One MLflow model version, named by exactly one of alias, stage (newest READY in it) or version. */
export type VersionSelector = { readonly alias: string } | { readonly stage: (typeof STAGES)[number] } | { readonly version: string };

/** Reduces the all-optional input shape to the one selector it names, or reports why it names none or several. */
function toSelector(v: { alias?: string | undefined; stage?: (typeof STAGES)[number] | undefined; version?: string | undefined }, ctx: z.RefinementCtx): VersionSelector {
  const given = (['alias', 'stage', 'version'] as const).filter((k) => v[k] !== undefined);
  if (given.length !== 1) {
    const found = given.length === 0 ? 'none' : given.join(' and ');
    ctx.addIssue({ code: 'custom', message: `must name a version by exactly one of alias, stage or version (found ${found})` });
    return z.NEVER;
  }
  if (v.alias !== undefined) return { alias: v.alias };
  if (v.stage !== undefined) return { stage: v.stage };
  return { version: v.version as string };
}

export const stableSelector = z.strictObject(selectorShape).transform(toSelector);
export const canarySelector = z
  .strictObject({ ...selectorShape, weight: wholeNumber(0, 100) })
  .transform((v, ctx) => ({ ...toSelector(v, ctx), weight: v.weight }));
export const mirrorSelector = z
  .strictObject({ ...selectorShape, percent: numberIn(0, 100, { exclusiveMin: true }) })
  .transform((v, ctx) => ({ ...toSelector(v, ctx), percent: v.percent }));

const RETRY_ON = ['5xx', 'gateway-error', 'reset', 'reset-before-request', 'connect-failure', 'retriable-4xx', 'refused-stream', 'envoy-ratelimited'] as const;

const retries = z.strictObject({
  attempts: wholeNumber(0, 10),
  on: z.array(z.enum(RETRY_ON)).min(1).default(['5xx', 'reset', 'connect-failure']),
  perTryTimeout: duration().optional(),
});

const circuitBreakers = z.strictObject({
  maxConnections: wholeNumber(1, 1_000_000).optional(),
  maxPendingRequests: wholeNumber(1, 1_000_000).optional(),
  maxRequests: wholeNumber(1, 1_000_000).optional(),
  maxRetries: wholeNumber(0, 1_000_000).optional(),
});

const outlierDetection = z.strictObject({
  consecutive5xx: wholeNumber(1, 1000).optional(),
  interval: duration().optional(),
  baseEjectionTime: duration().optional(),
  maxEjectionPercent: wholeNumber(0, 100).optional(),
});

const healthCheck = z.strictObject({
  /** Absent: the IR picks the protocol's health path (mlflow /ping, oip /v2/health/ready). */
  path: httpPath.optional(),
  interval: duration().prefault('5s'),
  timeout: duration().prefault('1s'),
  healthyThreshold: wholeNumber(1, 100).default(1),
  unhealthyThreshold: wholeNumber(1, 100).default(3),
});

/** The upstream settings a Model may set and Gateway.defaults may default; a Model's key replaces the default's whole. */
export const upstreamSettingsShape = {
  // 0s: no timeout, for long LLM streams.
  timeout: duration({ min: 0, max: 3_600_000 }).optional(),
  connectTimeout: duration({ max: 60_000 }).optional(),
  retries: retries.optional(),
  loadBalancer: z.enum(['least_request', 'round_robin', 'random']).optional(),
  circuitBreakers: circuitBreakers.optional(),
  outlierDetection: outlierDetection.optional(),
  healthCheck: healthCheck.optional(),
};
export const UPSTREAM_SETTING_KEYS = Object.keys(upstreamSettingsShape) as readonly (keyof typeof upstreamSettingsShape)[];

/** Every limit and quota may choose its counting algorithm; absent, the IR's default applies. */
const limitAlgorithm = z.enum(LIMIT_ALGORITHMS).optional();
export const rateLimitShape = { requests: wholeNumber(1), per: z.enum(WINDOWS), algorithm: limitAlgorithm };
export const tokenQuotaShape = { tokens: wholeNumber(1), per: z.enum(WINDOWS), count: z.enum(['input', 'output', 'total']).optional(), algorithm: limitAlgorithm };
