/**
 * The xDS resource types Flowgate serves, their type URLs, and the order in which an ADS stream applies them.
 */

export const TypeUrl = {
  Cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  ClusterLoadAssignment: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  Listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  RouteConfiguration: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  FilterPolicy: 'type.googleapis.com/flowgate.v1.FilterPolicy',
} as const;

export type TypeUrl = (typeof TypeUrl)[keyof typeof TypeUrl];

/**
 * Make-before-break order on ADS: clusters, then their endpoints, then the listeners and routes that use
 * them; Flowgate's own filter policy last. Removals of clusters and endpoints wait until everything else
 * has been acknowledged (see stream.ts).
 */
export const PUSH_ORDER: readonly TypeUrl[] = [
  TypeUrl.Cluster,
  TypeUrl.ClusterLoadAssignment,
  TypeUrl.Listener,
  TypeUrl.RouteConfiguration,
  TypeUrl.FilterPolicy,
];

const KNOWN = new Set<string>(PUSH_ORDER);

/** True for a type URL this server serves. */
export function isKnownType(typeUrl: string): typeUrl is TypeUrl {
  return KNOWN.has(typeUrl);
}

/**
 * Types whose state-of-the-world responses must carry every resource (a missing one means "deleted"), and
 * which a client may subscribe to as a wildcard. RDS and EDS are only ever requested by name.
 */
export function isFullStateType(typeUrl: string): boolean {
  return typeUrl === TypeUrl.Listener || typeUrl === TypeUrl.Cluster || typeUrl === TypeUrl.FilterPolicy;
}

/**
 * Types whose resources are kept on an ADS stream after a snapshot drops them, until the listeners and
 * routes that might still point at them have been replaced.
 */
export function isRetainedOnRemoval(typeUrl: string): boolean {
  return typeUrl === TypeUrl.Cluster || typeUrl === TypeUrl.ClusterLoadAssignment;
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
