import type { z } from 'zod';
import { ConsumerSchema } from './consumer.js';
import { GatewaySchema } from './gateway.js';
import { ModelSchema } from './model.js';
import { RolloutSchema } from './rollout.js';
import { PipelineSchema } from './pipeline.js';

/**
 * The zod schemas of the policy document kinds (docs/policy.md), one file per kind, and the types inferred
 * from them. Schemas check shape and fill only defaults that depend on nothing else (empty lists, listener
 * addresses); inheritance from Gateway.defaults, defaults that depend on other documents and every default
 * of the filter rules are the IR's job (src/ir/).
 */

export { ConsumerSchema } from './consumer.js';
export { GatewaySchema } from './gateway.js';
export { ModelSchema, type VersionAccessRule } from './model.js';
export { RolloutSchema, ROLLOUT_METRICS, type RolloutMetricName, type RolloutMetricSpec, type RolloutPolicy } from './rollout.js';
export { PipelineSchema } from './pipeline.js';
export { UPSTREAM_SETTING_KEYS, type VersionSelector } from './shared.js';

export const POLICY_KINDS = ['Gateway', 'Model', 'Consumer', 'Rollout', 'Pipeline'] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];

/** The schema of each document kind. */
export const KIND_SCHEMAS = { Gateway: GatewaySchema, Model: ModelSchema, Consumer: ConsumerSchema, Rollout: RolloutSchema, Pipeline: PipelineSchema } as const;

export type GatewayPolicy = z.output<typeof GatewaySchema>;
export type ModelPolicy = z.output<typeof ModelSchema>;
export type ConsumerPolicy = z.output<typeof ConsumerSchema>;
export type PipelinePolicy = z.output<typeof PipelineSchema>;
export type PipelineStep = PipelinePolicy['steps'][number];

export type Listener = GatewayPolicy['listeners'][number];
export type JwtIssuer = GatewayPolicy['auth']['jwt'][number];
export type FilterServiceSettings = GatewayPolicy['filterService'];
export type UpstreamSettings = GatewayPolicy['defaults'];
export type Retries = NonNullable<UpstreamSettings['retries']>;
export type HealthCheck = NonNullable<UpstreamSettings['healthCheck']>;
export type OutlierDetection = NonNullable<UpstreamSettings['outlierDetection']>;
export type CircuitBreakers = NonNullable<UpstreamSettings['circuitBreakers']>;

export type ModelRouteSpec = NonNullable<ModelPolicy['routes']>[number];
export type UpstreamSpec = NonNullable<ModelPolicy['upstream']>;
export type TrafficPlan = NonNullable<ModelPolicy['traffic']>;
export type LlmPolicy = NonNullable<ModelPolicy['llm']>;
export type OpenaiApiPolicy = NonNullable<GatewayPolicy['openai']>;
export type CanarySplit = NonNullable<TrafficPlan['canary']>;
export type MirrorPlan = NonNullable<TrafficPlan['mirror']>;
export type ModelAccess = NonNullable<ModelPolicy['access']>;
export type RateLimit = ModelPolicy['rateLimits'][number];
export type TokenQuota = ModelPolicy['tokenQuotas'][number];
export type Masking = NonNullable<ModelPolicy['masking']>;
export type MaskingRules = NonNullable<Masking['request']>;
export type MaskMode = MaskingRules['mode'];

export type ConsumerRateLimit = ConsumerPolicy['rateLimits'][number];
export type ConsumerTokenQuota = ConsumerPolicy['tokenQuotas'][number];
export type ApiKeyDigest = ConsumerPolicy['apiKeys'][number];
