import type { GatewayIR, ModelIR, PipelineIR, PublicRoute } from '../ir/types.js';
import { pipelineRoutes } from './pipelines.js';
import { duration } from '../proto/codec.js';
import { CREDENTIAL_HEADERS, Header } from '../contract/filter-wire.js';
import { DEFAULT_MAX_BODY_BYTES } from '../ir/filter-rules.js';
import { TypeUrl, type ResourceInput } from '../resources/types.js';
import { routeFilterConfig } from './http-filters/index.js';

/**
 * One RouteConfiguration per listener (named after it). Per model and public route:
 *   1. `x-flowgate-route-version: N` (set only by ext_authz; clients' copies are removed at the listener):
 *      version N's cluster;
 *   2. a request carrying a pin header (`x-model-version`, `x-model-alias`): ext_authz judges the pin (400
 *      `ambiguous_pin`, 404 `version_not_live`, 403) and, when it names one live version the caller may use,
 *      sets the route-version header and clears the route cache, so the request lands on route 1;
 *   3. everything else: the weighted split between the live versions (and the mirror, if any).
 * A model with no live version answers 503 `no_live_version`; a path no model claims, 404 `no_route`.
 * Every answer from a model version carries `x-flowgate-model-version`.
 */

const VERSION_HEADER = Header.pinVersion;
const ALIAS_HEADER = Header.pinAlias;
const SERVED_VERSION_HEADER = Header.servedVersion;
/** The number Envoy's weighted split reads for a sticky model (set by the filter service from the sticky header). */
const STICKY_HASH_HEADER = Header.stickyHash;
const ROUTE_VERSION_HEADER = Header.routeVersion;

const OVERWRITE = 'OVERWRITE_IF_EXISTS_OR_ADD';

function header(key: string, value: string): object {
  return { header: { key, value }, append_action: OVERWRITE };
}

function jsonError(status: number, error: string, message: string, extra: Record<string, unknown> = {}): object {
  return {
    direct_response: { status, body: { inline_string: `${JSON.stringify({ error, message, ...extra })}\n` } },
    response_headers_to_add: [header('content-type', 'application/json')],
  };
}

/** The upstream path a public path is rewritten to, for the exact prefix and for what is below it; undefined: none. */
function rewrites(model: ModelIR): { exact: string | undefined; below: string | undefined } {
  // A gRPC path names the service and method the version serves: it is passed on as it is.
  if (model.protocol === 'grpc') return { exact: undefined, below: undefined };
  if (model.protocol === 'oip') {
    const base = `/v2/models/${encodeURIComponent(model.registeredModel)}`;
    return { exact: base, below: `${base}/` };
  }
  return { exact: '/invocations', below: '/' };
}

function routeAction(model: ModelIR, prefixRewrite: string | undefined, target: { cluster: string } | { weighted_clusters: object }): Record<string, unknown> {
  const s = model.settings;
  const action: Record<string, unknown> = { ...target, ...(prefixRewrite !== undefined && { prefix_rewrite: prefixRewrite }), timeout: duration(s.timeoutMs) };
  if (s.retries && s.retries.attempts > 0) {
    action.retry_policy = {
      retry_on: s.retries.on.join(','),
      num_retries: { value: s.retries.attempts },
      ...(s.retries.perTryTimeoutMs !== undefined && { per_try_timeout: duration(s.retries.perTryTimeoutMs) }),
    };
  }
  const { rateLimits } = routeFilterConfig(model, { pinRequested: false });
  if (rateLimits) action.rate_limits = rateLimits;
  if (model.mirror) {
    action.request_mirror_policies = [
      { cluster: model.mirror.cluster, runtime_fraction: { default_value: { numerator: Math.round(model.mirror.percent * 10_000), denominator: 'MILLION' } } },
    ];
  }
  return action;
}

/**
 * The version that answered, on every answer a model version produced: read from the upstream host's own
 * metadata, so a local reply (401, 429, 503 from a filter) that no version produced carries none.
 */
const SERVED_VERSION = header(SERVED_VERSION_HEADER, '%UPSTREAM_METADATA(flowgate:version)%');

/** The request body a model's routes must hold whole: for ext_proc on the route, or on a version's cluster. */
function bodyLimit(model: ModelIR): number | undefined {
  const route = model.filters?.extProc ? (model.rules.masking?.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES) : undefined;
  const version = model.versionBodyLimitBytes;
  if (route === undefined) return version;
  return version === undefined ? route : Math.max(route, version);
}

/** The routes of one model on one public route, for one path match (exact prefix, or below it). */
function modelRoutes(model: ModelIR, match: Record<string, unknown>, prefixRewrite: string | undefined): object[] {
  const name = (suffix: string): string => `${model.name}:${suffix}`;
  if (model.live.length === 0) {
    return [{ name: name('no-live-version'), match, ...jsonError(503, 'no_live_version', `model '${model.name}' has no live version`, { model: model.name }) }];
  }
  const common = (pinRequested: boolean): Record<string, unknown> => {
    const { perFilter } = routeFilterConfig(model, { pinRequested });
    return {
      response_headers_to_add: [SERVED_VERSION],
      // The caller's credentials are the gateway's to read, never the model server's,
      // and the routing headers are only Envoy's business.
      request_headers_to_remove: [...CREDENTIAL_HEADERS, Header.routeVersion, Header.stickyHash],
      ...(perFilter && { typed_per_filter_config: perFilter }),
      ...(bodyLimit(model) !== undefined && { per_request_buffer_limit_bytes: { value: bodyLimit(model) } }),
    };
  };
  const out: object[] = [];
  if (model.filters?.routesByVersion) {
    // The one version ext_authz decided (a valid pin, or the only versions the caller may use): Envoy never
    // routes on the client's own pin headers, whose repeated or joined values it would read differently.
    for (const l of model.live) {
      out.push({
        name: name(`version-v${l.version}`),
        match: { ...match, headers: [{ name: ROUTE_VERSION_HEADER, string_match: { exact: l.version } }] },
        route: routeAction(model, prefixRewrite, { cluster: l.cluster }),
        ...common(false),
      });
    }
  }
  const [only] = model.live;
  const target =
    model.live.length === 1 && only
      ? { cluster: only.cluster }
      : {
          weighted_clusters: {
            clusters: model.live.map((l) => ({ name: l.cluster, weight: { value: l.weight } })),
            // Sticky: the filter service hashes the caller's header into this one; without it, the pick is random.
            ...(model.sticky && { header_name: STICKY_HASH_HEADER }),
          },
        };
  if (model.pinning) {
    // A request that pins is first matched here: ext_authz reads the pins, answers 400 or 404 itself, or sets
    // the route-version header and clears the route cache, so the request is matched again above.
    for (const [h, what] of [
      [VERSION_HEADER, 'version'],
      [ALIAS_HEADER, 'alias'],
    ] as const) {
      out.push({ name: name(`pin-${what}`), match: { ...match, headers: [{ name: h, present_match: true }] }, route: routeAction(model, prefixRewrite, target), ...common(true) });
    }
  }
  out.push({ name: name('split'), match, route: routeAction(model, prefixRewrite, target), ...common(false) });
  return out;
}

/** A host pattern without its port: listeners already separate ports, and the route table ignores them. */
function hostOnly(pattern: string): string {
  return pattern === '*' ? '*' : pattern.replace(/:\d+$/, '');
}

/** Whether a host pattern matches every host a virtual host's domain can match. */
export function covers(pattern: string, domain: string): boolean {
  if (pattern === '*' || pattern === domain) return true;
  return pattern.startsWith('*.') && domain !== '*' && domain.endsWith(pattern.slice(1));
}

/** Higher for a more specific host pattern: exact names, then longer wildcard suffixes, then '*'. */
function specificity(pattern: string): number {
  if (pattern === '*') return 0;
  if (pattern.startsWith('*.')) return pattern.length;
  return 10_000 + pattern.length;
}

interface Claim {
  /** A model's or a pipeline's route: exactly one is set. */
  readonly model?: ModelIR;
  readonly pipeline?: PipelineIR;
  readonly route: PublicRoute;
  readonly host: string;
}

const ownerName = (c: Claim): string => c.model?.name ?? c.pipeline?.name ?? '';

export function routeConfiguration(ir: GatewayIR, listener: string): object {
  const claims: Claim[] = [];
  for (const model of ir.models) {
    for (const route of model.routes) if (route.listener === listener) claims.push({ model, route, host: hostOnly(route.host) });
  }
  for (const pipeline of ir.pipelines ?? []) {
    for (const route of pipeline.routes) if (route.listener === listener) claims.push({ pipeline, route, host: hostOnly(route.host) });
  }
  const domains = [...new Set(['*', ...claims.map((c) => c.host)])].sort((a, b) => specificity(b) - specificity(a) || (a < b ? -1 : a > b ? 1 : 0));
  const virtualHosts = domains.map((domain) => {
    const mine = claims
      .filter((c) => covers(c.host, domain))
      // Longer prefixes first (/models/a-b before /models/a); for one prefix, the most specific host first.
      .sort((a, b) => b.route.pathPrefix.length - a.route.pathPrefix.length || specificity(b.host) - specificity(a.host) || (ownerName(a) < ownerName(b) ? -1 : 1));
    const routes: object[] = [];
    const seen = new Set<string>();
    for (const c of mine) {
      // A prefix is served once per virtual host: by the claim of the most specific host.
      if (seen.has(c.route.pathPrefix)) continue;
      seen.add(c.route.pathPrefix);
      const prefix = c.route.pathPrefix === '/' ? '' : c.route.pathPrefix;
      if (c.pipeline) {
        routes.push(...pipelineRoutes(c.pipeline, listener, prefix));
        continue;
      }
      if (!c.model) continue;
      const rw = rewrites(c.model);
      routes.push(...modelRoutes(c.model, { path: prefix || '/' }, rw.exact));
      routes.push(...modelRoutes(c.model, { prefix: `${prefix}/` }, rw.below));
    }
    routes.push({ name: 'no-route', match: { prefix: '/' }, ...jsonError(404, 'no_route', 'no model is published at this path') });
    return { name: domain === '*' ? 'any' : domain, domains: [domain], routes };
  });
  return { name: listener, virtual_hosts: virtualHosts, ignore_port_in_host_matching: true };
}

export function translateRoutes(ir: GatewayIR): ResourceInput[] {
  return ir.listeners.map((l) => ({ typeUrl: TypeUrl.RouteConfiguration, name: l.name, message: routeConfiguration(ir, l.name) }));
}
