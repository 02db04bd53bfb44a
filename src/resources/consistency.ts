import { TypeUrl, type ResourceInput } from './types.js';
import { changeLimit, listChanges, sharedChanges, type ListChanges } from './window.js';
import { segments } from './segments.js';

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

/** The clusters a route action sends to: its target, weighted clusters and mirrors. */
function actionReferences(action: Json, into: Set<string>): void {
  if (typeof action.cluster === 'string') into.add(action.cluster);
  const weighted = isObject(action.weighted_clusters) && Array.isArray(action.weighted_clusters.clusters) ? action.weighted_clusters.clusters : [];
  for (const c of weighted) if (isObject(c) && typeof c.name === 'string') into.add(c.name);
  for (const m of Array.isArray(action.request_mirror_policies) ? action.request_mirror_policies : []) {
    if (isObject(m) && typeof m.cluster === 'string') into.add(m.cluster);
  }
}

/** The clusters each route object names, once per object (translators reuse an unchanged model's routes). */
const routeRefs = new WeakMap<object, readonly string[]>();

/** The clusters one route sends to (target, weighted clusters, mirrors) and its filters' gRPC services name. */
function oneRouteReferences(route: unknown): readonly string[] {
  if (!isObject(route)) return [];
  const known = routeRefs.get(route);
  if (known) return known;
  const out: string[] = [];
  if (isObject(route.route)) {
    const named = new Set<string>();
    actionReferences(route.route, named);
    out.push(...named);
  }
  // A route names a gRPC service only in its filters' per-route configuration (an ext_proc override): the walk
  // goes there, not through the match, the headers and the action already read above.
  if (isObject(route.typed_per_filter_config)) out.push(...grpcClusterReferences(route.typed_per_filter_config));
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

/**
 * The incremental form of the check, for a pipeline that runs again and again with mostly the same
 * resource objects: it keeps what the last resource set has and names (per referenced name, how many
 * references), and looks only at the resources that changed (src/resources/window.ts). For a route
 * configuration that changed, only its routes that are not the same objects as before are looked at, so one
 * model's change to the route configuration of every model costs that model's routes.
 */
export class ConsistencyTracker {
  private state: TrackedSet | undefined;

  /** Throws InconsistentSnapshotError as assertConsistent does; returns the resources otherwise. */
  check<T extends readonly ResourceInput[]>(resources: T, options: ConsistencyOptions = {}): T {
    const statics = (options.staticClusters ?? []).join('\u0000');
    const before = this.state;
    this.state = undefined;
    const changes = before && before.statics === statics ? changesOf(before.inputs, resources) : undefined;
    const state = before && changes ? before : fullSet(resources, options, statics);
    if (state === before && changes) {
      const ok = applyChanges(state, changes);
      state.inputs = resources;
      if (!ok) throw new InconsistentSnapshotError(danglingReferences(resources, options));
    } else if (hasDangling(state)) {
      throw new InconsistentSnapshotError(danglingReferences(resources, options));
    }
    this.state = state;
    return resources;
  }
}

/**
 * What differs between two resource lists: per recorded list (translateGateway's per-type lists, compared once
 * per pair of lists for every stage of the build) when both are made of as many, else as one list.
 */
function changesOf(before: readonly ResourceInput[], after: readonly ResourceInput[]): ListChanges<ResourceInput> | undefined {
  const was = segments(before) as readonly (readonly ResourceInput[])[] | undefined;
  const now = segments(after) as readonly (readonly ResourceInput[])[] | undefined;
  if (!was || !now || was.length !== now.length) return listChanges(before, after, changeLimit(after.length));
  const removed: ResourceInput[] = [];
  const added: ResourceInput[] = [];
  for (let i = 0; i < now.length; i++) {
    const changes = sharedChanges(was[i] as readonly ResourceInput[], now[i] as readonly ResourceInput[]);
    if (!changes) return undefined;
    for (const r of changes.removed) removed.push(r);
    for (const r of changes.added) added.push(r);
  }
  return { removed, added };
}

/** What a checked resource set has and what it names, by `kind\0name` key. */
interface TrackedSet {
  inputs: readonly ResourceInput[];
  readonly statics: string;
  readonly have: Set<string>;
  readonly wanted: Map<string, number>;
}

/**
 * The key of a referenced resource: a cluster's is its name (most references name a cluster, and a key made
 * per reference was a string built, flattened and hashed 40,000 times per cold build), a route
 * configuration's and endpoints' a prefixed one. The prefix starts with a zero character, so a cluster whose
 * name does (no policy or registry value should make one) is prefixed too: no two resources share a key.
 */
const clusterKey = (name: string): string => (name.charCodeAt(0) === 0 ? `\u0000C${name}` : name);
const routesKey = (name: string): string => `\u0000R${name}`;
const endpointsKey = (name: string): string => `\u0000E${name}`;

function ownKey(r: ResourceInput): string | undefined {
  if (r.typeUrl === TypeUrl.Cluster) return clusterKey(r.name);
  if (r.typeUrl === TypeUrl.RouteConfiguration) return routesKey(r.name);
  if (r.typeUrl === TypeUrl.ClusterLoadAssignment) return endpointsKey(r.name);
  return undefined;
}

/** The parts of a resource whose references are counted separately: a route configuration's routes each. */
const unitsMemo = new WeakMap<object, readonly object[]>();
/** The keys each part refers to. */
const unitKeys = new WeakMap<object, readonly string[]>();

function unitsOf(r: ResourceInput): readonly object[] {
  const known = unitsMemo.get(r.message);
  if (known) return known;
  const units: object[] = [];
  if (r.typeUrl === TypeUrl.RouteConfiguration) {
    const config = r.message as Json;
    const { virtual_hosts: vhs, ...top } = config;
    const head = {};
    unitKeys.set(head, grpcClusterReferences(top).map(clusterKey));
    units.push(head);
    for (const vh of Array.isArray(vhs) ? vhs : []) {
      if (!isObject(vh)) continue;
      const { routes, ...rest } = vh;
      const own = {};
      unitKeys.set(own, grpcClusterReferences(rest).map(clusterKey));
      units.push(own);
      const list: unknown[] = Array.isArray(routes) ? routes : [];
      const kept = segments(list);
      if (kept) {
        // A list of kept lists (one per group of models): one unit per kept list.
        for (const segment of kept) units.push(segment);
        continue;
      }
      for (const route of list) {
        if (!isObject(route)) continue;
        if (!unitKeys.has(route)) unitKeys.set(route, oneRouteReferences(route).map(clusterKey));
        units.push(route);
      }
    }
  } else {
    const unit = {};
    const keys: string[] = [];
    if (r.typeUrl === TypeUrl.Listener) {
      for (const n of routeReferences(r.message)) keys.push(routesKey(n));
      for (const n of grpcClusterReferences(r.message)) keys.push(clusterKey(n));
    } else if (r.typeUrl === TypeUrl.Cluster) {
      const refs = clusterReferences(r);
      for (const n of refs.members) keys.push(clusterKey(n));
      if (refs.service !== undefined) keys.push(endpointsKey(refs.service));
    }
    unitKeys.set(unit, keys);
    units.push(unit);
  }
  unitsMemo.set(r.message, units);
  return units;
}

/**
 * The keys a kept list's routes refer to, once per list, each once (a model's routes name its clusters many
 * times over); a list made of kept lists (a group of models) joins theirs as they are, since a change is
 * counted by the kept lists it adds and removes (unitChanges), so a group's counts must be their sum.
 */
function segmentKeys(segment: readonly object[]): readonly string[] {
  let keys = unitKeys.get(segment);
  if (!keys) {
    const inner = segments(segment);
    if (inner) keys = inner.flatMap(segmentKeys);
    else {
      const named = new Set<string>();
      // What oneRouteReferences reads, without a record per route: a model's routes share their action and
      // per-filter objects (routes.ts), so one that is the previous route's adds nothing new.
      let lastAction: unknown;
      let lastPerFilter: unknown;
      for (const route of segment) {
        if (!isObject(route)) continue;
        if (route.route !== lastAction) {
          lastAction = route.route;
          if (isObject(route.route)) actionReferences(route.route, named);
        }
        if (route.typed_per_filter_config !== lastPerFilter) {
          lastPerFilter = route.typed_per_filter_config;
          if (isObject(lastPerFilter)) for (const n of grpcClusterReferences(lastPerFilter)) named.add(n);
        }
      }
      keys = [...named].map(clusterKey);
    }
    unitKeys.set(segment, keys);
  }
  return keys;
}

function fullSet(resources: readonly ResourceInput[], options: ConsistencyOptions, statics: string): TrackedSet {
  const state: TrackedSet = { inputs: resources, statics, have: new Set((options.staticClusters ?? []).map(clusterKey)), wanted: new Map() };
  for (const r of resources) {
    const key = ownKey(r);
    if (key !== undefined) state.have.add(key);
  }
  for (const r of resources) for (const unit of unitsOf(r)) count(state, unit, 1, undefined);
  return state;
}

/** A unit's keys: a kept list's made when first needed (a group's are needed only by a full count). */
const keysOf = (unit: object): readonly string[] => unitKeys.get(unit) ?? segmentKeys(unit as readonly object[]);

/** The units that differ between two lists of units, a kept list of kept lists (a group) compared by its kept lists. */
function unitChanges(before: readonly object[], after: readonly object[]): ListChanges<object> {
  const outer = listChanges(before, after, Infinity) as ListChanges<object>;
  const inner = (u: object): readonly object[] => (Array.isArray(u) && segments(u)) || [u];
  return listChanges(outer.removed.flatMap(inner), outer.added.flatMap(inner), Infinity) as ListChanges<object>;
}

function count(state: TrackedSet, unit: object, by: 1 | -1, touched: Set<string> | undefined): void {
  for (const key of keysOf(unit)) {
    const n = (state.wanted.get(key) ?? 0) + by;
    if (n <= 0) state.wanted.delete(key);
    else state.wanted.set(key, n);
    touched?.add(key);
  }
}

function hasDangling(state: TrackedSet): boolean {
  for (const key of state.wanted.keys()) if (!state.have.has(key)) return true;
  return false;
}

/** Applies the changed resources; false when a reference now dangles. */
function applyChanges(state: TrackedSet, changes: ListChanges<ResourceInput>): boolean {
  const touched = new Set<string>();
  const replaced = new Map<string, ResourceInput>();
  for (const r of changes.removed) {
    const key = ownKey(r);
    if (key !== undefined) {
      state.have.delete(key);
      touched.add(key);
    }
    replaced.set(`${r.typeUrl}\u0000${r.name}`, r);
  }
  for (const r of changes.added) {
    const key = ownKey(r);
    if (key !== undefined) state.have.add(key);
  }
  for (const r of changes.added) {
    const old = replaced.get(`${r.typeUrl}\u0000${r.name}`);
    const units = unitsOf(r);
    if (old && r.typeUrl === TypeUrl.RouteConfiguration) {
      // The same resource rebuilt: only its parts that are not the same objects change the counts.
      replaced.delete(`${r.typeUrl}\u0000${r.name}`);
      const parts = unitChanges(unitsOf(old), units);
      for (const u of parts.removed) count(state, u, -1, touched);
      for (const u of parts.added) count(state, u, 1, touched);
      continue;
    }
    for (const u of units) count(state, u, 1, touched);
  }
  for (const old of replaced.values()) for (const u of unitsOf(old)) count(state, u, -1, touched);
  for (const key of touched) if (state.wanted.has(key) && !state.have.has(key)) return false;
  return true;
}
