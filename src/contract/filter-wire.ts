/**
 * The names the control plane and the filter service must agree on: headers Envoy and the filter service
 * read or write, the metadata and context keys Envoy sends per route, the rate-limit domain and descriptor
 * keys, and the names of Flowgate's HTTP filters. Both sides import them from here, so a name renamed on one
 * side cannot silently break the other. This module imports nothing.
 */

/** Request and response headers with a meaning to Flowgate. */
export const Header = {
  /** The authenticated consumer, set by ext_authz for the upstream, the rate-limit descriptors and ext_proc. */
  consumer: 'x-flowgate-consumer',
  /** The number Envoy's weighted split of a sticky model reads; set by ext_authz from the caller's sticky key. */
  stickyHash: 'x-flowgate-sticky-hash',
  /** A caller's pin of a model version by number. */
  pinVersion: 'x-model-version',
  /** A caller's pin of a model version by registry alias. */
  pinAlias: 'x-model-alias',
  /** On every answer a model version produced: which version. */
  servedVersion: 'x-flowgate-model-version',
  /**
   * The live version Envoy must route this request to: set by ext_authz (from a valid pin, or because the
   * caller may use only some live versions), matched by the route table. Clients can never send it.
   */
  routeVersion: 'x-flowgate-route-version',
  /** Envoy's request id, carried into the audit log. */
  requestId: 'x-request-id',
  /** On a pipeline route, set by Envoy: the local address the caller reached, where the steps come back. */
  pipelineCallback: 'x-flowgate-pipeline-callback',
  /** On a pipeline route, set by Envoy: the listener the call came in on. */
  pipelineListener: 'x-flowgate-pipeline-listener',
} as const;

/** Every header whose name starts with this is Flowgate's own. */
export const INTERNAL_HEADER_PREFIX = 'x-flowgate-';

/**
 * The request headers only Flowgate may set: every listener removes them from what a client sends, before
 * routing and before any filter runs, so none can be forged on any route, filtered or not.
 */
export const INTERNAL_REQUEST_HEADERS: readonly string[] = [Header.consumer, Header.stickyHash, Header.routeVersion, Header.pipelineCallback, Header.pipelineListener];

/** The request headers that carry a caller's credential; the gateway consumes them and never forwards them. */
export const CREDENTIAL_HEADERS = ['authorization', 'x-api-key'] as const;

/** The gRPC initial metadata key Envoy's ext_proc sends per route (ExtProcPerRoute): the model name. */
export const MODEL_METADATA_KEY = 'x-flowgate-model';

/**
 * The gRPC initial metadata key of the cluster-level ext_proc filter (one per version cluster): the model
 * version that cluster serves. Its presence is what tells a version's stream from a route's.
 */
export const VERSION_METADATA_KEY = 'x-flowgate-version';

/** The ext_authz context extension Envoy sends per route (ExtAuthzPerRoute check_settings): the model name. */
export const MODEL_CONTEXT_KEY = 'model';

/** The rate-limit domain of every descriptor Flowgate's routes send. */
export const RATE_LIMIT_DOMAIN = 'flowgate';

/** The keys of the entries in a rate-limit descriptor. */
export const DescriptorKey = {
  model: 'model',
  consumer: 'consumer',
} as const;

/** How a filter behaves when the filter service cannot answer: refuse (closed) or let the request pass (open). */
export type FailureMode = 'closed' | 'open';

const suffix = (mode: FailureMode): string => (mode === 'open' ? '.open' : '');

/** The names of Flowgate's HTTP filters in an Envoy listener; each exists once per failure mode. */
export const FilterName = {
  authz: (mode: FailureMode): string => `flowgate.authz${suffix(mode)}`,
  rateLimit: (mode: FailureMode): string => `flowgate.ratelimit${suffix(mode)}`,
  extProc: (mode: FailureMode): string => `flowgate.extproc${suffix(mode)}`,
  /** The cluster-level ext_proc of a version's cluster (signature validation, protocol conversion). */
  versionExtProc: 'flowgate.version-extproc',
} as const;

/** The rate-limit stage the filter of a failure mode acts on (a route's rate_limits name their stage). */
export function rateLimitStage(mode: FailureMode): number {
  return mode === 'open' ? 1 : 0;
}
