import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { NodeStatus } from '../../src/admin/nodes.js';
import { bootstrapMode } from '../../src/bootstrap/bootstrap.js';
import { duration } from '../../src/proto/codec.js';
import { TypeUrl } from '../../src/resources/types.js';
import { Snapshot, type ResourceInput } from '../../src/xds/snapshot.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { freePort } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { steadyLoad, upstreamOf } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { startXdsServer, type TestXdsServer } from '../harness/xds-server.js';
import { badRoute, edsCluster, endpoints, httpListener, routeTo, XDS_MODES } from './resources.js';

/**
 * NACKs from real Envoy: a resource Envoy rejects is recorded with Envoy's own detail and counted, traffic
 * keeps flowing on the previous config, the rejected version is not sent again, and a corrected snapshot
 * is accepted.
 */

const MODES = XDS_MODES;

async function nodes(cp: TestXdsServer): Promise<NodeStatus[]> {
  return (await (await fetch(`${cp.adminUrl}/debug/nodes`)).json()) as NodeStatus[];
}

async function typeStatus(cp: TestXdsServer, type: string) {
  const found = (await nodes(cp)).flatMap((n) => n.types).filter((t) => t.type === type);
  return found;
}

async function metric(cp: TestXdsServer, name: string, type: string): Promise<number> {
  const text = await (await fetch(`${cp.adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{type="${type}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}


/** A cluster Envoy refuses: its health check lacks the required interval and timeout. */
function badCluster(name: string): ResourceInput {
  return {
    typeUrl: TypeUrl.Cluster,
    name,
    message: { name, type: 'STATIC', connect_timeout: duration(1000), health_checks: [{ http_health_check: { path: '/ping' } }] },
  };
}

describe.each(MODES)('NACK handling with real Envoy: $name', ({ ads, delta }) => {
  const mode = bootstrapMode({ ads, delta });
  let cp: TestXdsServer;
  let envoy: EnvoyProcess;
  let u0: EchoUpstream;
  let u1: EchoUpstream;
  let port = 0;
  const url = () => `http://127.0.0.1:${port}/probe`;

  const base = (route: ResourceInput, extra: ResourceInput[] = []) =>
    Snapshot.from([httpListener('l0', port, 'r0', mode), route, edsCluster('c0', mode), endpoints('c0', [u0.port]), ...extra]);

  beforeAll(async () => {
    [u0, u1] = await Promise.all([startEchoUpstream('u0'), startEchoUpstream('u1')]);
    port = await freePort();
    cp = await startXdsServer();
    cp.cache.setSnapshot('*', base(routeTo('r0', 'c0')));
    envoy = await startEnvoy({ nodeId: `nack-${mode}-${delta ? 'delta' : 'sotw'}`, nodeCluster: 'nack', xdsHost: '127.0.0.1', xdsPort: cp.port, ads, delta });
    await waitFor('traffic on the first config', async () => ((await upstreamOf(url())) === 'u0' ? true : undefined));
  });

  afterAll(async () => {
    await envoy?.stop();
    await cp?.stop();
    await Promise.all([u0?.close(), u1?.close()]);
  });

  test('a rejected route configuration is recorded with Envoy\'s detail, counted, not resent; traffic stays on the last good config', async () => {
    const nacksBefore = await metric(cp, 'flowgate_xds_nacks_total', 'rds');
    const load = steadyLoad([url()]);
    cp.cache.setSnapshot('*', base(badRoute('r0', 'c0')));
    const nack = await waitFor('the RDS NACK to be recorded', async () => {
      const rds = await typeStatus(cp, 'rds');
      return rds.find((t) => t.lastNack)?.lastNack ?? undefined;
    }, { describe: () => envoy.process.tail(20) });
    expect(nack.detail).toMatch(/regex|missing \)|broken/i);
    expect(await metric(cp, 'flowgate_xds_nacks_total', 'rds')).toBe(nacksBefore + 1);

    // The rejected version is not sent again in a loop: pushes stay put while nothing changes.
    const pushesAfterNack = await metric(cp, 'flowgate_xds_pushes_total', 'rds');
    await new Promise((r) => setTimeout(r, 1500));
    expect(await metric(cp, 'flowgate_xds_pushes_total', 'rds')).toBe(pushesAfterNack);
    expect(await metric(cp, 'flowgate_xds_nacks_total', 'rds')).toBe(nacksBefore + 1);

    const result = await load.stop();
    expect(result.sent).toBeGreaterThan(20);
    expect(result.failures).toEqual([]);
    expect(result.byUpstream.get('u0')).toBe(result.sent);
    expect(envoy.process.tail(200)).toMatch(/rejected/);
  });

  test('a corrected snapshot is accepted afterwards', async () => {
    const fixed = base(routeTo('r0', 'c1'), [edsCluster('c1', mode), endpoints('c1', [u1.port])]);
    cp.cache.setSnapshot('*', fixed);
    await waitFor('traffic on the corrected config', async () => ((await upstreamOf(url())) === 'u1' ? true : undefined));
    // Delta reports the system version, SotW the version of the set: with one route config both are this.
    const expected = fixed.typeVersion(TypeUrl.RouteConfiguration);
    await waitFor('the RDS ACK of the corrected version', async () =>
      (await typeStatus(cp, 'rds')).some((t) => t.lastAck?.version === expected && t.pending === null) ? true : undefined,
    );
  });

  test.runIf(ads)('on ADS a rejected cluster holds back the routes that would use it', async () => {
    const before = await upstreamOf(url());
    expect(before).toBe('u1');
    const load = steadyLoad([url()]);
    // Routes re-pointed to a cluster Envoy will refuse: the routes must not reach Envoy.
    cp.cache.setSnapshot('*', base(routeTo('r0', 'c2'), [badCluster('c2'), edsCluster('c1', mode), endpoints('c1', [u1.port])]));
    const nack = await waitFor('the CDS NACK to be recorded', async () => (await typeStatus(cp, 'cds')).find((t) => t.lastNack)?.lastNack ?? undefined);
    expect(nack.detail).toMatch(/interval|timeout|validation/i);
    await new Promise((r) => setTimeout(r, 1000));
    const result = await load.stop();
    expect(result.failures).toEqual([]);
    expect(result.byUpstream.get('u1')).toBe(result.sent);
    // And when the cluster is fixed, the routes follow.
    cp.cache.setSnapshot('*', base(routeTo('r0', 'c2'), [edsCluster('c2', mode), endpoints('c2', [u0.port])]));
    await waitFor('traffic on the repaired cluster', async () => ((await upstreamOf(url())) === 'u0' ? true : undefined));
  });
});
