import { z } from 'zod';
import { JWKS_LIMITS } from '../../contract/filter-policy.js';
import { duration, hostAddress, httpUrl, ipAddress, numberIn, port, shortName, wholeNumber } from '../fields.js';
import { parseAddressPattern } from '../address-pattern.js';
import { openaiApi } from './llm.js';
import { upstreamSettingsShape } from './shared.js';

/** The Gateway document: listeners, defaults for every Model, the filter service, JWT issuers, tracing, audit. */

const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

const jwtIssuer = z
  .strictObject({
    name: shortName,
    issuer: z.string().min(1).max(2048),
    audiences: z.array(z.string().min(1)).default([]),
    jwksUri: httpUrl.optional(),
    // JWKs carry many optional members; only `kty` is common to all of them.
    jwks: z.strictObject({ keys: z.array(z.looseObject({ kty: z.string() })).min(1).max(JWKS_LIMITS.maxKeys) }).optional(),
    /** Absent: the IR's default (RS256, ES256). */
    algorithms: z.array(z.enum(JWT_ALGORITHMS)).min(1).optional(),
    /** Absent: the IR's default (30s). */
    clockSkew: duration({ min: 0, max: 600_000 }).optional(),
    /** Absent: the IR's default (sub). */
    consumerClaim: z.string().min(1).optional(),
    rolesClaim: z.string().min(1).optional(),
    /** Absent: the IR's default (true: a token without `exp` is refused). */
    requireExpiry: z.boolean().optional(),
  })
  .superRefine((j, ctx) => {
    if ((j.jwksUri === undefined) === (j.jwks === undefined)) {
      const found = j.jwksUri === undefined ? 'neither' : 'both';
      ctx.addIssue({ code: 'custom', message: `must set exactly one of jwksUri or jwks (found ${found})` });
    }
  });

/** A pattern of Gateway.upstreams.allow / deny (src/policy/address-pattern.ts). */
const addressPattern = z.string().superRefine((s, ctx) => {
  const parsed = parseAddressPattern(s);
  if ('error' in parsed) ctx.addIssue({ code: 'custom', message: `${parsed.error}; write a CIDR or IP, a host name, '*.' and a domain, or '*', optionally with :port or :low-high` });
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
      /** The pipeline service beside it (an HTTP port); absent: the IR's default (18082). */
      pipelinesPort: port.optional(),
      timeout: duration({ max: 60_000 }).prefault('250ms'),
      /** Absent: the IR's default (false: fail closed). */
      failOpen: z.boolean().optional(),
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
  /**
   * Envoy's edge-proxy protections (its "Configuring Envoy as an edge proxy" guide) on every listener and
   * model cluster. Every field is optional; the IR applies the guide's values (src/ir/edge.ts).
   */
  edge: z
    .strictObject({
      headersWithUnderscores: z.enum(['reject', 'drop', 'allow']).optional(),
      streamIdleTimeout: duration({ min: 0, max: 3_600_000 }).optional(),
      requestHeadersTimeout: duration({ min: 0, max: 600_000 }).optional(),
      connectionIdleTimeout: duration({ min: 0, max: 86_400_000 }).optional(),
      bufferLimitBytes: wholeNumber(1024, 64 * 1024 * 1024).optional(),
      xffNumTrustedHops: wholeNumber(0, 10).optional(),
      http2: z
        .strictObject({
          maxConcurrentStreams: wholeNumber(1, 2_147_483_647).optional(),
          initialStreamWindowSize: wholeNumber(65_535, 2_147_483_647).optional(),
          initialConnectionWindowSize: wholeNumber(65_535, 2_147_483_647).optional(),
        })
        .optional(),
    })
    .prefault({}),
  /**
   * Where model versions may be served (checked in the IR, src/ir/upstream-guard.ts). Absent stays absent (the
   * built-in rules alone), so a policy that does not use it keeps its hash.
   */
  upstreams: z
    .strictObject({
      /** Empty: any address the deny rules leave. */
      allow: z.array(addressPattern).default([]),
      /** Added to the built-in deny rules. */
      deny: z.array(addressPattern).default([]),
      /** The admin port of the Envoys' bootstraps, refused on loopback (absent: the IR's default, 9901). */
      envoyAdminPort: port.optional(),
    })
    .optional(),
  /**
   * How Envoy carries each model's split between versions (src/translate/eds-split.ts): `routes`, weighted
   * clusters in the route configuration; `endpoints`, one EDS cluster per model whose endpoint weights are
   * the split, so an alias move is one small ClusterLoadAssignment. Absent stays absent (a policy that does
   * not use it keeps its hash).
   */
  traffic: z.strictObject({ split: z.enum(['routes', 'endpoints']).default('routes') }).optional(),
  /**
   * Where the request rate limits (Model, Consumer and Pipeline `rateLimits`) are decided
   * (docs/ratelimit-path.md): `check`, inside the ext_authz Check every limited route already makes (one
   * filter-service call per request); `envoy`, by Envoy's rate-limit filter calling ShouldRateLimit with a
   * (model, consumer) descriptor (a second call per request). Absent stays absent (a policy that does not use
   * it keeps its hash).
   */
  rateLimits: z.strictObject({ via: z.enum(['check', 'envoy']).default('check') }).optional(),
  /** Serves the OpenAI-compatible API (routed by the body's `model`) on one of the listeners. */
  openai: openaiApi.optional(),
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