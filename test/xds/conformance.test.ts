import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { bootstrapMode } from '../../src/bootstrap/bootstrap.js';
import { TypeUrl } from '../../src/resources/types.js';
import type { NodeStatus } from '../../src/admin/nodes.js';
import { setVersion, Snapshot, type ResourceInput } from '../../src/xds/snapshot.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { steadyLoad, upstreamOf } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { startXdsServer, type TestXdsServer } from '../harness/xds-server.js';
import { edsCluster, endpoints, httpListener, routeTo, XDS_MODES } from './resources.js';

/**
 * xDS conformance against real Envoy, in the style of go-control-plane's integration test: N listeners each
 * routing to one of N local upstreams; then the snapshot changes (routes re-pointed, clusters added and
 * removed, endpoints changed, a listener added and later removed) and Envoy must converge, in traffic and
 * in its /config_dump. Runs in all four xDS modes.
 */

const MODES = XDS_MODES;

const N = 4;

interface DumpedResource {
  version_info?: string;
  cluster?: { name: string };
  route_config?: { name: string };
  active_state?: { version_info?: string; listener?: { name: string } };
  name?: string;
}

describe.each(MODES)('xDS conformance with real Envoy: $name', ({ ads, delta }) => {
  const mode = bootstrapMode({ ads, delta });
  let cp: TestXdsServer;
  let envoy: EnvoyProcess;
  let ups: EchoUpstream[] = [];
  let ports: number[] = [];
  const url = (i: number): string => `http://127.0.0.1:${ports[i]}/probe`;

  /** Listener i routes through route config r{route[i]} to cluster c{cluster}; endpoints by cluster. */
  function snapshot(plan: { listeners: number[]; routes: Record<number, number>; clusters: Record<number, number[]> }): Snapshot {
    const inputs: ResourceInput[] = [];
    for (const i of plan.listeners) {
      const port = ports[i] ?? 0;
      inputs.push(httpListener(`l${i}`, port, `r${i}`, mode), routeTo(`r${i}`, `c${plan.routes[i]}`));
    }
    for (const [c, upstreamIndexes] of Object.entries(plan.clusters)) {
      inputs.push(edsCluster(`c${c}`, mode), endpoints(`c${c}`, upstreamIndexes.map((u) => ups[u]?.port ?? 0)));
    }
    return Snapshot.from(inputs);
  }

  const v1 = () => snapshot({ listeners: [0, 1, 2, 3], routes: { 0: 0, 1: 1, 2: 2, 3: 3 }, clusters: { 0: [0], 1: [1], 2: [2], 3: [3] } });
  // c0 removed, c4 added, c1's endpoint moved to u0, routes re-pointed, listener l4 added.
  const v2 = () =>
    snapshot({ listeners: [0, 1, 2, 3, 4], routes: { 0: 2, 1: 1, 2: 4, 3: 3, 4: 1 }, clusters: { 1: [0], 2: [2], 3: [3], 4: [4] } });
  // l4 removed again, c4 removed with l2 moved back to c2.
  const v3 = () => snapshot({ listeners: [0, 1, 2, 3], routes: { 0: 2, 1: 1, 2: 2, 3: 3 }, clusters: { 1: [0], 2: [2], 3: [3] } });

  async function answers(listeners: number[]): Promise<Record<string, string | undefined>> {
    const out: Record<string, string | undefined> = {};
    for (const i of listeners) out[`l${i}`] = await upstreamOf(url(i));
    return out;
  }

  async function converge(expected: Record<string, string | undefined>): Promise<void> {
    const listeners = Object.keys(expected).map((k) => Number(k.slice(1)));
    await waitFor('Envoy to route as the snapshot says', async () => {
      const got = await answers(listeners);
      return JSON.stringify(got) === JSON.stringify(expected) ? true : undefined;
    }, { timeoutMs: 20_000, describe: () => envoy.process.tail(20) });
  }

  async function dumpedClusters(): Promise<DumpedResource[]> {
    const dump = await envoy.configDump('dynamic_active_clusters');
    return dump.configs;
  }

  /**
   * Envoy's reported versions must be Flowgate's content hashes. Delta: each resource's version. State of
   * the world: the CDS and LDS versions Envoy holds; and for RDS and EDS (which Envoy may split over several
   * named subscriptions) every stream has acknowledged exactly the set it subscribes to.
   */
  async function expectVersionsMatch(snap: Snapshot): Promise<void> {
    const clusters = await dumpedClusters();
    if (delta) {
      const routes = (await envoy.configDump('dynamic_route_configs')).configs as DumpedResource[];
      expect(clusters.length).toBeGreaterThan(0);
      expect(routes.length).toBeGreaterThan(0);
      for (const c of clusters) expect(c.version_info).toBe(snap.get(TypeUrl.Cluster, c.cluster?.name ?? '')?.version);
      for (const r of routes) expect(r.version_info).toBe(snap.get(TypeUrl.RouteConfiguration, r.route_config?.name ?? '')?.version);
      return;
    }
    const dump = await envoy.configDump();
    const top = (type: string) => (dump.configs.find((c) => c['@type'] === `type.googleapis.com/envoy.admin.v3.${type}`) ?? {}) as { version_info?: string };
    expect(top('ClustersConfigDump').version_info).toBe(snap.typeVersion(TypeUrl.Cluster));
    expect(top('ListenersConfigDump').version_info).toBe(snap.typeVersion(TypeUrl.Listener));
    const nodes = (await (await fetch(`${cp.adminUrl}/debug/nodes`)).json()) as NodeStatus[];
    for (const node of nodes) {
      for (const t of node.types) {
        if (t.type !== 'rds' && t.type !== 'eds') continue;
        const held = t.names.map((n) => snap.get(t.typeUrl as TypeUrl, n)).filter((r) => r !== undefined);
        expect(t.pending, `${node.node} ${t.type}`).toBeNull();
        expect(t.lastAck?.version, `${node.node} ${t.type} ${t.names.join(',')}`).toBe(setVersion(held));
      }
    }
  }

  beforeAll(async () => {
    ups = await Promise.all(Array.from({ length: N + 1 }, (_, i) => startEchoUpstream(`u${i}`)));
    ports = await freePorts(N + 1);
    cp = await startXdsServer();
    cp.cache.setSnapshot('*', v1());
    envoy = await startEnvoy({ nodeId: `conformance-${mode}-${delta ? 'delta' : 'sotw'}`, nodeCluster: 'conformance', xdsHost: '127.0.0.1', xdsPort: cp.port, ads, delta });
  });

  afterAll(async () => {
    await envoy?.stop();
    await cp?.stop();
    await Promise.all(ups.map((u) => u.close()));
  });

  test('every listener routes to its own upstream, with Flowgate versions in config_dump', async () => {
    await converge({ l0: 'u0', l1: 'u1', l2: 'u2', l3: 'u3' });
    const names = (await dumpedClusters()).map((c) => c.cluster?.name).sort();
    expect(names).toEqual(['c0', 'c1', 'c2', 'c3']);
    await expectVersionsMatch(v1());
  });

  test('a snapshot change converges: routes re-pointed, cluster added and removed, endpoints moved, listener added', async () => {
    const load = steadyLoad([0, 1, 2, 3].map(url), { concurrency: 2 });
    await new Promise((r) => setTimeout(r, 300));
    const next = v2();
    cp.cache.setSnapshot('*', next);
    await converge({ l0: 'u2', l1: 'u0', l2: 'u4', l3: 'u3', l4: 'u0' });
    await waitFor('the removed cluster c0 to leave Envoy', async () => {
      const names = (await dumpedClusters()).map((c) => c.cluster?.name).sort();
      return JSON.stringify(names) === JSON.stringify(['c1', 'c2', 'c3', 'c4']) ? true : undefined;
    });
    await new Promise((r) => setTimeout(r, 300));
    const result = await load.stop();
    expect(result.sent).toBeGreaterThan(20);
    if (ads) {
      // Make before break: clusters and endpoints first, routes next, removals last; no request is lost.
      expect(result.failures).toEqual([]);
    }
    const listeners = (await envoy.configDump('dynamic_listeners')).configs as DumpedResource[];
    expect(listeners.map((l) => l.name).sort()).toEqual(['l0', 'l1', 'l2', 'l3', 'l4']);
    await expectVersionsMatch(next);
  });

  test('removing a listener and a cluster converges', async () => {
    const next = v3();
    cp.cache.setSnapshot('*', next);
    await converge({ l0: 'u2', l1: 'u0', l2: 'u2', l3: 'u3' });
    await waitFor('l4 and c4 to be removed', async () => {
      const listeners = ((await envoy.configDump('dynamic_listeners')).configs as DumpedResource[]).map((l) => l.name).sort();
      const clusters = (await dumpedClusters()).map((c) => c.cluster?.name).sort();
      return JSON.stringify(listeners) === JSON.stringify(['l0', 'l1', 'l2', 'l3']) && JSON.stringify(clusters) === JSON.stringify(['c1', 'c2', 'c3'])
        ? true
        : undefined;
    });
    expect(await upstreamOf(url(4))).toBeUndefined();
    await expectVersionsMatch(next);
  });
});
