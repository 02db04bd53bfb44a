import type { ApiKind } from '../../contract/filter-wire.js';
import type { GatewayIR, ModelIR } from '../../ir/types.js';
import type { ResourceInput } from '../../resources/types.js';

/**
 * The shape every HTTP filter translator has (as in Envoy Gateway's translator): it adds its filters to a
 * listener's HTTP connection manager, its settings to each route of the models that need it, and the
 * resources it depends on. A new filter is one new file implementing this, listed in index.ts.
 */

/**
 * What owns a route the filters configure: a Model, or a Pipeline (judged by ext_authz and the rate
 * limiter under its name, like a model).
 */
export type RouteOwner = Pick<ModelIR, 'name' | 'filters'>;

/** Which of a model's routes is being built. */
export interface RouteContext {
  /** The route a request carrying a pin header first matches (its pins are judged by ext_authz). */
  readonly pinRequested: boolean;
  /** The API the route serves, so the filter service shapes its refusals for that API's clients. */
  readonly api: ApiKind;
}

/** What one filter adds to each route of a model. */
export interface RouteFilterConfig {
  /** Route.typed_per_filter_config entries, by filter name. */
  readonly perFilter?: Readonly<Record<string, object>>;
  /** RouteAction.rate_limits entries. */
  readonly rateLimits?: readonly object[];
}

export interface HttpFilterTranslator {
  /** For errors and docs. */
  readonly name: string;
  /** The HttpFilter entries (before the router) listener `listener` serving `models` needs; none when no model needs it. */
  listenerFilters(ir: GatewayIR, models: readonly RouteOwner[], listener: string): object[];
  /** What each route of `model` adds for this filter. */
  routeConfig(model: RouteOwner, route: RouteContext): RouteFilterConfig;
  /** Resources the filter needs (e.g. the cluster reaching its service). */
  resources(ir: GatewayIR): ResourceInput[];
}
