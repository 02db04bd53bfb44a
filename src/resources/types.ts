import { FILTER_POLICY_TYPE_URL } from '../contract/filter-policy.js';

/**
 * The resource kinds Flowgate's translators produce and its xDS server serves: their type URLs, short
 * names, and the plain-object form a translator hands over. Translators know nothing of streams; the xDS
 * server knows nothing of how a resource was built.
 */

export const TypeUrl = {
  Cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  ClusterLoadAssignment: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  Listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  RouteConfiguration: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  FilterPolicy: FILTER_POLICY_TYPE_URL,
} as const;

export type TypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];

/** Every type, in a fixed order (the ADS push order, see xds/stream/ordering.ts). */
export const ALL_TYPES: readonly TypeUrl[] = [TypeUrl.Cluster, TypeUrl.ClusterLoadAssignment, TypeUrl.Listener, TypeUrl.RouteConfiguration, TypeUrl.FilterPolicy];

const KNOWN = new Set<string>(ALL_TYPES);

/** True for a type URL Flowgate serves. */
export function isKnownType(typeUrl: string): typeUrl is TypeUrl {
  return KNOWN.has(typeUrl);
}

/** A resource as a translator produces it: a plain object in Envoy's proto field names. */
export interface ResourceInput {
  readonly typeUrl: TypeUrl;
  readonly name: string;
  readonly message: object;
}

/** A short name for logs and metric labels: cds, eds, lds, rds, filter-policy. */
export function shortTypeName(typeUrl: string): string {
  switch (typeUrl) {
    case TypeUrl.Cluster:
      return 'cds';
    case TypeUrl.ClusterLoadAssignment:
      return 'eds';
    case TypeUrl.Listener:
      return 'lds';
    case TypeUrl.RouteConfiguration:
      return 'rds';
    case TypeUrl.FilterPolicy:
      return 'filter-policy';
    default:
      return 'unknown';
  }
}
