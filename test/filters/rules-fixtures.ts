import type { ConsumerRules, JwtIssuerRules, LiveVersionRule, ModelRules } from '../../src/contract/filter-policy.js';
import { consumerRules, jwtIssuerRules, modelFilterRules } from '../../src/ir/filter-rules.js';
import { ConsumerSchema, GatewaySchema, ModelSchema } from '../../src/policy/schema/index.js';

/**
 * Filter rules for unit tests, made the way the control plane makes them: policy documents parsed by the
 * real schemas, then resolved by the IR's filter-rules (so every default is the one served).
 */

/** The JWT issuers of a Gateway document with this `auth` block. */
export function jwtIssuers(auth: unknown = {}): JwtIssuerRules[] {
  return jwtIssuerRules(GatewaySchema.parse({ kind: 'Gateway', auth }));
}

/** The rules of a Model document (`extra` over a minimal one); `live` versions as the registry would give them. */
export function modelRules(name: string, extra: Record<string, unknown> = {}, live: LiveVersionRule[] = []): ModelRules {
  const model = ModelSchema.parse({ kind: 'Model', name, upstream: { addressTemplate: '127.0.0.1:5001' }, traffic: { stable: { alias: 'champion' } }, ...extra });
  const rules = modelFilterRules(model, GatewaySchema.parse({ kind: 'Gateway' }));
  return {
    name,
    failOpen: rules.failOpen,
    pinning: model.pinning,
    ...(rules.access && { access: rules.access }),
    ...(model.traffic?.sticky && { sticky: { header: model.traffic.sticky.header } }),
    live,
    requestLimits: [...rules.requestLimits],
    tokenQuotas: [...rules.tokenQuotas],
    ...(rules.masking && { masking: rules.masking }),
  };
}

/** The rules of a Consumer document. */
export function consumerRulesOf(name: string, extra: Record<string, unknown> = {}): ConsumerRules {
  return consumerRules(ConsumerSchema.parse({ kind: 'Consumer', name, ...extra }));
}
