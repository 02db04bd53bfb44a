import { FILTER_POLICY_NAME, FILTER_POLICY_SCHEMA, type FilterPolicy } from '../contract/filter-policy.js';
import type { GatewayIR } from '../ir/types.js';
import { canonicalJson } from '../policy/policy.js';
import { TypeUrl, type ResourceInput } from '../resources/types.js';

/**
 * The FilterPolicy of an IR (every rule already resolved by the IR), and the xDS resource carrying it. It is
 * part of the same snapshot as the Envoy resources, so one edit reaches Envoys and filter services with one
 * version.
 */

/** The filter service's view of the gateway. */
export function filterPolicyOf(ir: GatewayIR): FilterPolicy {
  return {
    schema: FILTER_POLICY_SCHEMA,
    audit: ir.audit,
    jwtIssuers: [...ir.jwtIssuers],
    consumers: [...ir.consumers],
    models: ir.models.map((m) => ({
      name: m.name,
      failOpen: m.rules.failOpen,
      pinning: m.pinning,
      ...(m.rules.access && { access: m.rules.access }),
      ...(m.sticky && { sticky: { header: m.sticky.header } }),
      live: m.live.map((l) => ({ version: l.version, aliases: [...l.aliases], weight: l.weight })),
      requestLimits: [...m.rules.requestLimits],
      tokenQuotas: [...m.rules.tokenQuotas],
      ...(m.rules.masking && { masking: m.rules.masking }),
      // The processing modes the routes' ext_proc filter uses, so the filter service knows what it will see.
      ...(m.filters?.extProc && { bodies: { request: m.filters.extProc.requestBody ? ('buffered' as const) : ('none' as const), response: m.filters.extProc.responseBody } }),
    })),
  };
}

/** The xDS resource carrying a filter policy (its JSON in canonical form, so equal policies have equal bytes). */
export function filterPolicyResource(fp: FilterPolicy): ResourceInput {
  return { typeUrl: TypeUrl.FilterPolicy, name: FILTER_POLICY_NAME, message: { schema_version: fp.schema, policy_json: canonicalJson(fp) } };
}
