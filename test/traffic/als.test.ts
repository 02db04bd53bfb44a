import * as grpc from '@grpc/grpc-js';
import { httpListener } from '../xds/resources.js';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { AdminServer } from '../../src/observability/admin-server.js';
import { TrafficAggregator, type TrafficSummary } from '../../src/traffic/aggregator.js';
import { accessLogCluster, accessLogConfig } from '../../src/translate/access-log.js';
import { registerTrafficRoutes } from '../../src/traffic/routes.js';
import { registerAccessLogService } from '../../src/traffic/receiver.js';
import { duration } from '../../src/proto/codec.js';
import { TypeUrl } from '../../src/resources/types.js';
import { Snapshot, type ResourceInput } from '../../src/xds/snapshot.js';
import { startEnvoy, type EnvoyProcess } from '../harness/envoy.js';
import { freePorts } from '../harness/ports.js';
import { waitFor } from '../harness/process.js';
import { request, upstreamOf } from '../harness/traffic.js';
import { startEchoUpstream, type EchoUpstream } from '../harness/upstreams.js';
import { startXdsServer, type TestXdsServer } from '../harness/xds-server.js';
import { edsCluster, endpoints } from '../xds/resources.js';

/**
 * Per-model traffic from real Envoy access logs: Envoy (configured over xDS) streams its HTTP access logs to
 * the in-process AccessLogService through the HTTP/2 cluster flowgate_als; the aggregator counts exactly the
 * requests sent, per model version and status class, with latencies, in /debug/traffic and in /metrics.
 */


/** An HTTP listener routed by the `models` route configuration (ADS), optionally with access logs. */
function listener(name: string, port: number, accessLog: object[]): ResourceInput {
  return httpListener(name, port, 'models', 'ads', { access_log: accessLog });
}

/** x-model-version: 2 or 3 picks that version; everything else goes to v1. */
function modelRoutes(): ResourceInput {
  const pinned = (version: string) => ({
    match: { prefix: '/', headers: [{ name: 'x-model-version', string_match: { exact: version } }] },
    route: { cluster: `model_demo_v${version}`, timeout: duration(5000) },
  });
  return {
    typeUrl: TypeUrl.RouteConfiguration,
    name: 'models',
    message: {
      name: 'models',
      virtual_hosts: [{ name: 'all', domains: ['*'], routes: [pinned('2'), pinned('3'), { match: { prefix: '/' }, route: { cluster: 'model_demo_v1', timeout: duration(5000) } }] }],
    },
  };
}

describe('access-log service with real Envoy', () => {
  let cp: TestXdsServer;
  let envoy: EnvoyProcess;
  let als: grpc.Server;
  let admin: AdminServer;
  let adminUrl = '';
  let v1: EchoUpstream;
  let v2: EchoUpstream;
  const aggregator = new TrafficAggregator();
  let warmPort = 0;
  let loggedPort = 0;

  beforeAll(async () => {
    v1 = await startEchoUpstream('v1');
    v2 = await startEchoUpstream('v2');
    const [dead, warm, logged] = await freePorts(3);
    const deadPort = dead ?? 0; // nothing listens there: model_demo_v3 answers 503
    warmPort = warm ?? 0;
    loggedPort = logged ?? 0;
    als = new grpc.Server();
    // This Envoy's xDS stream is on another server: the test vouches for it.
    registerAccessLogService(als, aggregator, { xdsStreamHeld: (node) => node === 'als-1' });
    const alsPort = await new Promise<number>((resolve, reject) =>
      als.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
    );
    admin = new AdminServer();
    registerTrafficRoutes(admin, aggregator);
    adminUrl = `http://127.0.0.1:${await admin.listen(0)}`;

    cp = await startXdsServer();
    cp.cache.setSnapshot(
      '*',
      Snapshot.from([
        // The warm-up listener has no access log, so waiting for Envoy to route adds nothing to the counts.
        listener('warm', warmPort, []),
        listener('logged', loggedPort, [accessLogConfig('flowgate_als', 'flowgate-test')]),
        modelRoutes(),
        { typeUrl: TypeUrl.Cluster, name: 'flowgate_als', message: accessLogCluster('flowgate_als', '127.0.0.1', alsPort) },
        edsCluster('model_demo_v1', 'ads'),
        edsCluster('model_demo_v2', 'ads'),
        edsCluster('model_demo_v3', 'ads'),
        endpoints('model_demo_v1', [v1.port]),
        endpoints('model_demo_v2', [v2.port]),
        endpoints('model_demo_v3', [deadPort]),
      ]),
    );
    envoy = await startEnvoy({ nodeId: 'als-1', nodeCluster: 'als', xdsHost: '127.0.0.1', xdsPort: cp.port });
    await waitFor('Envoy to route both versions', async () =>
      (await upstreamOf(`http://127.0.0.1:${warmPort}/`)) === 'v1' &&
      (await upstreamOf(`http://127.0.0.1:${warmPort}/`, { headers: { 'x-model-version': '2' } })) === 'v2'
        ? true
        : undefined,
    );
  });

  afterAll(async () => {
    await envoy?.stop();
    await cp?.stop();
    await new Promise<void>((resolve) => (als ? als.tryShutdown(() => resolve()) : resolve()));
    await admin?.close();
    await Promise.all([v1?.close(), v2?.close()]);
  });

  test('counts exactly the requests sent, per model version and status class, in /debug/traffic and /metrics', async () => {
    expect(aggregator.summary().entries).toBe(0);
    const url = `http://127.0.0.1:${loggedPort}/invocations`;
    for (let i = 0; i < 10; i++) expect(await upstreamOf(url)).toBe('v1');
    for (let i = 0; i < 5; i++) expect(await upstreamOf(url, { headers: { 'x-model-version': '2' } })).toBe('v2');
    expect((await request(url, { headers: { 'x-model-version': '3' } })).status).toBe(503);

    const traffic = async () => (await (await fetch(`${adminUrl}/debug/traffic`)).json()) as TrafficSummary;
    await waitFor('the access logs of all 16 requests', async () => ((await traffic()).entries >= 16 ? true : undefined), {
      timeoutMs: 15_000,
      describe: () => envoy.process.tail(30),
    });
    // Envoy flushes every second: give it time to send anything extra, then the counts must be exact.
    await new Promise((r) => setTimeout(r, 1500));
    const summary = await traffic();
    expect(summary.entries).toBe(16);
    expect(summary.models.map((m) => [m.model, m.version, m.requests, m.byClass])).toEqual([
      ['demo', '1', 10, { '2xx': 10 }],
      ['demo', '2', 5, { '2xx': 5 }],
      ['demo', '3', 1, { '5xx': 1 }],
    ]);
    for (const m of summary.models) {
      expect(m.latency.count).toBe(m.requests);
      expect(m.latency.p50Seconds).toBeGreaterThan(0);
      expect(m.latency.p99Seconds).toBeGreaterThanOrEqual(m.latency.p50Seconds ?? 0);
      expect(m.latency.p99Seconds).toBeLessThan(1);
    }

    const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
    expect(metrics).toContain('flowgate_model_requests_total{model="demo",version="1",code_class="2xx"} 10');
    expect(metrics).toContain('flowgate_model_requests_total{model="demo",version="2",code_class="2xx"} 5');
    expect(metrics).toContain('flowgate_model_requests_total{model="demo",version="3",code_class="5xx"} 1');
    expect(metrics).toContain('flowgate_model_request_duration_seconds_count{model="demo",version="1"} 10');
    expect(metrics).toContain('flowgate_model_request_duration_seconds_count{model="demo",version="2"} 5');
    expect(metrics).toMatch(/flowgate_als_streams \d/);
  });
});
