import * as grpc from '@grpc/grpc-js';
import { badRoute } from '../xds/resources.js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { decodeMessage } from '../../src/proto/codec.js';
import { registerCsds } from '../../src/status/service.js';
import { TypeUrl } from '../../src/resources/types.js';
import { Snapshot, type ResourceInput } from '../../src/xds/snapshot.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { upstreamOf } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { startXdsServer, type TestXdsServer } from '../harness/xds-server.js';
import { edsCluster, endpoints, httpListener, routeTo } from '../xds/resources.js';
import { CsdsClient, type ClientConfigOut, type GenericXdsConfigOut } from './csds-client.js';

/**
 * CSDS against two real Envoys (ADS state of the world and ADS delta, each in its own node group): every
 * connected Envoy is listed with the versions it acknowledged and the resources themselves; node matchers
 * select by node id; a route configuration Envoy rejects shows as ERROR/NACKED with Envoy's own detail.
 */


const find = (c: ClientConfigOut | undefined, type: string, name: string): GenericXdsConfigOut | undefined =>
  c?.generic_xds_configs.find((g) => g.type_url === type && g.name === name);

describe('CSDS with real Envoys', () => {
  let cp: TestXdsServer;
  let csdsServer: grpc.Server;
  let client: CsdsClient;
  let u0: EchoUpstream;
  const envoys: EnvoyProcess[] = [];
  const snaps = new Map<string, Snapshot>();
  const ports = new Map<string, number>();
  const nodes = [
    { id: 'csds-sotw', delta: false },
    { id: 'csds-delta', delta: true },
  ];
  const good = (group: string, route?: ResourceInput) =>
    Snapshot.from([httpListener('l0', ports.get(group) ?? 0, 'r0', 'ads'), route ?? routeTo('r0', 'c0'), edsCluster('c0', 'ads'), endpoints('c0', [u0.port])]);

  beforeAll(async () => {
    u0 = await startEchoUpstream('u0');
    const [p0, p1] = await freePorts(2);
    ports.set('csds-sotw', p0 ?? 0);
    ports.set('csds-delta', p1 ?? 0);
    cp = await startXdsServer();
    for (const n of nodes) {
      const snap = good(n.id);
      snaps.set(n.id, snap);
      cp.cache.setSnapshot(n.id, snap);
    }
    csdsServer = new grpc.Server();
    registerCsds(csdsServer, cp.xds);
    const port = await new Promise<number>((resolve, reject) =>
      csdsServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    client = new CsdsClient(`127.0.0.1:${port}`);
    for (const n of nodes) {
      envoys.push(await startEnvoy({ nodeId: n.id, nodeCluster: n.id, xdsHost: '127.0.0.1', xdsPort: cp.port, ads: true, delta: n.delta }));
      await waitFor(`${n.id} to route`, async () => ((await upstreamOf(`http://127.0.0.1:${ports.get(n.id)}/`)) === 'u0' ? true : undefined));
    }
  });

  afterAll(async () => {
    client?.close();
    for (const e of envoys) await e.stop();
    await cp?.stop();
    await new Promise<void>((resolve) => (csdsServer ? csdsServer.tryShutdown(() => resolve()) : resolve()));
    await u0?.close();
  });

  test('FetchClientStatus lists every connected Envoy with the versions it acknowledged', async () => {
    const res = await waitFor('both Envoys fully synced', async () => {
      const r = await client.fetch();
      const all = r.config.flatMap((c) => c.generic_xds_configs);
      return r.config.length === 2 && all.length === 8 && all.every((g) => g.config_status === 'SYNCED') ? r : undefined;
    });
    expect(res.config.map((c) => [c.node?.id, c.node?.cluster, c.node?.user_agent_name])).toEqual([
      ['csds-delta', 'csds-delta', 'envoy'],
      ['csds-sotw', 'csds-sotw', 'envoy'],
    ]);
    const [delta, sotw] = res.config;
    for (const c of res.config) {
      expect(c.generic_xds_configs.map((g) => `${g.type_url.split('.').pop()}/${g.name} ${g.client_status}`).sort()).toEqual([
        'Cluster/c0 ACKED',
        'ClusterLoadAssignment/c0 ACKED',
        'Listener/l0 ACKED',
        'RouteConfiguration/r0 ACKED',
      ]);
    }
    // State of the world: version_info is the version of the set the Envoy acknowledged, as Envoy reports it.
    const s = snaps.get('csds-sotw');
    expect(find(sotw, TypeUrl.Listener, 'l0')?.version_info).toBe(s?.typeVersion(TypeUrl.Listener));
    expect(find(sotw, TypeUrl.Cluster, 'c0')?.version_info).toBe(s?.typeVersion(TypeUrl.Cluster));
    const sotwDump = (await envoys[0]?.configDump())?.configs.find((c) => String(c['@type']).endsWith('ListenersConfigDump')) as { version_info?: string };
    expect(find(sotw, TypeUrl.Listener, 'l0')?.version_info).toBe(sotwDump.version_info);
    // Delta: the resource's own version.
    const d = snaps.get('csds-delta');
    expect(find(delta, TypeUrl.Listener, 'l0')?.version_info).toBe(d?.get(TypeUrl.Listener, 'l0')?.version);
    expect(find(delta, TypeUrl.RouteConfiguration, 'r0')?.version_info).toBe(d?.get(TypeUrl.RouteConfiguration, 'r0')?.version);
    // The resource itself comes along.
    const listener = find(delta, TypeUrl.Listener, 'l0')?.xds_config;
    expect(listener?.type_url).toBe(TypeUrl.Listener);
    expect(decodeMessage<{ name: string; address: { socket_address: { port_value: number } } }>(TypeUrl.Listener, listener?.value ?? Buffer.alloc(0))).toMatchObject({
      name: 'l0',
      address: { socket_address: { port_value: ports.get('csds-delta') } },
    });
  });

  test('node matchers select by node id; exclude_resource_contents leaves the resources out', async () => {
    const ids = async (req: object) => (await client.fetch(req)).config.map((c) => c.node?.id);
    expect(await ids({ node_matchers: [{ node_id: { prefix: 'csds-d' } }] })).toEqual(['csds-delta']);
    expect(await ids({ node_matchers: [{ node_id: { exact: 'csds-sotw' } }] })).toEqual(['csds-sotw']);
    expect(await ids({ node_matchers: [{ node_id: { exact: 'CSDS-SOTW', ignore_case: true } }, { node_id: { suffix: 'delta' } }] })).toEqual(['csds-delta', 'csds-sotw']);
    expect(await ids({ node_matchers: [{ node_id: { exact: 'nobody' } }] })).toEqual([]);
    await expect(client.fetch({ node_matchers: [{ node_id: { safe_regex: { regex: 'csds-.*' } } }] })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    const bare = await client.fetch({ exclude_resource_contents: true });
    expect(bare.config.flatMap((c) => c.generic_xds_configs).every((g) => g.xds_config === null)).toBe(true);
  });

  test('StreamClientStatus answers each request', async () => {
    const [all, one] = await client.stream([{}, { node_matchers: [{ node_id: { exact: 'csds-delta' } }] }]);
    expect(all?.config.map((c) => c.node?.id)).toEqual(['csds-delta', 'csds-sotw']);
    expect(one?.config.map((c) => c.node?.id)).toEqual(['csds-delta']);
  });

  test.each(nodes)('a route configuration $id rejects shows as ERROR/NACKED with Envoy\'s detail', async ({ id }) => {
    const before = snaps.get(id);
    cp.cache.setSnapshot(id, good(id, badRoute('r0', 'c0')));
    const route = await waitFor(`the RDS NACK of ${id}`, async () => {
      const r = await client.fetch({ node_matchers: [{ node_id: { exact: id } }] });
      const g = find(r.config[0], TypeUrl.RouteConfiguration, 'r0');
      return g?.config_status === 'ERROR' ? { g, all: r.config[0]?.generic_xds_configs ?? [] } : undefined;
    });
    expect(route.g.client_status).toBe('NACKED');
    expect(route.g.error_state?.details).toMatch(/regex|missing \)|broken/i);
    expect(route.g.error_state?.failed_configuration?.type_url).toBe(TypeUrl.RouteConfiguration);
    // It still holds the last good route configuration (state of the world: shown; delta streams keep only
    // the versions they hold, so the contents go once the snapshot has moved on), and the rest stays in sync.
    if (id === 'csds-sotw') {
      const held = decodeMessage<{ virtual_hosts: { routes: { match: { prefix?: string } }[] }[] }>(TypeUrl.RouteConfiguration, route.g.xds_config?.value ?? Buffer.alloc(0));
      expect(held.virtual_hosts[0]?.routes[0]?.match.prefix).toBe('/');
    } else {
      expect(route.g.xds_config).toBeNull();
    }
    const expectedVersion = id === 'csds-sotw' ? before?.typeVersion(TypeUrl.RouteConfiguration) : before?.get(TypeUrl.RouteConfiguration, 'r0')?.version;
    expect(route.g.version_info).toBe(expectedVersion);
    expect(route.all.filter((g) => g.name !== 'r0' || g.type_url !== TypeUrl.RouteConfiguration).map((g) => g.config_status)).toEqual(['SYNCED', 'SYNCED', 'SYNCED']);
    // The other Envoy is unaffected.
    const other = nodes.find((n) => n.id !== id)?.id ?? '';
    const otherRoute = find((await client.fetch({ node_matchers: [{ node_id: { exact: other } }] })).config[0], TypeUrl.RouteConfiguration, 'r0');
    expect(otherRoute?.config_status).toBe('SYNCED');

    // A corrected snapshot brings it back to SYNCED/ACKED.
    const fixed = good(id, routeTo('r0', 'c0', { name: 'fixed' }));
    cp.cache.setSnapshot(id, fixed);
    const synced = await waitFor(`${id} to acknowledge the corrected routes`, async () => {
      const g = find((await client.fetch({ node_matchers: [{ node_id: { exact: id } }] })).config[0], TypeUrl.RouteConfiguration, 'r0');
      return g?.config_status === 'SYNCED' ? g : undefined;
    });
    expect(synced.client_status).toBe('ACKED');
    expect(synced.error_state).toBeNull();
  });
});
