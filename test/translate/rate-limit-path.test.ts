import { describe, expect, test } from 'vitest';
import type { GatewayIR, ModelFilters } from '../../src/ir/types.js';
import { listenerHttpFilters, routeFilterConfig, type RouteOwner } from '../../src/translate/http-filters/index.js';

/**
 * Where a model's request rate limits are decided: inside ext_authz's Check by default (no rate-limit filter,
 * the route's Check carries `ratelimit: check`), or through Envoy's rate-limit filter when the IR asks.
 */

const ir = { filterService: { address: '127.0.0.1', port: 9001, timeoutMs: 300, tls: undefined }, models: [] } as unknown as GatewayIR;
const filters = (extra: Partial<ModelFilters>): ModelFilters => ({ authz: true, pinAuthz: false, routesByVersion: false, rateLimit: true, extProc: undefined, failOpen: false, ...extra });
const route = { pinRequested: false, api: 'flowgate' } as const;
const names = (models: RouteOwner[]): string[] => (listenerHttpFilters(ir, models, 'public') as { name: string }[]).map((f) => f.name);
const context = (model: RouteOwner): unknown =>
  (routeFilterConfig(model, route).perFilter?.['flowgate.authz'] as { check_settings?: { context_extensions?: object } } | undefined)?.check_settings?.context_extensions;

describe('rate-limit path', () => {
  test('by default the Check decides the limits: no rate-limit filter, no rate_limits, ratelimit: check', () => {
    const model = { name: 'm', filters: filters({}) };
    expect(names([model])).toEqual(['flowgate.authz']);
    expect(routeFilterConfig(model, route).rateLimits).toBeUndefined();
    expect(context(model)).toEqual({ model: 'm', ratelimit: 'check' });
  });

  test('rateLimitFilter keeps Envoy rate-limit filter and its descriptors, and the Check counts nothing', () => {
    const model = { name: 'm', filters: filters({ rateLimitFilter: true }) };
    expect(names([model])).toEqual(['flowgate.authz', 'flowgate.ratelimit']);
    expect(routeFilterConfig(model, route).rateLimits).toHaveLength(1);
    expect(context(model)).toEqual({ model: 'm' });
  });

  test('a model without limits has neither', () => {
    const model = { name: 'm', filters: filters({ rateLimit: false }) };
    expect(names([model])).toEqual(['flowgate.authz']);
    expect(context(model)).toEqual({ model: 'm' });
  });
});
