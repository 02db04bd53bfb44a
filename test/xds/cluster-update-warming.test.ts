import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TypeUrl } from '../../src/resources/types.js';
import { Snapshot, type ResourceInput } from '../../src/xds/snapshot.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { startXdsServer, type TestXdsServer } from '../harness/xds-server.js';
import { endpoints, httpListener, routeTo } from './resources.js';

/**
 * Envoy (real, ADS, state of the world and delta) replaces a modified cluster by a warming copy that waits for a
 * ClusterLoadAssignment response naming it, even when its endpoints did not change. The clusters here wait
 * up to 600 s for it (initial_fetch_timeout), so the waits below pass only if the control plane re-sends the
 * modified clusters' endpoints with the cluster push (`rewarming` in src/xds/stream/sotw.ts and delta.ts):
 * alone, or beside another cluster's changed endpoints in a response that carries only what changed.
 */

describe.each([
  { name: 'state of the world', delta: false },
  { name: 'delta', delta: true },
])('ADS, $name', ({ name, delta }) => {
  let cp: TestXdsServer;
  let envoy: EnvoyProcess;
  let ups: EchoUpstream[] = [];
  let ports: number[] = [];

  const cluster = (name: string, connectMs: number): ResourceInput => ({
    typeUrl: TypeUrl.Cluster,
    name,
    message: { name, type: 'EDS', connect_timeout: { seconds: Math.floor(connectMs / 1000), nanos: (connectMs % 1000) * 1e6 }, eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3', initial_fetch_timeout: { seconds: 600 } } } },
  });
  const snap = (c1Ms: number, c2Port: number): Snapshot =>
    Snapshot.from([
      httpListener('l0', ports[0] ?? 0, 'r0', 'ads'),
      routeTo('r0', 'c1'),
      httpListener('l1', ports[1] ?? 0, 'r1', 'ads'),
      routeTo('r1', 'c2'),
      cluster('c1', c1Ms),
      endpoints('c1', [ups[0]?.port ?? 0]),
      cluster('c2', 1000),
      endpoints('c2', [c2Port]),
    ]);

  beforeAll(async () => {
    ups = await Promise.all([0, 1, 2].map((i) => startEchoUpstream(`u${i}`)));
    ports = await freePorts(2);
    cp = await startXdsServer();
    cp.cache.setSnapshot('*', snap(1000, ups[1]?.port ?? 0));
    envoy = await startEnvoy({ nodeId: `warming-${name}`, nodeCluster: 'warming', xdsHost: '127.0.0.1', xdsPort: cp.port, ads: true, delta });
    await waitFor('both listeners', async () => ((await fetch(`http://127.0.0.1:${ports[1]}/`).catch(() => undefined))?.status === 200 ? true : undefined), { timeoutMs: 20_000 });
  });
  afterAll(async () => {
    await envoy?.stop();
    await cp?.stop();
    await Promise.all(ups.map((u) => u.close()));
  });

  const activeConnectTimeout = async (): Promise<string | undefined> => {
    const configs = (await envoy.configDump('dynamic_active_clusters')).configs as { cluster?: { name: string; connect_timeout?: string } }[];
    return configs.find((c) => c.cluster?.name === 'c1')?.cluster?.connect_timeout;
  };

  test('a modified cluster finishes warming at once when the same change moves another cluster\'s endpoints', async () => {
    const t0 = Date.now();
    cp.cache.setSnapshot('*', snap(2000, ups[2]?.port ?? 0));
    await waitFor('c1 updated', async () => ((await activeConnectTimeout()) === '2s' ? true : undefined), { timeoutMs: 30_000, intervalMs: 50 });
    console.log(`modified cluster active after ${Date.now() - t0} ms`);
  });

  test('a modified cluster whose endpoints did not change finishes warming at once', async () => {
    const t0 = Date.now();
    cp.cache.setSnapshot('*', snap(3000, ups[2]?.port ?? 0));
    await waitFor('c1 updated', async () => ((await activeConnectTimeout()) === '3s' ? true : undefined), { timeoutMs: 30_000, intervalMs: 50 });
    console.log(`modified cluster (endpoints unchanged) active after ${Date.now() - t0} ms`);
    // The other listener still answers from the moved endpoint: nothing was lost on the way.
    expect((await fetch(`http://127.0.0.1:${ports[1]}/`)).headers.get('x-upstream')).toBe('u2');
  });
});
