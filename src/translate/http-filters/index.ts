import type { GatewayIR } from '../../ir/types.js';
import type { ResourceInput } from '../../resources/types.js';
import { compressor } from './compressor.js';
import { extAuthz } from './ext-authz.js';
import { extProc } from './ext-proc.js';
import { rateLimit } from './ratelimit.js';
import type { HttpFilterTranslator, RouteContext, RouteFilterConfig, RouteOwner } from './types.js';

/**
 * The HTTP filters Flowgate puts in front of the router, in the order Envoy runs them on requests:
 * authorization first (it identifies the caller the others count), then the rate limit, then compression,
 * then body processing. Answers run through them in reverse, so the compressor compresses what ext_proc has
 * read and rewritten.
 */
export const HTTP_FILTERS: readonly HttpFilterTranslator[] = [extAuthz, rateLimit, compressor, extProc];

/** Every filter a listener serving `models` needs, in order (the router is added by the listener). */
export function listenerHttpFilters(ir: GatewayIR, models: readonly RouteOwner[]): object[] {
  return HTTP_FILTERS.flatMap((f) => f.listenerFilters(ir, models));
}

/** What every filter adds to each route of a model, merged. */
export function routeFilterConfig(model: RouteOwner, route: RouteContext): RouteFilterConfig {
  const perFilter: Record<string, object> = {};
  const rateLimits: object[] = [];
  for (const f of HTTP_FILTERS) {
    const c = f.routeConfig(model, route);
    Object.assign(perFilter, c.perFilter ?? {});
    rateLimits.push(...(c.rateLimits ?? []));
  }
  return { ...(Object.keys(perFilter).length > 0 && { perFilter }), ...(rateLimits.length > 0 && { rateLimits }) };
}

/** The resources the filters need, once each by (type, name). */
export function httpFilterResources(ir: GatewayIR): ResourceInput[] {
  const byKey = new Map<string, ResourceInput>();
  for (const f of HTTP_FILTERS) for (const r of f.resources(ir)) byKey.set(`${r.typeUrl}\u0000${r.name}`, r);
  return [...byKey.values()];
}

export type { HttpFilterTranslator, RouteContext, RouteFilterConfig, RouteOwner } from './types.js';
