import type { ConsumerPolicy, GatewayPolicy, ModelPolicy } from '../policy/schema.js';
import type { FilterServiceIR, ModelFilters } from './types.js';

/**
 * Which filter-service calls a model's routes need. A route pays only for what its policy asks: no access
 * rule, limit or quota means no ext_authz call; no masking or token quota means no ext_proc stream.
 */
export function modelFilters(model: ModelPolicy, consumers: Iterable<ConsumerPolicy>, gateway: GatewayPolicy): ModelFilters | undefined {
  const applies = (rule: { readonly model?: string | undefined }): boolean => rule.model === undefined || rule.model === model.name;
  let consumerLimits = false;
  let consumerQuotas = false;
  for (const c of consumers) {
    consumerLimits ||= c.rateLimits.some(applies);
    consumerQuotas ||= c.tokenQuotas.some(applies);
  }
  const rateLimit = model.rateLimits.length > 0 || consumerLimits;
  const quotas = model.tokenQuotas.length > 0 || consumerQuotas;
  // Sticky splits need ext_authz too: it turns the caller's header into the hash Envoy's split reads.
  const authz = model.access !== undefined || rateLimit || quotas || model.traffic.sticky !== undefined;
  const requestBody = model.masking?.request !== undefined || quotas;
  const responseBody: 'none' | 'buffered' | 'streamed' = model.masking?.response !== undefined ? 'buffered' : quotas ? 'streamed' : 'none';
  const extProc = requestBody || responseBody !== 'none' ? { requestBody, responseBody } : undefined;
  if (!authz && !rateLimit && !extProc) return undefined;
  return { authz, rateLimit, extProc, failOpen: model.failOpen ?? gateway.filterService.failOpen };
}

export function filterServiceOf(gateway: GatewayPolicy): FilterServiceIR {
  const fs = gateway.filterService;
  return { address: fs.address, port: fs.port, timeoutMs: fs.timeout, tls: fs.tls };
}
