import { z } from 'zod';
import { MASK_MODES, BUILTIN_PATTERNS, MODEL_PROTOCOLS } from '../../contract/filter-policy.js';
import { addressTemplate, headerName, hostPattern, pathPrefix, patterned, re2Pattern, resourceName, roleName, shortName, wholeNumber } from '../fields.js';
import { shown } from '../issues.js';
import { llmBlock } from './llm.js';
import { canarySelector, mirrorSelector, rateLimitShape, stableSelector, tokenQuotaShape, upstreamSettingsShape } from './shared.js';

/** The Model document: one exposed model, its routes, where its versions are served, its traffic plan and filter rules. */

const maskMode = z.enum(MASK_MODES);

const jsonPath = patterned(
  /^(?:[A-Za-z0-9_$-]+|\[\*\]|\[\d+\])(?:\.[A-Za-z0-9_$-]+|\[\*\]|\[\d+\])*$/,
  'a JSON path like customer.email, items[*].card or rows[0].ssn',
  512,
);

const maskingRules = z
  .strictObject({
    fields: z.array(z.strictObject({ path: jsonPath, mode: maskMode.optional() })).default([]),
    patterns: z.array(z.enum(BUILTIN_PATTERNS)).default([]),
    custom: z.array(z.strictObject({ name: shortName, regex: re2Pattern, mode: maskMode.optional() })).default([]),
    /** The mode of every rule that does not set its own (absent: the IR's default, replace). */
    mode: maskMode.optional(),
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

/** A (listener, path prefix, hosts) a Model or Pipeline is published on. */
export const route = z.strictObject({
  listener: shortName,
  /** Absent: /models/{name} (/pipelines/{name} for a Pipeline); filled by modelRoutes() since it depends on the name. */
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

/** A fully qualified gRPC service name, e.g. inference.GRPCInferenceService. */
const grpcService = patterned(/^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$/, 'a fully qualified gRPC service name like inference.GRPCInferenceService', 256);

/** What proxyless clients dial as xds:///<target>: a host name, optionally with a port, as gRPC puts it in the listener name. */
const proxylessTarget = patterned(
  /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::\d{1,5})?$/,
  'a host name like fraud-detector or fraud.models.internal (optionally :port)',
  253,
);

/** The filter-service features a proxyless client never passes through (it calls the versions directly). */
const FILTERED_KEYS = ['access', 'rateLimits', 'tokenQuotas', 'masking'] as const;

export const ModelSchema = z
  .strictObject({
    kind: z.literal('Model'),
    name: resourceName,
    registeredModel: z.string().min(1).max(256).optional(),
    /**
     * The public protocol callers use (mlflow, oip; a version tagged `flowgate.protocol` with the other one is
     * converted to it), or grpc for models served over gRPC.
     */
    protocol: z.enum([...MODEL_PROTOCOLS, 'grpc']).default('mlflow'),
    /** For protocol grpc: the one service routed (absent: every service the versions serve). */
    grpc: z.strictObject({ service: grpcService.optional() }).optional(),
    /** For protocol grpc: also serve the model to proxyless gRPC clients as xds:///<target>. */
    proxyless: z.strictObject({ target: proxylessTarget }).optional(),
    routes: z.array(route).min(1).optional(),
    /** Required, except for a model served by an external provider (it has no MLflow versions). */
    upstream: upstream.optional(),
    traffic: z
      .strictObject({
        stable: stableSelector,
        canary: canarySelector.optional(),
        sticky: z.strictObject({ header: headerName }).optional(),
        mirror: mirrorSelector.optional(),
      })
      .optional(),
    pinning: z.boolean().default(true),
    ...upstreamSettingsShape,
    access: access.optional(),
    rateLimits: z.array(z.strictObject(rateLimitShape)).default([]),
    tokenQuotas: z.array(z.strictObject(tokenQuotaShape)).default([]),
    masking: z
      .strictObject({
        request: maskingRules.optional(),
        response: maskingRules.optional(),
        /** Absent: the IR's default (1 MiB). */
        maxBodyBytes: wholeNumber(1, 64 * 1024 * 1024).optional(),
      })
      .optional(),
    /** Check request bodies against each version's MLflow signature before the version is called (docs/signatures.md). */
    validation: z
      .strictObject({
        input: z.enum(['signature', 'none']),
        /** Absent: the IR's default (1 MiB). */
        maxBodyBytes: wholeNumber(1, 64 * 1024 * 1024).optional(),
      })
      .optional(),
    /** Absent: Gateway.filterService.failOpen. */
    failOpen: z.boolean().optional(),
    /** Served on the OpenAI-compatible API (Gateway.openai). */
    llm: llmBlock.optional(),
  })
  .superRefine((m, ctx) => {
    // A provider's model is one fixed upstream, not a set of MLflow versions.
    if (m.llm?.upstream === 'provider') {
      for (const key of ['upstream', 'traffic', 'registeredModel'] as const) {
        if (m[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'is not used by a model served by an external provider (llm.upstream: provider)' });
      }
      return;
    }
    for (const key of ['upstream', 'traffic'] as const) if (m[key] === undefined) ctx.addIssue({ code: 'custom', path: [key], message: 'is required' });
  })
  .superRefine((m, ctx) => {
    const issue = (path: (string | number)[], message: string): void => void ctx.addIssue({ code: 'custom', path, message });
    if (m.protocol !== 'grpc') {
      if (m.grpc) issue(['grpc'], `grpc settings need protocol: grpc (this model speaks ${m.protocol})`);
      if (m.proxyless) issue(['proxyless'], `proxyless clients speak gRPC: set protocol: grpc to serve this model to them`);
      return;
    }
    // gRPC bodies are length-prefixed protobuf frames: the JSON rules of masking and token quotas cannot read them.
    if (m.masking) issue(['masking'], 'masking reads JSON bodies; a gRPC model has protobuf frames');
    if (m.tokenQuotas.length > 0) issue(['tokenQuotas'], 'token quotas read JSON usage fields; a gRPC model has protobuf frames');
    if (m.healthCheck?.path !== undefined) issue(['healthCheck', 'path'], 'a gRPC model is health-checked with grpc.health.v1.Health/Check; it has no HTTP path');
    if (m.proxyless) {
      // Fail closed: a proxyless caller goes straight to the versions, so Envoy's filters never see it.
      for (const key of FILTERED_KEYS) {
        const set = key === 'rateLimits' || key === 'tokenQuotas' ? m[key].length > 0 : m[key] !== undefined;
        if (set) issue([key], `proxyless clients call the versions directly and skip the filter service, so ${key} cannot be enforced for them: serve this model through Envoy only, or drop ${key}`);
      }
    }
  })
  .transform((m) => ({ ...m, registeredModel: m.registeredModel ?? m.name }));