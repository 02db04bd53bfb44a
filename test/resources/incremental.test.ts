import { describe, expect, test } from 'vitest';
import type { InconsistentSnapshotError } from '../../src/resources/consistency.js';
import { ConsistencyTracker, danglingReferences } from '../../src/resources/consistency.js';
import { TypeUrl, type ResourceInput } from '../../src/resources/types.js';
import { changeLimit, listChanges } from '../../src/resources/window.js';

/**
 * The incremental consistency check and the list comparison it (and Snapshot.from, and the controller) rely
 * on: after any sequence of changes, the tracker must refuse exactly the sets the full check refuses.
 */

const cluster = (name: string, eds = false): ResourceInput => ({
  typeUrl: TypeUrl.Cluster,
  name,
  message: { name, ...(eds ? { type: 'EDS', eds_cluster_config: { service_name: name } } : { type: 'STRICT_DNS' }) },
});
const endpoints = (name: string): ResourceInput => ({ typeUrl: TypeUrl.ClusterLoadAssignment, name, message: { cluster_name: name } });
const listener = (name: string, routes: string): ResourceInput => ({ typeUrl: TypeUrl.Listener, name, message: { name, api_listener: { api_listener: { '@type': 'x', rds: { route_config_name: routes } } } } });
const route = (name: string, clusters: string[]): object => ({
  name,
  match: { prefix: `/${name}` },
  route: clusters.length === 1 ? { cluster: clusters[0] } : { weighted_clusters: { clusters: clusters.map((c) => ({ name: c, weight: { value: 1 } })) } },
});
const routeConfig = (name: string, routes: object[]): ResourceInput => ({ typeUrl: TypeUrl.RouteConfiguration, name, message: { name, virtual_hosts: [{ name: 'any', domains: ['*'], routes }] } });

describe('listChanges', () => {
  test('finds a lone replacement, an insertion and a removal by pointer comparison', () => {
    const [a, b, c, d, e, x] = ['a', 'b', 'c', 'd', 'e', 'x'].map((n) => ({ n }));
    const list = [a, b, c, d, e] as object[];
    expect(listChanges(list, [a, x, c, d, e], 10)).toEqual({ removed: [b], added: [x] });
    expect(listChanges(list, [a, b, x, c, d, e], 10)).toEqual({ removed: [], added: [x] });
    expect(listChanges(list, [a, b, d, e], 10)).toEqual({ removed: [c], added: [] });
    // Replacements at both ends (a resource rebuilt on every change) and one in the middle.
    expect(listChanges(list, [x, b, x, d, x], 10)).toEqual({ removed: [a, c, e], added: [x, x, x] });
    expect(listChanges([a, b, c, d, e, x], [a, x, x, d, e, b], 10)).toEqual({ removed: [b, c, x], added: [x, x, b] });
    expect(listChanges(list, list, 10)).toEqual({ removed: [], added: [] });
    expect(listChanges(list, [e, d, c, b, a], 2)).toBeUndefined();
    expect(changeLimit(10)).toBe(64);
  });
});

describe('ConsistencyTracker', () => {
  test('refuses exactly what the full check refuses, over a sequence of changes', () => {
    const tracker = new ConsistencyTracker();
    const options = { staticClusters: ['xds'] };
    const routes = Array.from({ length: 200 }, (_, i) => route(`r${i}`, [`c${i}`]));
    const clusters = Array.from({ length: 200 }, (_, i) => cluster(`c${i}`, i % 2 === 0));
    const eds = clusters.filter((_, i) => i % 2 === 0).map((c) => endpoints(c.name));
    const base = [...clusters, ...eds, listener('l', 'rc'), routeConfig('rc', routes)];
    const steps: ResourceInput[][] = [
      base,
      // A route now names a cluster that does not exist.
      [...clusters, ...eds, listener('l', 'rc'), routeConfig('rc', routes.map((r, i) => (i === 50 ? route('r50', ['c50', 'nope']) : r)))],
      base,
      // An EDS cluster loses its endpoints.
      [...clusters, ...eds.filter((e) => e.name !== 'c10'), listener('l', 'rc'), routeConfig('rc', routes)],
      // A cluster a route names is removed (the route configuration is the same object).
      [...clusters.filter((c) => c.name !== 'c7'), ...eds, base[base.length - 2] as ResourceInput, base[base.length - 1] as ResourceInput],
      // ... and its route with it.
      [...clusters.filter((c) => c.name !== 'c7'), ...eds, listener('l', 'rc'), routeConfig('rc', routes.filter((_, i) => i !== 7))],
      // The listener names a route configuration that is not there.
      [...clusters.filter((c) => c.name !== 'c7'), ...eds, listener('l', 'other'), routeConfig('rc', routes.filter((_, i) => i !== 7))],
      // A cluster replaced by one of another name, the route following it; a static cluster named.
      [...clusters.map((c) => (c.name === 'c3' ? cluster('c3b') : c)), ...eds, listener('l', 'rc'), routeConfig('rc', [...routes.map((r, i) => (i === 3 ? route('r3', ['c3b']) : r)), route('xds', ['xds'])])],
      base,
    ];
    const verdicts = steps.map((set) => {
      const full = danglingReferences(set, options);
      let refused: InconsistentSnapshotError | undefined;
      try {
        tracker.check(set, options);
      } catch (err) {
        refused = err as InconsistentSnapshotError;
      }
      expect(refused?.dangling ?? []).toEqual(full);
      return full.length > 0;
    });
    expect(verdicts).toEqual([false, true, false, true, true, false, true, false, false]);
  });
});
