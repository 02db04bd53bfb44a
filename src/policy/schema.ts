import { z } from 'zod';
import {
  addressTemplate,
  aliasName,
  duration,
  headerName,
  hostAddress,
  hostPattern,
  httpPath,
  httpUrl,
  ipAddress,
  numberIn,
  pathPrefix,
  patterned,
  port,
  re2Pattern,
  resourceName,
  roleName,
  shortName,
  versionNumber,
  wholeNumber,
} from './fields.js';
import { shown } from './issues.js';

/**
 * The zod schemas of the three policy document kinds (docs/policy.md) and the types inferred from them.
 * Defaults that depend on nothing else are filled here; inheritance from Gateway.defaults and defaults that
 * depend on other documents (routes on every listener, failOpen from the Gateway) are the IR's job.
 * Durations come out as milliseconds.
 */

// ---- shared blocks ------------------------------------------------------------------------------------------

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

const stableSelector = z.strictObject(selectorShape).transform(toSelector);
const canarySelector = z
  .strictObject({ ...selectorShape, weight: wholeNumber(0, 100) })
  .transform((v, ctx) => ({ ...toSelector(v, ctx), weight: v.weight }));
const mirrorSelector = z
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
const upstreamSettingsShape = {
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

const WINDOWS = ['second', 'minute', 'hour', 'day'] as const;
/** Length of each rate-limit / quota window. */
export const WINDOW_MS: Readonly<Record<(typeof WINDOWS)[number], number>> = { second: 1_000, minute: 60_000, hour: 3_600_000, day: 86_400_000 };

const rateLimitShape = { requests: wholeNumber(1), per: z.enum(WINDOWS) };
const tokenQuotaShape = { tokens: wholeNumber(1), per: z.enum(WINDOWS), count: z.enum(['input', 'output', 'total']).default('total') };

// ---- Model ----------------------------------------------------------------------------------------------------

const maskMode = z.enum(['remove', 'replace', 'last4', 'hash']);

const jsonPath = patterned(
  /^(?:[A-Za-z0-9_$-]+|\[\*\]|\[\d+\])(?:\.[A-Za-z0-9_$-]+|\[\*\]|\[\d+\])*$/,
  'a JSON path like customer.email, items[*].card or rows[0].ssn',
  512,
);

const maskingRules = z
  .strictObject({
    fields: z.array(z.strictObject({ path: jsonPath, mode: maskMode.optional() })).default([]),
    patterns: z.array(z.enum(['email', 'card', 'phone', 'ssn'])).default([]),
    custom: z.array(z.strictObject({ name: shortName, regex: re2Pattern, mode: maskMode.optional() })).default([]),
    /** The mode of every rule that does not set its own. */
    mode: maskMode.default('replace'),
  })
  .superRefine((rules, ctx) => {
    const seen = new Set<string>();
    rules.custom.forEach((c, i) => {
      if (seen.has(c.name)) ctx.addIssue({ code: 'custom', path: ['custom', i, 'name'], message: `custom rule name '${c.name}' is used twice in this section` });
      seen.add(c.name);
    });
  });

const versionAccess = z.strictObject({ roles: z.array(roleName).default([]), consumers: z.array(resourceName).default([]) });

/** An access rule for pinning one alias or version (`access.versions`). */
export type VersionAccessRule = {
  /** The key as written under access.versions (`challenger`, `v3`), for placing issues. */
  readonly key: string;
  readonly selector: { readonly alias: string } | { readonly version: string };
  readonly roles: readonly string[];
  readonly consumers: readonly string[];
};

const access = z.strictObject({
  roles: z.array(roleName).default([]),
  consumers: z.array(resourceName).default([]),
  versions: z
    .record(z.string(), versionAccess)
    .default({})
    .transform((byKey, ctx): VersionAccessRule[] => {
      const rules: VersionAccessRule[] = [];
      // Sorted, so that reordering keys in YAML neither changes the policy hash nor the rule order.
      for (const key of Object.keys(byKey).sort()) {
        const rule = byKey[key] as z.output<typeof versionAccess>;
        const version = /^[vV]([1-9]\d*)$/.exec(key)?.[1];
        if (version !== undefined) rules.push({ key, selector: { version }, ...rule });
        else if (/^\d+$/.test(key)) ctx.addIssue({ code: 'custom', path: [key], message: `write 'v${key}' for version ${key}: a bare number is also a valid MLflow alias name` });
        else if (/^[A-Za-z0-9_-]{1,255}$/.test(key) && key.toLowerCase() !== 'latest') rules.push({ key, selector: { alias: key }, ...rule });
        else ctx.addIssue({ code: 'custom', path: [key], message: `must be an alias name or v<N> for version N (got ${shown(key)})` });
      }
      return rules;
    }),
});

const route = z.strictObject({
  listener: shortName,
  /** Absent: /models/{name}; filled by modelRoutes() since it depends on the Model's name. */
  pathPrefix: pathPrefix.optional(),
  hosts: z
    .array(hostPattern)
    .min(1)
    .default(['*'])
    .superRefine((hosts, ctx) => {
      hosts.forEach((h, i) => {
        if (hosts.indexOf(h) !== i) ctx.addIssue({ code: 'custom', path: [i], message: `host '${h}' is listed twice` });
      });
    }),
});

const upstream = z
  .strictObject({ addressTemplate: addressTemplate.optional(), versionTag: patterned(/^[\w.\-/ ]+$/, 'an MLflow tag key', 250).optional() })
  .transform((u, ctx): { readonly addressTemplate: string } | { readonly versionTag: string } => {
    if (u.addressTemplate !== undefined && u.versionTag === undefined) return { addressTemplate: u.addressTemplate };
    if (u.versionTag !== undefined && u.addressTemplate === undefined) return { versionTag: u.versionTag };
    const found = u.addressTemplate === undefined ? 'neither' : 'both';
    ctx.addIssue({ code: 'custom', message: `must set exactly one of addressTemplate or versionTag (found ${found})` });
    return z.NEVER;
  });

export const ModelSchema = z
  .strictObject({
    kind: z.literal('Model'),
    name: resourceName,
    registeredModel: z.string().min(1).max(256).optional(),
    protocol: z.enum(['mlflow', 'oip']).default('mlflow'),
    routes: z.array(route).min(1).optional(),
    upstream,
    traffic: z.strictObject({
      stable: stableSelector,
      canary: canarySelector.optional(),
      sticky: z.strictObject({ header: headerName }).optional(),
      mirror: mirrorSelector.optional(),
    }),
    pinning: z.boolean().default(true),
    ...upstreamSettingsShape,
    access: access.optional(),
    rateLimits: z.array(z.strictObject(rateLimitShape)).default([]),
    tokenQuotas: z.array(z.strictObject(tokenQuotaShape)).default([]),
    masking: z
      .strictObject({
        request: maskingRules.optional(),
        response: maskingRules.optional(),
        maxBodyBytes: wholeNumber(1, 64 * 1024 * 1024).default(1024 * 1024),
      })
      .optional(),
    /** Absent: Gateway.filterService.failOpen. */
    failOpen: z.boolean().optional(),
  })
  .transform((m) => ({ ...m, registeredModel: m.registeredModel ?? m.name }));

// ---- Consumer -------------------------------------------------------------------------------------------------

export const ConsumerSchema = z.strictObject({
  kind: z.literal('Consumer'),
  name: resourceName,
  roles: z.array(roleName).default([]),
  apiKeys: z
    .array(
      z.strictObject({
        id: patterned(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "letters, digits, '.', '_' or '-'", 128),
        // The message never echoes the value: someone may have pasted the key itself here.
        sha256: z
          .string({ error: (iss) => (iss.input === undefined ? undefined : 'must be the hex SHA-256 of the key (64 hex digits)') })
          .transform((s) => s.toLowerCase())
          .refine((s) => /^[0-9a-f]{64}$/.test(s), { error: 'must be the hex SHA-256 of the key (64 hex digits), never the key itself' }),
      }),
    )
    .default([]),
  jwt: z.strictObject({ issuer: shortName, subject: z.string().min(1).max(1024) }).optional(),
  rateLimits: z.array(z.strictObject({ ...rateLimitShape, model: resourceName.optional() })).default([]),
  tokenQuotas: z.array(z.strictObject({ ...tokenQuotaShape, model: resourceName.optional() })).default([]),
  concurrency: wholeNumber(1, 1_000_000).optional(),
});

// ---- Gateway --------------------------------------------------------------------------------------------------

const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

const jwtIssuer = z
  .strictObject({
    name: shortName,
    issuer: z.string().min(1).max(2048),
    audiences: z.array(z.string().min(1)).default([]),
    jwksUri: httpUrl.optional(),
    // JWKs carry many optional members; only `kty` is common to all of them.
    jwks: z.strictObject({ keys: z.array(z.looseObject({ kty: z.string() })).min(1) }).optional(),
    algorithms: z.array(z.enum(JWT_ALGORITHMS)).min(1).default(['RS256', 'ES256']),
    clockSkew: duration({ min: 0, max: 600_000 }).prefault('30s'),
    consumerClaim: z.string().min(1).default('sub'),
    rolesClaim: z.string().min(1).optional(),
  })
  .superRefine((j, ctx) => {
    if ((j.jwksUri === undefined) === (j.jwks === undefined)) {
      const found = j.jwksUri === undefined ? 'neither' : 'both';
      ctx.addIssue({ code: 'custom', message: `must set exactly one of jwksUri or jwks (found ${found})` });
    }
  });

const absolutePath = z.string().startsWith('/', { error: 'must be an absolute path' });

const listener = z.strictObject({ name: shortName, address: ipAddress.default('0.0.0.0'), port });

export const GatewaySchema = z.strictObject({
  kind: z.literal('Gateway'),
  listeners: z.array(listener).min(1).default([{ name: 'public', address: '0.0.0.0', port: 10000 }]),
  defaults: z.strictObject(upstreamSettingsShape).prefault({}),
  filterService: z
    .strictObject({
      address: hostAddress.default('127.0.0.1'),
      port: port.default(18081),
      timeout: duration({ max: 60_000 }).prefault('250ms'),
      failOpen: z.boolean().default(false),
      /** TLS from Envoy to the filter service: PEM files on the Envoy hosts. */
      tls: z
        .strictObject({
          ca: absolutePath,
          cert: absolutePath.optional(),
          key: absolutePath.optional(),
          sni: z.string().min(1).max(253).optional(),
        })
        .superRefine((t, ctx) => {
          if ((t.cert === undefined) !== (t.key === undefined)) ctx.addIssue({ code: 'custom', message: 'cert and key go together (mutual TLS needs both)' });
        })
        .optional(),
    })
    .prefault({}),
  auth: z.strictObject({ jwt: z.array(jwtIssuer).default([]) }).prefault({}),
  tracing: z
    .strictObject({
      otlp: z.strictObject({ address: hostAddress, port }),
      serviceName: z.string().min(1).default('flowgate-envoy'),
      samplingPercent: numberIn(0, 100).default(100),
    })
    .optional(),
  audit: z
    .strictObject({ sink: z.enum(['stdout', 'file']).default('stdout'), path: z.string().startsWith('/', { error: 'must be an absolute path' }).optional() })
    .superRefine((a, ctx) => {
      if (a.sink === 'file' && a.path === undefined) ctx.addIssue({ code: 'custom', path: ['path'], message: 'is required when sink is file' });
      if (a.sink !== 'file' && a.path !== undefined) ctx.addIssue({ code: 'custom', path: ['path'], message: 'is only used when sink is file' });
    })
    .prefault({}),
});

// ---- types ----------------------------------------------------------------------------------------------------

export const POLICY_KINDS = ['Gateway', 'Model', 'Consumer'] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];

/** The schema of each document kind. */
export const KIND_SCHEMAS = { Gateway: GatewaySchema, Model: ModelSchema, Consumer: ConsumerSchema } as const;

export type GatewayPolicy = z.output<typeof GatewaySchema>;
export type ModelPolicy = z.output<typeof ModelSchema>;
export type ConsumerPolicy = z.output<typeof ConsumerSchema>;

export type Listener = GatewayPolicy['listeners'][number];
export type JwtIssuer = GatewayPolicy['auth']['jwt'][number];
export type FilterServiceSettings = GatewayPolicy['filterService'];
export type UpstreamSettings = GatewayPolicy['defaults'];
export type Retries = NonNullable<UpstreamSettings['retries']>;
export type HealthCheck = NonNullable<UpstreamSettings['healthCheck']>;
export type OutlierDetection = NonNullable<UpstreamSettings['outlierDetection']>;
export type CircuitBreakers = NonNullable<UpstreamSettings['circuitBreakers']>;

export type ModelRouteSpec = NonNullable<ModelPolicy['routes']>[number];
export type UpstreamSpec = ModelPolicy['upstream'];
export type TrafficPlan = ModelPolicy['traffic'];
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
