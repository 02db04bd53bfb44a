import type { GatewayIR, LiveVersion, ModelIR, PipelineIR, PublicRoute } from '../ir/types.js';
import { pipelineRoutes } from './pipelines.js';
import { duration } from '../proto/codec.js';
import { apiErrorBody } from '../contract/api-errors.js';
import { CREDENTIAL_HEADERS, Header, type ApiKind } from '../contract/filter-wire.js';
import { DEFAULT_MAX_BODY_BYTES } from '../ir/filter-rules.js';
import { TypeUrl, type ResourceInput } from '../resources/types.js';
import { listenerHttpFilters, routeFilterConfig, type RouteFilterConfig, type RouteOwner } from './http-filters/index.js';
import { llmRoutes } from './llm-routes.js';
import { servedBySplit, splitClusterName, splitHashPolicy } from './eds-split.js';
import { joined, startsGroup, withSegments } from '../resources/segments.js';
import { sharedChanges } from '../resources/window.js';
import { shallowCopy } from '../objects.js';

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

/** A response header Envoy sets, replacing any value. */
export function header(key: string, value: string): object {
  return { header: { key, value }, append_action: OVERWRITE };
}

/** A direct response with an error body in the API's shape. */
export function jsonError(status: number, error: string, message: string, extra: Record<string, unknown> = {}, api: ApiKind = 'flowgate'): object {
  return {
    direct_response: { status, body: { inline_string: apiErrorBody(api, status, error, message, extra) } },
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

/**
 * How one family of a model's routes is built: the classic `/models/{name}` routes, or the model's routes on
 * the OpenAI API (src/translate/llm-routes.ts), which differ in names, targets (a fallback chain's aggregate
 * cluster), retries, error shapes and the filters they must switch off.
 */
export interface RouteShape {
  readonly name: (suffix: string) => string;
  /** Absent: the path goes upstream as it came. */
  readonly prefixRewrite: string | undefined;
  readonly api: ApiKind;
  /** The cluster a live version's requests go to. */
  readonly target: (live: LiveVersion) => string;
  /** Replaces the model's own retry policy. */
  readonly retryPolicy?: object | undefined;
  /** Added to every route action. */
  readonly action?: Readonly<Record<string, unknown>>;
  /** Completes every route (given the per-filter config it already has). */
  readonly finish?: (route: Record<string, unknown>) => Record<string, unknown>;
  /** Extra response headers on every answer a version produced. */
  readonly responseHeaders?: readonly object[];
  /** Request headers removed before the upstream, besides credentials and the routing headers. */
  readonly removeHeaders?: readonly string[];
  /** A route taken while the model cools down (the LLM router's header), to this cluster. */
  readonly cooldown?: { readonly header: string; readonly cluster: string } | undefined;
  /** Set when the model's split is carried by this EDS cluster (eds-split.ts): every route targets it. */
  readonly splitCluster?: string | undefined;
}

/** The shape of a model's classic routes. */
function classicShape(model: ModelIR, prefixRewrite: string | undefined, splitCluster: string | undefined): RouteShape {
  return { name: (suffix) => `${model.name}:${suffix}`, prefixRewrite, api: 'flowgate', target: (l) => l.cluster, ...(splitCluster !== undefined && { splitCluster }) };
}

type Target = { cluster: string; hash_policy?: object[] } | { weighted_clusters: object };

function routeAction(model: ModelIR, shape: RouteShape, target: Target, rateLimits: readonly object[] | undefined): Record<string, unknown> {
  const s = model.settings;
  // Properties set one by one rather than spread: a route action per model and target, 20,000 at 10,000 models.
  const action: Record<string, unknown> = {};
  if ('cluster' in target) {
    action.cluster = target.cluster;
    if (target.hash_policy) action.hash_policy = target.hash_policy;
  } else action.weighted_clusters = target.weighted_clusters;
  if (shape.prefixRewrite !== undefined) action.prefix_rewrite = shape.prefixRewrite;
  action.timeout = duration(s.timeoutMs);
  if (shape.retryPolicy) action.retry_policy = shape.retryPolicy;
  else if (s.retries && s.retries.attempts > 0) {
    action.retry_policy = {
      retry_on: s.retries.on.join(','),
      num_retries: { value: s.retries.attempts },
      ...(s.retries.perTryTimeoutMs !== undefined && { per_try_timeout: duration(s.retries.perTryTimeoutMs) }),
    };
  }
  if (rateLimits) action.rate_limits = rateLimits;
  if (model.mirror) {
    action.request_mirror_policies = [
      { cluster: model.mirror.cluster, runtime_fraction: { default_value: { numerator: Math.round(model.mirror.percent * 10_000), denominator: 'MILLION' } } },
    ];
  }
  if (shape.action) Object.assign(action, shape.action);
  return action;
}

/** What every route of a model (for one pin flag) carries besides its name, match and action. */
interface RouteCommon {
  readonly responseHeaders: readonly object[];
  readonly removedHeaders: readonly string[];
  readonly perFilter: Readonly<Record<string, unknown>> | undefined;
  readonly bufferLimit: object | undefined;
}

/** A route of a model: its own name, match and action, and the parts its routes share. */
function modelRoute(name: string, match: Record<string, unknown>, action: Record<string, unknown>, c: RouteCommon): Record<string, unknown> {
  const route: Record<string, unknown> = { name, match, route: action, response_headers_to_add: c.responseHeaders, request_headers_to_remove: c.removedHeaders };
  if (c.perFilter) route.typed_per_filter_config = c.perFilter;
  if (c.bufferLimit) route.per_request_buffer_limit_bytes = c.bufferLimit;
  return route;
}

/**
 * The version that answered, on every answer a model version produced: read from the upstream host's own
 * metadata, so a local reply (401, 429, 503 from a filter) that no version produced carries none.
 */
const SERVED_VERSION = header(SERVED_VERSION_HEADER, '%UPSTREAM_METADATA(flowgate:version)%');
const SERVED_ONLY: readonly object[] = [SERVED_VERSION];
/** The caller's credentials are the gateway's to read, never the model server's, and the routing headers are only Envoy's business. */
const ROUTE_HEADERS_REMOVED: readonly string[] = [...CREDENTIAL_HEADERS, Header.routeVersion, Header.stickyHash];

/** The request body a model's routes must hold whole: for ext_proc on the route, or on a version's cluster. */
function bodyLimit(model: ModelIR): number | undefined {
  const route = model.filters?.extProc ? (model.rules.masking?.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES) : undefined;
  const version = model.versionBodyLimitBytes;
  if (route === undefined) return version;
  return version === undefined ? route : Math.max(route, version);
}

/** The routes of one model for one path match, shaped by `shape` (classic routes by default). */
export function modelRoutes(model: ModelIR, match: Record<string, unknown>, shape: RouteShape): object[] {
  const name = shape.name;
  if (model.live.length === 0) {
    return [{ name: name('no-live-version'), match, ...jsonError(503, 'no_live_version', `model '${model.name}' has no live version`, { model: model.name }, shape.api) }];
  }
  // What the filters add to a route and the headers every route sets or removes are made once per call and
  // shared by the routes that need the same, as is the pin and split routes' action (one object each, so the
  // encoder and the collector see one thing, not one per route).
  const filterConfig: (RouteFilterConfig | undefined)[] = [undefined, undefined];
  const configFor = (pinRequested: boolean): RouteFilterConfig => (filterConfig[pinRequested ? 1 : 0] ??= routeFilterConfig(model, { pinRequested, api: shape.api }));
  const commons: (RouteCommon | undefined)[] = [undefined, undefined];
  const responseHeaders = shape.responseHeaders ? [SERVED_VERSION, ...shape.responseHeaders] : SERVED_ONLY;
  const removedHeaders = shape.removeHeaders ? [...ROUTE_HEADERS_REMOVED, ...shape.removeHeaders] : ROUTE_HEADERS_REMOVED;
  const limit = bodyLimit(model);
  const bufferLimit = limit !== undefined ? { value: limit } : undefined;
  const common = (pinRequested: boolean): RouteCommon => (commons[pinRequested ? 1 : 0] ??= { responseHeaders, removedHeaders, perFilter: configFor(pinRequested).perFilter, bufferLimit });
  // The last target's action is kept: the pin and split routes, made in a row for the same target, share it.
  let shared: { readonly target: Target; readonly action: Record<string, unknown> } | undefined;
  const action = (target: Target): Record<string, unknown> => {
    if (shared?.target === target) return shared.action;
    const made = routeAction(model, shape, target, configFor(false).rateLimits);
    shared = { target, action: made };
    return made;
  };
  const finish = (route: Record<string, unknown>): object => (shape.finish ? shape.finish(route) : route);
  const out: object[] = [];
  const split = shape.splitCluster;
  const hashPolicy = split !== undefined ? splitHashPolicy(model) : undefined;
  const splitTarget = split !== undefined ? { cluster: split, ...(hashPolicy && { hash_policy: hashPolicy }) } : undefined;
  if (model.filters?.routesByVersion && splitTarget) {
    // The version is chosen by the split cluster's subset balancer from the header (header_to_metadata):
    // one route, whatever the live versions.
    out.push(
      finish(modelRoute(name('version'), withHeader(match, ROUTE_VERSION_PRESENT), action(splitTarget), common(false))),
    );
  } else if (model.filters?.routesByVersion) {
    // The one version ext_authz decided (a valid pin, or the only versions the caller may use): Envoy never
    // routes on the client's own pin headers, whose repeated or joined values it would read differently.
    for (const l of model.live) {
      out.push(
        finish(
          modelRoute(
            name(`version-v${l.version}`),
            withHeader(match, { name: ROUTE_VERSION_HEADER, string_match: { exact: l.version } }),
            action({ cluster: shape.target(l) }),
            common(false),
          ),
        ),
      );
    }
  }
  const [only] = model.live;
  const target =
    splitTarget ??
    (model.live.length === 1 && only
      ? { cluster: shape.target(only) }
      : {
          weighted_clusters: {
            clusters: model.live.map((l) => ({ name: shape.target(l), weight: { value: l.weight } })),
            // Sticky: the filter service hashes the caller's header into this one; without it, the pick is random.
            ...(model.sticky && { header_name: STICKY_HASH_HEADER }),
          },
        });
  if (model.pinning) {
    // A request that pins is first matched here: ext_authz reads the pins, answers 400 or 404 itself, or sets
    // the route-version header and clears the route cache, so the request is matched again above.
    for (const [present, suffix] of PIN_MATCHES) out.push(finish(modelRoute(name(suffix), withHeader(match, present), action(target), common(true))));
  }
  if (shape.cooldown) {
    out.push(
      finish(modelRoute(name('cooldown'), withHeader(match, { name: shape.cooldown.header, present_match: true }), action({ cluster: shape.cooldown.cluster }), common(false))),
    );
  }
  out.push(finish(modelRoute(name('split'), match, action(target), common(false))));
  return out;
}

/**
 * A model's classic routes for one published prefix, made once per ModelIR object: the IR hands back the same
 * object for a model that did not change, so its routes (and the encoder's bytes for them) are reused.
 */
const classicMemo = new WeakMap<ModelIR, Map<string, readonly object[]>>();

function classicRoutes(model: ModelIR, prefix: string, split: string | undefined): readonly object[] {
  let byPrefix = classicMemo.get(model);
  if (!byPrefix) {
    byPrefix = new Map();
    classicMemo.set(model, byPrefix);
  }
  const key = split === undefined ? prefix : `${prefix}\u0000${split}`;
  let routes = byPrefix.get(key);
  if (!routes) {
    const rw = rewrites(model);
    routes = [...modelRoutes(model, { path: prefix || '/' }, classicShape(model, rw.exact, split)), ...modelRoutes(model, { prefix: `${prefix}/` }, classicShape(model, rw.below, split))];
    byPrefix.set(key, routes);
  }
  return routes;
}

function matchHeaders(match: Record<string, unknown>): object[] {
  return Array.isArray(match.headers) ? (match.headers as object[]) : [];
}

/** `match` that also requires `header` (after the headers it already requires). */
function withHeader(match: Record<string, unknown>, header: object): Record<string, unknown> {
  const before = matchHeaders(match);
  const out = shallowCopy(match);
  out.headers = before.length === 0 ? [header] : [...before, header];
  return out;
}

/** The header matchers every model's routes use, one object each (the encoder keeps the bytes of a repeated one). */
const ROUTE_VERSION_PRESENT = { name: ROUTE_VERSION_HEADER, present_match: true };
const PIN_MATCHES: readonly (readonly [object, string])[] = [
  [{ name: VERSION_HEADER, present_match: true }, 'pin-version'],
  [{ name: ALIAS_HEADER, present_match: true }, 'pin-alias'],
];

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
  /** Whether the claim starts a group of its virtual host's claims (startsGroup of its owner, prefix and host). */
  readonly starts: boolean;
}

function claimOf(owner: { readonly model: ModelIR } | { readonly pipeline: PipelineIR }, route: PublicRoute): Claim {
  const host = hostOnly(route.host);
  // The group key's parts hashed in a row, not joined first (a string made and flattened per claim), and
  // the claim written out rather than spread: 10,000 claims cost 28 ms that way, 2 ms this way.
  if ('model' in owner) return { model: owner.model, route, host, starts: startsGroup(owner.model.name, route.pathPrefix, host) };
  return { pipeline: owner.pipeline, route, host, starts: startsGroup(owner.pipeline.name, route.pathPrefix, host) };
}

/** The last route of every virtual host (one object, so the encoder and the consistency check keep it). */
const NO_ROUTE: readonly object[] = [{ name: 'no-route', match: { prefix: '/' }, ...jsonError(404, 'no_route', 'no model is published at this path') }];

const ownerName = (c: Claim): string => c.model?.name ?? c.pipeline?.name ?? '';

/** A claim's place in a virtual host's list: longer prefixes first, then the more specific host, then by owner name (0: a tie). */
function claimOrder(a: Claim, b: Claim): number {
  const owners = ownerName(a) < ownerName(b) ? -1 : ownerName(a) > ownerName(b) ? 1 : 0;
  return b.route.pathPrefix.length - a.route.pathPrefix.length || specificity(b.host) - specificity(a.host) || owners;
}

/**
 * A run of a virtual host's sorted claims: from a claim that starts a group (or the first claim) to the next
 * one that does. Its routes are one kept segment of the virtual host's list (itself made of its claims'
 * segments), so the encoder, the version's digest input and the consistency check work per group: a change
 * makes one group's routes again, not a step per model of the listener.
 */
interface ClaimGroup {
  readonly claims: Claim[];
  /** Each claim's routes (SHADOWED: its prefix is served by an earlier claim). */
  readonly parts: (readonly object[])[];
  /** The group's routes (its claims' joined, recorded as their segments); undefined: to be made again. */
  routes: readonly object[] | undefined;
}

/** One virtual host's sorted claims in groups, its prefixes counted. */
interface HostClaims {
  readonly domain: string;
  readonly groups: ClaimGroup[];
  readonly prefixes: Map<string, number>;
  virtualHost: object;
}

/** A listener's virtual hosts as the last IR made them (kept when that IR had no pipeline and no OpenAI API on the listener). */
interface ListenerClaims {
  models: readonly ModelIR[];
  readonly split: GatewayIR['trafficSplit'];
  readonly hosts: readonly HostClaims[];
  /** Claims per host: a host whose count reaches 0 takes its virtual host away. */
  readonly hostCounts: Map<string, number>;
}

const SHADOWED: readonly object[] = [];
/** The OpenAI API's routes on a listener that does not serve it (always a segment: the list starts with them). */
const NO_LLM_ROUTES: readonly object[] = [];

const lastClaims = new Map<string, ListenerClaims>();

const modelClaims = (model: ModelIR, listener: string): Claim[] => model.routes.filter((r) => r.listener === listener).map((route) => claimOf({ model }, route));

const claimRoutes = (ir: GatewayIR, c: Claim, listener: string): readonly object[] => {
  const prefix = c.route.pathPrefix === '/' ? '' : c.route.pathPrefix;
  if (c.pipeline) return pipelineRoutes(c.pipeline, listener, prefix);
  if (!c.model) return SHADOWED;
  return classicRoutes(c.model, prefix, servedBySplit(ir, c.model) ? splitClusterName(c.model.name) : undefined);
};

/** A sorted claim list cut before each claim that starts a group. */
function grouped(claims: readonly Claim[], parts: readonly (readonly object[])[]): ClaimGroup[] {
  const groups: ClaimGroup[] = [];
  let group: ClaimGroup | undefined;
  claims.forEach((c, k) => {
    if (!group || c.starts) {
      group = { claims: [], parts: [], routes: undefined };
      groups.push(group);
    }
    group.claims.push(c);
    group.parts.push(parts[k] as readonly object[]);
  });
  return groups;
}

/** A group's routes: each claim's routes one kept segment of the list (src/resources/segments.ts); a shadowed claim's are none. */
function groupRoutes(group: ClaimGroup): readonly object[] {
  if (!group.routes) {
    const segments = group.parts.filter((p) => p !== SHADOWED);
    group.routes = withSegments(joined(segments), segments);
  }
  return group.routes;
}

function virtualHost(host: HostClaims, llm: readonly object[]): object {
  // Each group's routes are one kept segment of the list, made of its claims' segments.
  const segments: (readonly object[])[] = [llm];
  for (const group of host.groups) {
    const routes = groupRoutes(group);
    if (routes.length > 0) segments.push(routes);
  }
  segments.push(NO_ROUTE);
  // One copy of the kept lists, not a push per route.
  const routes = joined(segments);
  return { name: host.domain === '*' ? 'any' : host.domain, domains: [host.domain], routes: withSegments(routes, segments) };
}

export function routeConfiguration(ir: GatewayIR, listener: string): object {
  const last = lastClaims.get(listener);
  const kept = last && last.split === ir.trafficSplit && (ir.pipelines ?? []).length === 0 && ir.openai?.listener !== listener ? patchedClaims(ir, listener, last) : undefined;
  const hosts = kept?.hosts ?? allClaims(ir, listener);
  return { name: listener, virtual_hosts: hosts.map((h) => h.virtualHost), ignore_port_in_host_matching: true };
}

/** Every claim on the listener, sorted, and the virtual hosts they make (kept for the next IR when it can be patched). */
function allClaims(ir: GatewayIR, listener: string): readonly HostClaims[] {
  lastClaims.delete(listener);
  const claims: Claim[] = [];
  for (const model of ir.models) {
    for (const route of model.routes) if (route.listener === listener) claims.push(claimOf({ model }, route));
  }
  for (const pipeline of ir.pipelines ?? []) {
    for (const route of pipeline.routes) if (route.listener === listener) claims.push(claimOf({ pipeline }, route));
  }
  const hostCounts = new Map<string, number>();
  for (const c of claims) hostCounts.set(c.host, (hostCounts.get(c.host) ?? 0) + 1);
  const domains = [...new Set(['*', ...hostCounts.keys()])].sort((a, b) => specificity(b) - specificity(a) || (a < b ? -1 : a > b ? 1 : 0));
  // The OpenAI API comes first in every virtual host: a model published at '/' must not swallow /v1.
  const llm = ir.openai?.listener === listener ? llmRoutes(ir, listenerHttpFilters(ir, listenerOwners(ir, listener), listener)) : NO_LLM_ROUTES;
  let ties = false;
  const hosts = domains.map((domain): HostClaims => {
    // Longer prefixes first (/models/a-b before /models/a); for one prefix, the most specific host first.
    const mine = claims.filter((c) => covers(c.host, domain)).sort((a, b) => claimOrder(a, b) || 1);
    const prefixes = new Map<string, number>();
    const parts = mine.map((c, k) => {
      if (k > 0 && claimOrder(mine[k - 1] as Claim, c) === 0) ties = true;
      const n = prefixes.get(c.route.pathPrefix) ?? 0;
      prefixes.set(c.route.pathPrefix, n + 1);
      // A prefix is served once per virtual host: by the claim of the most specific host.
      return n > 0 ? SHADOWED : claimRoutes(ir, c, listener);
    });
    const host = { domain, groups: grouped(mine, parts), prefixes, virtualHost: {} };
    host.virtualHost = virtualHost(host, llm);
    return host;
  });
  // One owner's claims that sort as equals keep the order the sort gave them: such a list is not patched.
  if (!ties && llm === NO_LLM_ROUTES && (ir.pipelines ?? []).length === 0) lastClaims.set(listener, { models: ir.models, split: ir.trafficSplit, hosts, hostCounts });
  return hosts;
}

/** The index of the last group whose first claim sorts before `c` (or as `c`, when `orSame`); 0 when none does. */
function groupIndex(groups: readonly ClaimGroup[], c: Claim, orSame: boolean): number {
  let lo = 0;
  let hi = groups.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const order = claimOrder((groups[mid] as ClaimGroup).claims[0] as Claim, c);
    if (order < 0 || (orSame && order === 0)) lo = mid + 1;
    else hi = mid;
  }
  return Math.max(0, lo - 1);
}

/** Removes the claim at `k` of group `g`; a group left empty goes, one left without its starting claim joins the group before. */
function removeClaim(groups: ClaimGroup[], g: number, k: number): void {
  const group = groups[g] as ClaimGroup;
  group.claims.splice(k, 1);
  group.parts.splice(k, 1);
  group.routes = undefined;
  if (group.claims.length === 0) groups.splice(g, 1);
  else if (k === 0 && g > 0) {
    const before = groups[g - 1] as ClaimGroup;
    before.claims.push(...group.claims);
    before.parts.push(...group.parts);
    before.routes = undefined;
    groups.splice(g, 1);
  }
}

/** Inserts claim `c` (with its routes) at `k` of group `g`; a claim that starts a group after it is cut off into its own. */
function insertClaim(groups: ClaimGroup[], g: number, k: number, c: Claim, routes: readonly object[]): void {
  let group = groups[g];
  if (!group) {
    group = { claims: [], parts: [], routes: undefined };
    groups.push(group);
  }
  group.claims.splice(k, 0, c);
  group.parts.splice(k, 0, routes);
  group.routes = undefined;
  // Only the new claim, or the one it displaced from the front, can start a group inside this one.
  const cut = k > 0 ? (c.starts ? k : -1) : group.claims[1]?.starts ? 1 : -1;
  if (cut > 0) groups.splice(g + 1, 0, { claims: group.claims.splice(cut), parts: group.parts.splice(cut), routes: undefined });
}

/** The index of the first claim of `claims` (sorted) that does not sort before `c`. */
function lowerBound(claims: readonly Claim[], c: Claim): number {
  let lo = 0;
  let hi = claims.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (claimOrder(claims[mid] as Claim, c) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The last IR's virtual hosts patched by the models that changed (removed and added claims placed by binary
 * search), or undefined when the change is not a patch: the domains change, a prefix is claimed twice in a
 * virtual host (which claim serves it could change), or two claims sort as equals.
 */
function patchedClaims(ir: GatewayIR, listener: string, last: ListenerClaims): ListenerClaims | undefined {
  const changes = sharedChanges(last.models, ir.models);
  if (!changes) return undefined;
  const removed = changes.removed.flatMap((m) => modelClaims(m, listener));
  const added = changes.added.flatMap((m) => modelClaims(m, listener));
  // Nothing of this listener changed: the virtual hosts are the last ones.
  if (removed.length === 0 && added.length === 0) {
    last.models = ir.models;
    return last;
  }
  // From here on the kept lists are changed in place: a change that is no patch drops them.
  lastClaims.delete(listener);
  const touched = new Set<HostClaims>();
  for (const c of removed) {
    const n = (last.hostCounts.get(c.host) ?? 0) - 1;
    last.hostCounts.set(c.host, n);
    for (const host of last.hosts) {
      if (!covers(c.host, host.domain)) continue;
      const g = groupIndex(host.groups, c, true);
      const claims = host.groups[g]?.claims ?? [];
      let k = lowerBound(claims, c);
      while (k < claims.length && claimOrder(claims[k] as Claim, c) === 0 && (claims[k] as Claim).model !== c.model) k++;
      const found = claims[k];
      if (!found || found.model !== c.model || found.route.pathPrefix !== c.route.pathPrefix || host.prefixes.get(c.route.pathPrefix) !== 1) return undefined;
      removeClaim(host.groups, g, k);
      host.prefixes.delete(c.route.pathPrefix);
      touched.add(host);
    }
  }
  for (const c of added) {
    if (c.host !== '*' && !(last.hostCounts.get(c.host) ?? 0)) {
      // A host no claim had is a new virtual host; one whose claims were all removed just now is the same one back.
      if (!last.hostCounts.has(c.host)) return undefined;
    }
    last.hostCounts.set(c.host, (last.hostCounts.get(c.host) ?? 0) + 1);
    for (const host of last.hosts) {
      if (!covers(c.host, host.domain)) continue;
      if (host.prefixes.has(c.route.pathPrefix)) return undefined;
      const g = groupIndex(host.groups, c, false);
      const claims = host.groups[g]?.claims ?? [];
      const k = lowerBound(claims, c);
      const next = claims[k] ?? host.groups[g + 1]?.claims[0];
      if (next && claimOrder(next, c) === 0) return undefined;
      insertClaim(host.groups, g, k, c, claimRoutes(ir, c, listener));
      host.prefixes.set(c.route.pathPrefix, 1);
      touched.add(host);
    }
  }
  // A host left without claims takes its virtual host away.
  for (const c of removed) if (c.host !== '*' && !last.hostCounts.get(c.host)) return undefined;
  for (const host of touched) host.virtualHost = virtualHost(host, NO_LLM_ROUTES);
  last.models = ir.models;
  lastClaims.set(listener, last);
  return last;
}

/** The models a listener serves: those with routes on it, and on the OpenAI API's listener every LLM model. */
export function listenerModels(ir: GatewayIR, listener: string): ModelIR[] {
  return ir.models.filter((m) => m.routes.some((r) => r.listener === listener) || (m.llm !== undefined && ir.openai?.listener === listener));
}

/** Everything whose routes a listener's filters configure: its models, and the pipelines published on it. */
export function listenerOwners(ir: GatewayIR, listener: string): RouteOwner[] {
  return [...listenerModels(ir, listener), ...(ir.pipelines ?? []).filter((p) => p.routes.some((r) => r.listener === listener))];
}

/** The route configurations of an IR, made once per IR object (every xDS mode serves the same ones). */
const routesMemo = new WeakMap<GatewayIR, ResourceInput[]>();

export function translateRoutes(ir: GatewayIR): ResourceInput[] {
  return [...routeResources(ir)];
}

/** translateRoutes, as the one list every mode of an IR shares (never to be changed). */
export function routeResources(ir: GatewayIR): readonly ResourceInput[] {
  let out = routesMemo.get(ir);
  if (!out) {
    out = ir.listeners.map((l) => ({ typeUrl: TypeUrl.RouteConfiguration, name: l.name, message: routeConfiguration(ir, l.name) }));
    routesMemo.set(ir, out);
  }
  return out;
}
