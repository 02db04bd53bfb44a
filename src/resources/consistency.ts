import { TypeUrl, type ResourceInput } from './types.js';

/**
 * The check made before a snapshot is published (as go-control-plane's Snapshot.Consistent): every route
 * configuration a listener names over RDS exists, every cluster a route, mirror or filter names exists, and
 * every EDS cluster has its endpoints. A snapshot that fails is never published: an Envoy would otherwise
 * wait forever for a resource that never comes, or send traffic to a cluster it does not know.
 */

/** One reference to a resource that the set does not contain. */
export interface DanglingReference {
  /** The resource that refers, e.g. `Listener public`. */
  readonly from: string;
  /** What is missing, e.g. `RouteConfiguration public`. */
  readonly missing: string;
}

export class InconsistentSnapshotError extends Error {
  override readonly name = 'InconsistentSnapshotError';
  readonly code = 'snapshot.inconsistent';
  constructor(readonly dangling: readonly DanglingReference[]) {
    const shown = dangling.slice(0, 10).map((d) => `${d.from} -> ${d.missing}`);
    const more = dangling.length > shown.length ? ` and ${dangling.length - shown.length} more` : '';
    super(`the snapshot is inconsistent (not published): ${shown.join('; ')}${more}`);
  }
}

/** Clusters every Flowgate bootstrap defines statically: references to them need no resource. */
export interface ConsistencyOptions {
  readonly staticClusters?: readonly string[];
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Calls `visit` on every object inside `value` (depth first, the root included). */
function walk(value: unknown, visit: (o: Json) => void): void {
  if (Array.isArray(value)) {
    for (const item of value) walk(item, visit);
    return;
  }
  if (!isObject(value)) return;
  visit(value);
  for (const v of Object.values(value)) walk(v, visit);
}

/** The clusters gRPC services inside a message name (filters, access logs, tracers). */
function grpcClusterReferences(message: object): string[] {
  const out: string[] = [];
  walk(message, (o) => {
    if (isObject(o.envoy_grpc) && typeof o.envoy_grpc.cluster_name === 'string') out.push(o.envoy_grpc.cluster_name);
  });
  return out;
}

/** The clusters each route object names, once per object (translators reuse an unchanged model's routes). */
const routeRefs = new WeakMap<object, readonly string[]>();

/** The clusters one route sends to (target, weighted clusters, mirrors) and its filters' gRPC services name. */
function oneRouteReferences(route: unknown): readonly string[] {
  if (!isObject(route)) return [];
  const known = routeRefs.get(route);
  if (known) return known;
  const out: string[] = [];
  const action = isObject(route.route) ? route.route : undefined;
  if (action) {
    if (typeof action.cluster === 'string') out.push(action.cluster);
    const weighted = isObject(action.weighted_clusters) && Array.isArray(action.weighted_clusters.clusters) ? action.weighted_clusters.clusters : [];
    for (const c of weighted) if (isObject(c) && typeof c.name === 'string') out.push(c.name);
    for (const m of Array.isArray(action.request_mirror_policies) ? action.request_mirror_policies : []) {
      if (isObject(m) && typeof m.cluster === 'string') out.push(m.cluster);
    }
  }
  out.push(...grpcClusterReferences(route));
  routeRefs.set(route, out);
  return out;
}

/** The clusters a route configuration's routes send to: targets, weighted clusters and mirrors. */
function routeClusterReferences(message: object): string[] {
  const out: string[] = [];
  const config = message as Json;
  const virtualHosts = Array.isArray(config.virtual_hosts) ? config.virtual_hosts : [];
  for (const vh of virtualHosts) {
    if (!isObject(vh)) continue;
    const routes = Array.isArray(vh.routes) ? vh.routes : [];
    for (const route of routes) out.push(...oneRouteReferences(route));
    const { routes: _routes, ...rest } = vh;
    out.push(...grpcClusterReferences(rest));
  }
  const { virtual_hosts: _vhs, ...top } = config;
  return [...out, ...grpcClusterReferences(top)];
}

/** The clusters an aggregate cluster tries (a fallback chain). */
function aggregateMembers(cluster: Json): string[] {
  const type = isObject(cluster.cluster_type) ? cluster.cluster_type : undefined;
  const config = type && isObject(type.typed_config) ? type.typed_config : undefined;
  return config && Array.isArray(config.clusters) ? config.clusters.filter((c): c is string => typeof c === 'string') : [];
}

/** The route configurations a listener names over RDS. */
function routeReferences(message: object): string[] {
  const out: string[] = [];
  walk(message, (o) => {
    if (isObject(o.rds) && typeof o.rds.route_config_name === 'string') out.push(o.rds.route_config_name);
  });
  return out;
}

const clusterRefs = new WeakMap<object, { readonly members: readonly string[]; readonly service: string | undefined }>();

/** What a cluster refers to: the members of an aggregate, the endpoints of an EDS cluster (once per message object). */
function clusterReferences(r: ResourceInput): { readonly members: readonly string[]; readonly service: string | undefined } {
  let refs = clusterRefs.get(r.message);
  if (!refs) {
    const m = r.message as Json;
    const eds = isObject(m.eds_cluster_config) ? m.eds_cluster_config : {};
    const service = m.type !== 'EDS' ? undefined : typeof eds.service_name === 'string' && eds.service_name !== '' ? eds.service_name : r.name;
    refs = { members: aggregateMembers(m), service };
    clusterRefs.set(r.message, refs);
  }
  return refs;
}

/** The dangling references in a resource set; empty when it is consistent. */
export function danglingReferences(resources: readonly ResourceInput[], options: ConsistencyOptions = {}): DanglingReference[] {
  const clusters = new Set<string>(options.staticClusters ?? []);
  const routes = new Set<string>();
  const endpoints = new Set<string>();
  for (const r of resources) {
    if (r.typeUrl === TypeUrl.Cluster) clusters.add(r.name);
    else if (r.typeUrl === TypeUrl.RouteConfiguration) routes.add(r.name);
    else if (r.typeUrl === TypeUrl.ClusterLoadAssignment) endpoints.add(r.name);
  }
  const out: DanglingReference[] = [];
  const seen = new Set<string>();
  const add = (from: string, missing: string): void => {
    const key = `${from}\u0000${missing}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ from, missing });
  };
  for (const r of resources) {
    switch (r.typeUrl) {
      case TypeUrl.Listener:
        for (const name of routeReferences(r.message)) if (!routes.has(name)) add(`Listener ${r.name}`, `RouteConfiguration ${name}`);
        for (const name of grpcClusterReferences(r.message)) if (!clusters.has(name)) add(`Listener ${r.name}`, `Cluster ${name}`);
        break;
      case TypeUrl.RouteConfiguration:
        for (const name of routeClusterReferences(r.message)) if (!clusters.has(name)) add(`RouteConfiguration ${r.name}`, `Cluster ${name}`);
        break;
      case TypeUrl.Cluster: {
        const refs = clusterReferences(r);
        for (const name of refs.members) if (!clusters.has(name)) add(`Cluster ${r.name}`, `Cluster ${name}`);
        if (refs.service !== undefined && !endpoints.has(refs.service)) add(`Cluster ${r.name}`, `ClusterLoadAssignment ${refs.service}`);
        break;
      }
      default:
        break;
    }
  }
  return out;
}

/** Throws InconsistentSnapshotError naming every dangling reference; returns the resources otherwise. */
export function assertConsistent<T extends readonly ResourceInput[]>(resources: T, options: ConsistencyOptions = {}): T {
  const dangling = danglingReferences(resources, options);
  if (dangling.length > 0) throw new InconsistentSnapshotError(dangling);
  return resources;
}
