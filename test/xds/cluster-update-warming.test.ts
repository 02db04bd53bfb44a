import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TypeUrl } from '../../src/resources/types.js';
import { Snapshot, type ResourceInput } from '../../src/xds/snapshot.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { startXdsServer, type TestXdsServer } from '../harness/xds-server.js';
import { bootstrapMode } from '../../src/bootstrap/bootstrap.js';
import { configSource } from '../../src/resources/config-source.js';
import { endpoints, httpListener, routeTo, XDS_MODES } from './resources.js';

/**
 * Envoy (real; ADS or per-type streams, state of the world and delta) replaces a modified cluster by a warming copy that waits for a
 * ClusterLoadAssignment response naming it, even when its endpoints did not change. The clusters here wait
 * up to 600 s for it (initial_fetch_timeout), so the waits below pass only if the control plane re-sends the
 * modified clusters' endpoints with the cluster push (`rewarming` in src/xds/stream/sotw.ts and delta.ts):
 * alone, or beside another cluster's changed endpoints in a response that carries only what changed. On
 * per-type streams (no ADS) Envoy 1.40 gives each EDS cluster its own EDS stream, and the warming copy opens a
 * new one whose first request the server answers: the same waits pass with nothing re-sent across streams
 * (the new stream is asserted below, so an Envoy that starts sharing EDS streams is noticed here).
 */

describe.each(XDS_MODES)('$name', ({ name, ads, delta }) => {
  const mode = bootstrapMode({ ads, delta });
  let cp: TestXdsServer;
  let envoy: EnvoyProcess;
  let ups: EchoUpstream[] = [];
  let ports: number[] = [];

  const cluster = (name: string, connectMs: number): ResourceInput => ({
    typeUrl: TypeUrl.Cluster,
    name,
    message: { name, type: 'EDS', connect_timeout: { seconds: Math.floor(connectMs / 1000), nanos: (connectMs % 1000) * 1e6 }, eds_cluster_config: { eds_config: { ...configSource(mode), initial_fetch_timeout: { seconds: 600 } } } },
  });
  const snap = (c1Ms: number, c2Port: number): Snapshot =>
    Snapshot.from([
      httpListener('l0', ports[0] ?? 0, 'r0', mode),
      routeTo('r0', 'c1'),
      httpListener('l1', ports[1] ?? 0, 'r1', mode),
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
    envoy = await startEnvoy({ nodeId: `warming-${name}`, nodeCluster: 'warming', xdsHost: '127.0.0.1', xdsPort: cp.port, ads, delta });
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

  /** Ids of the open per-type EDS streams subscribed to c1 (none on ADS). */
  const c1EdsStreams = (): number[] =>
    cp.xds
      .streamStatuses()
      .filter((s) => s.service === 'eds' && s.types.some((t) => t.names.includes('c1')))
      .map((s) => s.id);
  /** Per-type: the warming copy of c1 subscribed on an EDS stream that was not open before the change. */
  const expectNewEdsStream = (before: number[]): void => {
    if (!ads) expect(c1EdsStreams().filter((id) => !before.includes(id))).toHaveLength(1);
  };

  test('a modified cluster finishes warming at once when the same change moves another cluster\'s endpoints', async () => {
    const before = c1EdsStreams();
    const t0 = Date.now();
    cp.cache.setSnapshot('*', snap(2000, ups[2]?.port ?? 0));
    await waitFor('c1 updated', async () => ((await activeConnectTimeout()) === '2s' ? true : undefined), { timeoutMs: 30_000, intervalMs: 50 });
    console.log(`modified cluster active after ${Date.now() - t0} ms`);
    expectNewEdsStream(before);
  });

  test('a modified cluster whose endpoints did not change finishes warming at once', async () => {
    const before = c1EdsStreams();
    const t0 = Date.now();
    cp.cache.setSnapshot('*', snap(3000, ups[2]?.port ?? 0));
    await waitFor('c1 updated', async () => ((await activeConnectTimeout()) === '3s' ? true : undefined), { timeoutMs: 30_000, intervalMs: 50 });
    console.log(`modified cluster (endpoints unchanged) active after ${Date.now() - t0} ms`);
    expectNewEdsStream(before);
    // The other listener still answers from the moved endpoint: nothing was lost on the way.
    expect((await fetch(`http://127.0.0.1:${ports[1]}/`)).headers.get('x-upstream')).toBe('u2');
  });
});
