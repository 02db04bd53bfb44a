import type { GatewayIR, ModelIR } from '../../ir/types.js';
import { servedBySplit } from '../eds-split.js';
import { typed } from '../../proto/codec.js';
import type { ResourceInput } from '../../resources/types.js';
import { COMPRESSOR, COMPRESSOR_ROUTE, compressor } from './compressor.js';
import { extAuthz } from './ext-authz.js';
import { extProc } from './ext-proc.js';
import { llmRouter } from './llm-router.js';
import { rateLimit } from './ratelimit.js';
import { splitVersion } from './split-version.js';
import type { HttpFilterTranslator, RouteContext, RouteFilterConfig, RouteOwner } from './types.js';

/**
 * The HTTP filters Flowgate puts in front of the router, in the order Envoy runs them: on the OpenAI API's
 * listener the LLM router first (it reads the body's `model` and picks the model's routes), then
 * authorization (it identifies the caller the others count), then the rate limit, then compression,
 * then body processing. Answers run through them in reverse, so the compressor compresses what ext_proc has
 * read and rewritten. Last, the pinned version's metadata for split clusters (split-version.ts).
 */
export const HTTP_FILTERS: readonly HttpFilterTranslator[] = [llmRouter, extAuthz, rateLimit, compressor, extProc, splitVersion];

/** Each model's listenerFilterInputs, once per model object (and split mode). */
const filterInputs = new WeakMap<ModelIR, { readonly split: GatewayIR['trafficSplit']; readonly text: string }>();

/**
 * Everything of a model the listener filters (their `listenerFilters`, and the listener's choice of its
 * models) read, as text: two models with the same text make the same listener filters. A filter that reads
 * more of a model must add it here (test/resources/incremental.test.ts changes each of these).
 */
export function listenerFilterInputs(ir: GatewayIR, model: ModelIR): string {
  const known = filterInputs.get(model);
  if (known && known.split === ir.trafficSplit) return known.text;
  const text = JSON.stringify([
    model.name,
    model.routes.map((r) => r.listener),
    model.filters ?? null,
    model.llm === undefined ? null : { pricing: model.llm.pricing !== undefined },
    model.rules.guardrails?.output.length ?? 0,
    servedBySplit(ir, model),
  ]);
  filterInputs.set(model, { split: ir.trafficSplit, text });
  return text;
}

/** Every filter listener `listener` serving `models` needs, in order (the router is added by the listener). */
export function listenerHttpFilters(ir: GatewayIR, models: readonly RouteOwner[], listener: string): object[] {
  return HTTP_FILTERS.flatMap((f) => f.listenerFilters(ir, models, listener));
}

const EXT_AUTHZ_FILTER = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const EXT_PROC_FILTER = 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor';

/**
 * The per-route config that switches off a listener filter, for each filter of `filters` that is disabled by
 * default. Envoy decides which disabled filters exist for a request on the route it first matches; the OpenAI
 * API's first routes switch them all on, so every route the LLM router moves a request to must switch off
 * again those its model does not use.
 */
export function perRouteDisables(filters: readonly object[]): Record<string, object> {
  const out: Record<string, object> = {};
  for (const f of filters as { name: string; disabled?: boolean; typed_config?: { '@type'?: string } }[]) {
    if (f.disabled !== true) continue;
    const type = f.typed_config?.['@type'];
    if (type === EXT_AUTHZ_FILTER) out[f.name] = typed('type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute', { disabled: true });
    else if (type === EXT_PROC_FILTER) out[f.name] = typed('type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute', { disabled: true });
    else if (type === COMPRESSOR) out[f.name] = typed(COMPRESSOR_ROUTE, { disabled: true });
  }
  return out;
}

/** What every filter adds to each route of a model, merged. */
export function routeFilterConfig(model: RouteOwner, route: RouteContext): RouteFilterConfig {
  // Made only when a filter gives something, and without spreads (twice per model and match at 10,000 models).
  let perFilter: Record<string, object> | undefined;
  let rateLimits: object[] | undefined;
  for (const f of HTTP_FILTERS) {
    const c = f.routeConfig(model, route);
    if (c.perFilter) for (const name in c.perFilter) if (Object.hasOwn(c.perFilter, name)) (perFilter ??= {})[name] = c.perFilter[name] as object;
    if (c.rateLimits) for (const limit of c.rateLimits) (rateLimits ??= []).push(limit);
  }
  const out: { perFilter?: Record<string, object>; rateLimits?: object[] } = {};
  if (perFilter) out.perFilter = perFilter;
  if (rateLimits) out.rateLimits = rateLimits;
  return out;
}

/** The resources the filters need, once each by (type, name). */
export function httpFilterResources(ir: GatewayIR): ResourceInput[] {
  const byKey = new Map<string, ResourceInput>();
  for (const f of HTTP_FILTERS) for (const r of f.resources(ir)) byKey.set(`${r.typeUrl}\u0000${r.name}`, r);
  return [...byKey.values()];
}

export type { HttpFilterTranslator, RouteContext, RouteFilterConfig, RouteOwner } from './types.js';
