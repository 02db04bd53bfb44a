import { describe, expect, test } from 'vitest';
import { ConsistencyTracker, danglingReferences, InconsistentSnapshotError } from '../../src/resources/consistency.js';
import { joined, withSegments } from '../../src/resources/segments.js';
import { TypeUrl, type ResourceInput } from '../../src/resources/types.js';

/** Every place a route configuration names a cluster, each found missing by the full and the incremental check. */

const cluster = (name: string): ResourceInput => ({ typeUrl: TypeUrl.Cluster, name, message: { name, type: 'STATIC' } });

const routes = (route: Record<string, unknown>): ResourceInput => ({
  typeUrl: TypeUrl.RouteConfiguration,
  name: 'public',
  message: { name: 'public', virtual_hosts: [{ name: 'any', domains: ['*'], routes: [{ name: 'r', match: { prefix: '/' }, ...route }] }] },
});

const extProcOverride = (clusterName: string): Record<string, unknown> => ({
  'envoy.filters.http.ext_proc': {
    '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute',
    overrides: { grpc_service: { envoy_grpc: { cluster_name: clusterName } } },
  },
});

const CASES: { what: string; route: Record<string, unknown> }[] = [
  { what: 'a route target', route: { route: { cluster: 'gone' } } },
  { what: 'a weighted cluster', route: { route: { weighted_clusters: { clusters: [{ name: 'here', weight: 50 }, { name: 'gone', weight: 50 }] } } } },
  { what: 'a mirror', route: { route: { cluster: 'here', request_mirror_policies: [{ cluster: 'gone' }] } } },
  { what: "a filter's per-route gRPC service", route: { route: { cluster: 'here' }, typed_per_filter_config: extProcOverride('gone') } },
];

describe('the consistency check finds a missing cluster wherever a route names it', () => {
  test.each(CASES)('$what', ({ route }) => {
    const resources = [cluster('here'), routes(route)];
    expect(danglingReferences(resources)).toEqual([{ from: 'RouteConfiguration public', missing: 'Cluster gone' }]);
    expect(() => new ConsistencyTracker().check(resources)).toThrow(InconsistentSnapshotError);
    // With the cluster there, both pass.
    const whole = [cluster('here'), cluster('gone'), routes(route)];
    expect(danglingReferences(whole)).toEqual([]);
    expect(new ConsistencyTracker().check(whole)).toBe(whole);
  });

  test('the incremental check sees a per-route gRPC service that starts naming a missing cluster', () => {
    const tracker = new ConsistencyTracker();
    tracker.check([cluster('here'), routes({ route: { cluster: 'here' }, typed_per_filter_config: extProcOverride('here') })]);
    expect(() => tracker.check([cluster('here'), routes({ route: { cluster: 'here' }, typed_per_filter_config: extProcOverride('gone') })])).toThrow(/Cluster gone/);
  });

  test.each(CASES)('$what, in a model\'s kept routes that share their action and per-filter objects', ({ route }) => {
    // As routes.ts makes them: several routes of one model hold the same action and per-filter objects, the
    // odd one (the case's) after them, the model's routes one kept segment of the virtual host's list.
    const shared = { route: { cluster: 'here' }, typed_per_filter_config: extProcOverride('here') };
    const model = [0, 1, 2].map((i) => ({ name: `m:${i}`, match: { prefix: `/m${i}` }, ...shared }));
    const odd = { ...model[2], ...route, name: 'm:odd' };
    const other = [{ name: 'o:0', match: { prefix: '/o' }, route: { cluster: 'here' } }];
    const segmented = (list: readonly object[]): ResourceInput => {
      const lists = [list, other];
      return { typeUrl: TypeUrl.RouteConfiguration, name: 'public', message: { name: 'public', virtual_hosts: [{ name: 'any', domains: ['*'], routes: withSegments(joined(lists), lists) }] } };
    };
    const broken = [cluster('here'), segmented([...model, odd])];
    expect(danglingReferences(broken)).toEqual([{ from: 'RouteConfiguration public', missing: 'Cluster gone' }]);
    expect(() => new ConsistencyTracker().check(broken)).toThrow(/Cluster gone/);
    const tracker = new ConsistencyTracker();
    tracker.check([cluster('here'), segmented(model)]);
    expect(() => tracker.check(broken)).toThrow(/Cluster gone/);
  });
});
